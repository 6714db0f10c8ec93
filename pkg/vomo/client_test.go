package vomo_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/vomosync/vomosync/pkg/vomo"
)

const secretToken = "eyJhbGciOiJIUzI1NiJ9.secret-token-value"

// script answers the nth request (from 1) with a handler; past the end the
// last one repeats.
type script struct {
	mu    sync.Mutex
	n     int
	steps []http.HandlerFunc
	auths []string
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.n++
	step := s.steps[min(s.n, len(s.steps))-1]
	s.auths = append(s.auths, r.Header.Get("Authorization"))
	s.mu.Unlock()
	step(w, r)
}

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func status(code int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}
}

// onePage serves a valid one-record last page.
func onePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Date", "Wed, 19 Nov 2025 10:20:00 GMT")
	fmt.Fprint(w, `{"data":[{"id":1,"updated_at":"2025-11-19T10:15:00+00:00"}],"links":{"first":"x","last":"x","prev":null,"next":null},"meta":{"current_page":1,"from":1,"to":1,"per_page":15,"total":1,"last_page":1}}`)
}

func reset(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

type bundle struct {
	srv    *httptest.Server
	script *script
	client *vomo.Client
	spans  *tracetest.SpanRecorder
	obs    *recordingObserver
}

type recordingObserver struct {
	mu        sync.Mutex
	requests  []string
	throttles int
}

func (o *recordingObserver) ObserveRequest(endpoint string, status int, d time.Duration) {
	o.mu.Lock()
	o.requests = append(o.requests, endpoint+" "+strconv.Itoa(status))
	o.mu.Unlock()
}

func (o *recordingObserver) ObserveThrottle(d time.Duration) {
	o.mu.Lock()
	o.throttles++
	o.mu.Unlock()
}

func setup(t *testing.T, steps []http.HandlerFunc, opts ...vomo.Option) *bundle {
	t.Helper()
	b := &bundle{script: &script{steps: steps}, spans: tracetest.NewSpanRecorder(), obs: &recordingObserver{}}
	b.srv = httptest.NewServer(b.script)
	t.Cleanup(b.srv.Close)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(b.spans))
	opts = append([]vomo.Option{
		vomo.WithBackoff(time.Millisecond, 4*time.Millisecond),
		vomo.WithRequestTimeout(300 * time.Millisecond),
		vomo.WithTracerProvider(tp),
		vomo.WithObserver(b.obs),
	}, opts...)
	c, err := vomo.New(b.srv.URL+"/v1", secretToken, opts...)
	require.NoError(t, err)
	b.client = c
	return b
}

// assertNoToken checks that the token is in no error and no span.
func (b *bundle) assertNoToken(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		require.NotContains(t, err.Error(), "secret-token")
		require.NotContains(t, fmt.Sprintf("%+v %#v", err, err), "secret-token")
	}
	require.NotContains(t, fmt.Sprintf("%v %+v %#v", b.client, b.client, b.client), "secret-token")
	for _, s := range b.spans.Ended() {
		require.NotContains(t, s.Name(), "secret-token")
		require.NotContains(t, s.Status().Description, "secret-token")
		for _, a := range s.Attributes() {
			require.NotContains(t, a.Value.Emit(), "secret-token", string(a.Key))
		}
		for _, ev := range s.Events() {
			for _, a := range ev.Attributes {
				require.NotContains(t, a.Value.Emit(), "secret-token")
			}
		}
	}
}

func noop(context.Context, vomo.Page) error { return nil }

