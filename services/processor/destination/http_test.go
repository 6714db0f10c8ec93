package destination_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/services/processor/destination"
)

// verify checks "t=<unix>,v1=<hex>" the way a receiver should: constant
// time, over the raw body, with a bounded clock difference.
func verify(key, body []byte, header string) bool {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return false
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ts + "."))
	m.Write(body)
	want := hex.EncodeToString(m.Sum(nil))
	return hmac.Equal([]byte(want), []byte(sig))
}

func TestHTTPIdempotencyKeyIsStablePerBatch(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, []byte("k"))
	h, err := destination.NewHTTP(rcv.srv.URL, []byte("k"), true, time.Second)
	require.NoError(t, err)
	ops := []destination.Op{up("a", "users", "1", 0, "x"), up("a", "users", "2", 0, "y")}
	_, err = h.Apply(context.Background(), nil, ops)
	require.NoError(t, err)
	_, err = h.Apply(context.Background(), nil, ops)
	require.NoError(t, err)
	require.Equal(t, 2, rcv.requests)
	require.Len(t, rcv.keys, 1, "the same ops carry the same Idempotency-Key")
	require.Equal(t, destination.BatchKey(ops), firstKey(rcv.keys))

	wrong, err := destination.NewHTTP(rcv.srv.URL, []byte("other"), true, time.Second)
	require.NoError(t, err)
	res, err := wrong.Apply(context.Background(), nil, ops[:1])
	require.NoError(t, err)
	require.ErrorIs(t, res[0], destination.ErrRejected, "a receiver refusing the signature (401) rejects")
}

func firstKey(m map[string]int) string {
	for k := range m {
		return k
	}
	return ""
}

func TestHTTPAnswers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ops := []destination.Op{up("a", "users", "1", 0, "ok"), up("a", "users", "2", 0, "bad"), up("a", "users", "3", 0, "ok"), up("a", "users", "4", 0, "ok")}
	cases := []struct {
		name  string
		fail  func(wireBatch) (int, string)
		check func(t *testing.T, res []error)
	}{
		{"5xx is retried", func(wireBatch) (int, string) { return 503, "down" }, func(t *testing.T, res []error) {
			for _, e := range res {
				require.ErrorIs(t, e, destination.ErrUnavailable)
				require.False(t, destination.Permanent(e))
			}
		}},
		{"429 is retried", func(wireBatch) (int, string) { return 429, "slow down" }, func(t *testing.T, res []error) {
			require.ErrorIs(t, res[0], destination.ErrUnavailable)
		}},
		{"409 is stale", func(wireBatch) (int, string) { return 409, "" }, func(t *testing.T, res []error) {
			for _, e := range res {
				require.ErrorIs(t, e, destination.ErrStale)
			}
		}},
		{"stale body is stale", func(wireBatch) (int, string) { return 200, `{"status":"stale"}` }, func(t *testing.T, res []error) {
			require.ErrorIs(t, res[3], destination.ErrStale)
		}},
		{"4xx rejects only the culprit, with the response", func(b wireBatch) (int, string) {
			for _, op := range b.Operations {
				if strings.Contains(string(op.Record), `"bad"`) {
					return 422, `{"errors":{"first_name":["is bad"]}}`
				}
			}
			return 0, ""
		}, func(t *testing.T, res []error) {
			require.NoError(t, res[0])
			require.ErrorIs(t, res[1], destination.ErrRejected)
			require.Contains(t, res[1].Error(), "422")
			require.Contains(t, res[1].Error(), "is bad")
			require.NoError(t, res[2])
			require.NoError(t, res[3])
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rcv := newReceiver(t, nil)
			rcv.fail = tc.fail
			h, err := destination.NewHTTP(rcv.srv.URL, nil, true, 2*time.Second)
			require.NoError(t, err)
			res, err := h.Apply(ctx, nil, ops)
			require.NoError(t, err)
			require.Len(t, res, len(ops))
			tc.check(t, res)
		})
	}
}

func TestHTTPTimeoutIsRetryable(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	h, err := destination.NewHTTP(srv.URL, nil, true, 200*time.Millisecond)
	require.NoError(t, err)
	res, err := h.Apply(context.Background(), nil, []destination.Op{up("a", "users", "1", 0, "x")})
	require.NoError(t, err)
	require.ErrorIs(t, res[0], destination.ErrUnavailable)
}

func TestSSRFProtection(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"http://example.org/hook", // plain http
		"https://127.0.0.1/x", "https://10.1.2.3/x", "https://169.254.169.254/latest/meta-data",
		"https://[::1]/x", "https://[::ffff:127.0.0.1]/x", "https://[fd00::1]/x", "https://[fe80::1]/x",
		"https://100.64.0.1/x", "https://0.0.0.0/x", "https://localhost/x", "https://metadata.google.internal/x",
		"https://kubernetes.default.svc/x", "https://intranet/x", "https://user:pw@example.org/x", "ftp://example.org/x",
	} {
		_, err := destination.ValidateURL(bad, false)
		require.ErrorIs(t, err, destination.ErrForbiddenTarget, bad)
	}
	for _, good := range []string{"https://example.org/hook", "https://8.8.8.8/x", "https://[2606:4700::1111]/x"} {
		_, err := destination.ValidateURL(good, false)
		require.NoError(t, err, good)
	}
	_, err := destination.ValidateURL("http://127.0.0.1:8080/x", true)
	require.NoError(t, err, "explicitly allowed private targets (tests, on-prem)")

	for addr, public := range map[string]bool{"8.8.8.8": true, "2606:4700::1111": true, "127.0.0.1": false,
		"::ffff:10.0.0.1": false, "169.254.169.254": false, "fd12::1": false, "192.168.1.1": false, "::": false} {
		require.Equal(t, public, destination.PublicAddr(netip.MustParseAddr(addr)), addr)
	}

	// DNS can point a public-looking name anywhere: the dialer checks the
	// address it actually connects to.
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	_, err = destination.NewClient(time.Second, false).Get(srv.URL)
	require.Error(t, err)
	require.True(t, errors.Is(err, destination.ErrForbiddenTarget), err)
	resp, err := destination.NewClient(time.Second, true).Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
}