func TestErrorClasses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		steps    []http.HandlerFunc
		want     error
		requests int
	}{
		{"401 stops at once", []http.HandlerFunc{status(401, `{"message":"Unauthenticated."}`)}, vomo.ErrUnauthorized, 1},
		{"403 stops at once", []http.HandlerFunc{status(403, `{"message":"This action is unauthorized."}`)}, vomo.ErrForbidden, 1},
		{"404", []http.HandlerFunc{status(404, `{"message":"Resource not found."}`)}, vomo.ErrNotFound, 1},
		{"422 never retried", []http.HandlerFunc{status(422, `{"message":"The given data was invalid.","errors":{"x":["y"]}}`)}, vomo.ErrValidation, 1},
		{"400", []http.HandlerFunc{status(400, ``)}, vomo.ErrStatus, 1},
		{"5xx then ok", []http.HandlerFunc{status(500, ``), status(503, ``), onePage}, nil, 3},
		{"5xx exhausts", []http.HandlerFunc{status(502, ``)}, vomo.ErrServer, 4},
		{"reset then ok", []http.HandlerFunc{reset, onePage}, nil, 2},
		{"resets exhaust", []http.HandlerFunc{reset}, vomo.ErrTransport, 4},
		{"truncated body then ok", []http.HandlerFunc{func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "500")
			fmt.Fprint(w, `{"data":[`)
		}, onePage}, nil, 2},
		{"timeout then ok", []http.HandlerFunc{func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		}, onePage}, nil, 2},
		{"429 with Retry-After then ok", []http.HandlerFunc{status(429, `{"message":"Too Many Requests"}`, "Retry-After", "0"), status(429, ``, "Retry-After", "1"), onePage}, nil, 3},
		{"429 storm exhausts", []http.HandlerFunc{status(429, ``)}, vomo.ErrRateLimited, 5},
		{"Retry-After over cap fails fast", []http.HandlerFunc{status(429, ``, "Retry-After", "3600")}, vomo.ErrRateLimited, 1},
		{"malformed page", []http.HandlerFunc{status(200, `{"data":[{"id":1}],"links":{},"meta":{"current_page":1,"total":"one"}}`)}, &vomo.DecodeError{}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tc.steps, vomo.WithRetries(3, 4), vomo.WithRetryAfterCap(5*time.Second))
			res, err := b.client.Walk(context.Background(), "/users", url.Values{"updated_after": {"2025-01-01T00:00:00Z"}}, noop)
			var de *vomo.DecodeError
			switch {
			case tc.want == nil:
				require.NoError(t, err)
				require.Equal(t, 1, res.Pages)
				require.True(t, res.Trusted)
			case errors.As(tc.want, &de):
				require.ErrorAs(t, err, &de)
				require.Equal(t, "meta.total", de.Field)
			default:
				require.ErrorIs(t, err, tc.want)
				var ae *vomo.APIError
				require.ErrorAs(t, err, &ae)
				require.Equal(t, "/users", ae.Endpoint)
				require.NotEmpty(t, res.NextURL, "a failed walk says where to resume")
			}
			require.Equal(t, tc.requests, b.script.count())
			require.Equal(t, tc.requests, res.Requests)
			b.assertNoToken(t, err)
			for _, a := range b.script.auths {
				require.Equal(t, "Bearer "+secretToken, a)
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	var first atomic.Int64
	var gap atomic.Int64
	b := setup(t, []http.HandlerFunc{
		func(w http.ResponseWriter, r *http.Request) {
			first.Store(time.Now().UnixNano())
			status(429, ``, "Retry-After", "1")(w, r)
		},
		func(w http.ResponseWriter, r *http.Request) {
			gap.Store(time.Now().UnixNano() - first.Load())
			onePage(w, r)
		},
	})
	res, err := b.client.Walk(context.Background(), "/users", nil, noop)
	require.NoError(t, err)
	// Ordering, not timing: the retry came no earlier than Retry-After said.
	require.GreaterOrEqual(t, time.Duration(gap.Load()), time.Second)
	require.GreaterOrEqual(t, res.Throttled, time.Second)
	require.Equal(t, map[int]int{429: 1, 200: 1}, res.Statuses)
	b.obs.mu.Lock()
	defer b.obs.mu.Unlock()
	require.Equal(t, 1, b.obs.throttles)
	require.Equal(t, []string{"/users 429", "/users 200"}, b.obs.requests)
}

func TestContextCancelStopsRetries(t *testing.T) {
	t.Parallel()
	b := setup(t, []http.HandlerFunc{status(503, ``)}, vomo.WithBackoff(time.Hour, time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for b.script.count() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err := b.client.Walk(ctx, "/users", nil, noop)
	require.ErrorIs(t, err, context.Canceled)
}

type countingLimiter struct{ n atomic.Int64 }

func (l *countingLimiter) Wait(ctx context.Context) error { l.n.Add(1); return ctx.Err() }

func TestLimiterPerAttempt(t *testing.T) {
	t.Parallel()
	l := &countingLimiter{}
	b := setup(t, []http.HandlerFunc{status(500, ``), onePage}, vomo.WithLimiter(l))
	_, err := b.client.Walk(context.Background(), "/users", nil, noop)
	require.NoError(t, err)
	require.Equal(t, int64(2), l.n.Load(), "retries are drawn from the budget too")
}

func TestTokenBucket(t *testing.T) {
	t.Parallel()
	tb := vomo.NewTokenBucket(60, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.NoError(t, tb.Wait(ctx))
	require.NoError(t, tb.Wait(ctx))
	require.Error(t, tb.Wait(ctx), "the third request of a 2-burst bucket at 1/s must wait past 50ms")
	require.NoError(t, vomo.NewTokenBucket(0, 0).Wait(context.Background()), "unlimited")
}

// pages serves a list whose content the test controls per request.
func pages(t *testing.T, fn func(page int, base string) string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if p == 0 {
			p = 1
		}
		w.Header().Set("Date", "Wed, 19 Nov 2025 10:20:00 GMT")
		fmt.Fprint(w, fn(p, "http://"+r.Host+r.URL.Path))
	}
}

func listBody(base string, page, lastPage, total int, ids ...int) string {
	var items []string
	for _, id := range ids {
		items = append(items, fmt.Sprintf(`{"id":%d,"updated_at":"2025-11-19T10:15:00+00:00"}`, id))
	}
	next := "null"
	if page < lastPage {
		next = fmt.Sprintf(`"%s?updated_after=2025-01-01T00%%3A00%%3A00Z&page=%d"`, base, page+1)
	}
	from, to := "null", "null"
	if len(ids) > 0 {
		from, to = strconv.Itoa((page-1)*2+1), strconv.Itoa((page-1)*2+len(ids))
	}
	return fmt.Sprintf(`{"data":[%s],"links":{"first":"%s?page=1","last":"%s?page=%d","prev":null,"next":%s},"meta":{"current_page":%d,"from":%s,"to":%s,"path":"%s","per_page":2,"total":%d,"last_page":%d}}`,
		strings.Join(items, ","), base, base, lastPage, next, page, from, to, base, total, lastPage)
}

func TestWalkFollowsNextAndDetectsChange(t *testing.T) {
	t.Parallel()
	t.Run("clean", func(t *testing.T) {
		t.Parallel()
		b := setup(t, []http.HandlerFunc{pages(t, func(p int, base string) string {
			return listBody(base, p, 3, 5, []int{p*2 - 1, p * 2}[:min(2, 5-(p-1)*2)]...)
		})})
		var got []string
		var serverTimes []time.Time
		res, err := b.client.Walk(context.Background(), "/users", url.Values{"updated_after": {"2025-01-01T00:00:00Z"}}, func(ctx context.Context, p vomo.Page) error {
			for _, r := range p.Records {
				got = append(got, r.ID)
			}
			serverTimes = append(serverTimes, p.ServerTime)
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, []string{"1", "2", "3", "4", "5"}, got)
		require.True(t, res.Trusted, res.Reason)
		require.Equal(t, 3, res.Pages)
		require.Empty(t, res.NextURL)
		require.Equal(t, time.Date(2025, 11, 19, 10, 20, 0, 0, time.UTC), res.ServerNow)
		require.Equal(t, res.ServerNow, serverTimes[0])
	})
	t.Run("total moves", func(t *testing.T) {
		t.Parallel()
		b := setup(t, []http.HandlerFunc{pages(t, func(p int, base string) string {
			return listBody(base, p, 2, 3+p, p*2-1, p*2)
		})})
		res, err := b.client.Walk(context.Background(), "/users", nil, noop)
		require.NoError(t, err)
		require.False(t, res.Trusted)
		require.Contains(t, res.Reason, "meta.total moved from 4 to 5")
	})
	t.Run("id twice", func(t *testing.T) {
		t.Parallel()
		b := setup(t, []http.HandlerFunc{pages(t, func(p int, base string) string {
			return listBody(base, p, 2, 4, p, p+1)
		})})
		res, err := b.client.Walk(context.Background(), "/users", nil, noop)
		require.NoError(t, err)
		require.False(t, res.Trusted)
		require.Contains(t, res.Reason, "id 2 seen twice")
	})
	t.Run("resume at a page", func(t *testing.T) {
		t.Parallel()
		var asked []string
		b := setup(t, []http.HandlerFunc{pages(t, func(p int, base string) string {
			asked = append(asked, strconv.Itoa(p))
			return listBody(base, p, 3, 6, p*2-1, p*2)
		})})
		res, err := b.client.Walk(context.Background(), "/users", url.Values{"page": {"2"}}, noop)
		require.NoError(t, err)
		require.True(t, res.Trusted, res.Reason)
		require.Equal(t, []string{"2", "3"}, asked)
		_, err = b.client.WalkURL(context.Background(), b.srv.URL+"/v1/users?page=3", noop)
		require.NoError(t, err)
		_, err = b.client.WalkURL(context.Background(), "http://elsewhere.example/v1/users?page=3", noop)
		var de *vomo.DecodeError
		require.ErrorAs(t, err, &de)
	})
	t.Run("next leaves the host", func(t *testing.T) {
		t.Parallel()
		b := setup(t, []http.HandlerFunc{pages(t, func(p int, base string) string {
			return listBody("http://attacker.example/v1/users", p, 2, 4, 1, 2)
		})})
		_, err := b.client.Walk(context.Background(), "/users", nil, noop)
		var de *vomo.DecodeError
		require.ErrorAs(t, err, &de)
		require.Equal(t, "links.next", de.Field)
		require.Equal(t, 1, b.script.count(), "the token is never sent to another host")
	})
	t.Run("page cap", func(t *testing.T) {
		t.Parallel()
		b := setup(t, []http.HandlerFunc{pages(t, func(p int, base string) string {
			return listBody(base, p, 100, 200, p*2-1, p*2)
		})}, vomo.WithMaxPages(3))
		res, err := b.client.Walk(context.Background(), "/users", nil, noop)
		require.ErrorIs(t, err, vomo.ErrTooManyPages)
		require.Equal(t, 3, res.Pages)
	})
	t.Run("body cap", func(t *testing.T) {
		t.Parallel()
		b := setup(t, []http.HandlerFunc{onePage}, vomo.WithMaxBodyBytes(64))
		_, err := b.client.Walk(context.Background(), "/users", nil, noop)
		require.ErrorIs(t, err, vomo.ErrTooLarge)
		require.Equal(t, 1, b.script.count(), "a too-large body is not retried")
	})
	t.Run("fn error stops", func(t *testing.T) {
		t.Parallel()
		b := setup(t, []http.HandlerFunc{pages(t, func(p int, base string) string {
			return listBody(base, p, 3, 6, p*2-1, p*2)
		})})
		boom := errors.New("boom")
		res, err := b.client.Walk(context.Background(), "/users", nil, func(ctx context.Context, p vomo.Page) error {
			if p.Meta.CurrentPage == 2 {
				return boom
			}
			return nil
		})
		require.ErrorIs(t, err, boom)
		require.Contains(t, res.NextURL, "page=2")
	})
}

func TestGet(t *testing.T) {
	t.Parallel()
	b := setup(t, []http.HandlerFunc{
		status(200, `{"data":{"id":"8205","first_name":"Ada"}}`, "Date", "Wed, 19 Nov 2025 10:20:00 GMT"),
		status(404, `{"message":"Resource not found."}`),
	})
	raw, err := b.client.Get(context.Background(), "/users/8205")
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"8205","first_name":"Ada"}`, string(raw))
	require.WithinDuration(t, time.Date(2025, 11, 19, 10, 20, 0, 0, time.UTC), b.client.ServerNow(), time.Minute)
	_, err = b.client.Get(context.Background(), "/users/8206")
	require.ErrorIs(t, err, vomo.ErrNotFound)
	var ae *vomo.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "/users/{id}", ae.Endpoint)
	require.Equal(t, "Resource not found.", ae.Message)
	b.assertNoToken(t, err)
	b.obs.mu.Lock()
	defer b.obs.mu.Unlock()
	require.Equal(t, []string{"/users/{id} 200", "/users/{id} 404"}, b.obs.requests)
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := vomo.New("ftp://x", "t")
	require.Error(t, err)
	_, err = vomo.New("https://api.vomo.org/v1", "")
	require.Error(t, err)
	_, err = vomo.New("https://api.vomo.org/v1", "t", vomo.WithBackoff(0, time.Second))
	require.Error(t, err)
	_, err = vomo.New("https://api.vomo.org/v1", "t", vomo.WithRetryAfterCap(0))
	require.Error(t, err)
}

func TestSyncClock(t *testing.T) {
	t.Parallel()
	b := setup(t, []http.HandlerFunc{status(200, `{"data":[]}`, "Date", "Mon, 01 Jan 2024 00:00:00 GMT")})
	require.WithinDuration(t, time.Now(), b.client.ServerNow(), time.Minute, "the local clock until a response")
	require.NoError(t, b.client.SyncClock(context.Background()))
	require.WithinDuration(t, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), b.client.ServerNow(), time.Minute)
	require.NoError(t, b.client.SyncClock(context.Background()))
	require.Equal(t, 1, b.script.count(), "synced once")
}
