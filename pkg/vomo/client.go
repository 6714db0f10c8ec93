// Package vomo is the client of the VOMO (Virtuous Volunteer) API: it walks
// list pages by following links.next, decodes every documented wire-format
// variant, classifies errors (retrying 429, 5xx and network failures within
// bounds, stopping at once on 401/403), draws every request from a
// per-customer budget, and keeps the bearer token out of errors and traces.
package vomo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

const tracerName = "github.com/vomosync/vomosync/pkg/vomo"

// Sentinel errors; every API error wraps one, so errors.Is tells the class.
var (
	// ErrUnauthorized: 401, the token is missing, revoked or rotated. Never retried.
	ErrUnauthorized = errors.New("vomo: unauthorized (401): token rejected")
	// ErrForbidden: 403, the token lacks scope. Never retried.
	ErrForbidden = errors.New("vomo: forbidden (403): token lacks scope")
	// ErrNotFound: 404. Not retried by the client; callers decide (a new id
	// may be briefly invisible).
	ErrNotFound = errors.New("vomo: not found (404)")
	// ErrValidation: 422. Never retried.
	ErrValidation = errors.New("vomo: validation failed (422)")
	// ErrRateLimited: 429s outlasted the retry budget, or Retry-After exceeded the cap.
	ErrRateLimited = errors.New("vomo: rate limited (429)")
	// ErrServer: 5xx outlasted the retry budget.
	ErrServer = errors.New("vomo: server error (5xx)")
	// ErrTransport: timeouts, resets and cut bodies outlasted the retry budget.
	ErrTransport = errors.New("vomo: transport failure")
	// ErrStatus: any other unexpected status. Not retried.
	ErrStatus = errors.New("vomo: unexpected status")
	// ErrTooLarge: a response body exceeded the configured cap.
	ErrTooLarge = errors.New("vomo: response body too large")
	// ErrTooManyPages: a walk exceeded the configured page cap.
	ErrTooManyPages = errors.New("vomo: too many pages")
)

// APIError is a failed request: its endpoint, status and VOMO's message.
type APIError struct {
	Method   string
	Endpoint string // path template, e.g. /users/{id}
	Status   int    // 0 for transport failures
	Message  string // VOMO's "message", or the transport error text
	Attempts int
	kind     error
	cause    error
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(e.kind.Error())
	b.WriteString(": ")
	b.WriteString(e.Method + " " + e.Endpoint)
	if e.Status != 0 {
		b.WriteString(" status " + strconv.Itoa(e.Status))
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Attempts > 1 {
		b.WriteString(" (after " + strconv.Itoa(e.Attempts) + " attempts)")
	}
	return b.String()
}

// Unwrap returns the sentinel class and the underlying cause.
func (e *APIError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

// Limiter is the per-customer request budget; Wait blocks until one request
// may be sent or ctx ends.
type Limiter interface {
	Wait(ctx context.Context) error
}

// Observer receives metrics about requests. Status is 0 for a transport failure.
type Observer interface {
	ObserveRequest(endpoint string, status int, d time.Duration)
	ObserveThrottle(d time.Duration)
}

// Client calls one customer's VOMO API. It is safe for concurrent use.
type Client struct {
	base       *url.URL
	token      string
	hc         *http.Client
	limiter    Limiter
	obs        Observer
	tracer     trace.Tracer
	userAgent  string
	maxBody    int64
	maxPages   int
	maxRetries int
	maxThrottl int
	retryCap   time.Duration
	backoffMin time.Duration
	backoffMax time.Duration
	timeout    time.Duration
	sleep      func(ctx context.Context, d time.Duration) error

	mu        sync.Mutex
	offset    time.Duration // server clock minus local clock
	hasOffset bool
}

// Option configures a Client.
type Option func(*Client) error

// WithHTTPClient sets the HTTP client (default: a dedicated one without a
// global timeout; per-request timeouts come from WithRequestTimeout).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("nil http client")
		}
		c.hc = hc
		return nil
	}
}

// WithLimiter draws every request (retries included) from l.
func WithLimiter(l Limiter) Option {
	return func(c *Client) error { c.limiter = l; return nil }
}

// WithObserver reports requests and throttle waits to o.
func WithObserver(o Observer) Option {
	return func(c *Client) error { c.obs = o; return nil }
}

// WithRetryAfterCap is the longest Retry-After honoured (default 60s); a
// longer one ends the call with ErrRateLimited rather than blocking.
func WithRetryAfterCap(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("retry-after cap %s: want > 0", d)
		}
		c.retryCap = d
		return nil
	}
}

// WithRetries bounds retries of 5xx/transport failures and of 429s (defaults 5 and 10).
func WithRetries(failures, throttles int) Option {
	return func(c *Client) error {
		if failures < 0 || throttles < 0 {
			return errors.New("retries: want >= 0")
		}
		c.maxRetries, c.maxThrottl = failures, throttles
		return nil
	}
}

// WithBackoff sets the capped exponential backoff range (default 500ms..30s).
// Each wait is drawn uniformly from [0, min(max, min*2^attempt)] (full jitter).
func WithBackoff(minDelay, maxDelay time.Duration) Option {
	return func(c *Client) error {
		if minDelay <= 0 || maxDelay < minDelay {
			return fmt.Errorf("backoff %s..%s: want 0 < min <= max", minDelay, maxDelay)
		}
		c.backoffMin, c.backoffMax = minDelay, maxDelay
		return nil
	}
}

// WithRequestTimeout bounds one attempt, body included (default 30s).
func WithRequestTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("request timeout %s: want > 0", d)
		}
		c.timeout = d
		return nil
	}
}

// WithMaxBodyBytes caps a response body (default 32 MiB: a page holding one
// oversized record must still be read, so that record alone is set aside).
func WithMaxBodyBytes(n int64) Option {
	return func(c *Client) error {
		if n <= 0 {
			return fmt.Errorf("max body %d: want > 0", n)
		}
		c.maxBody = n
		return nil
	}
}

// WithMaxPages caps the pages of one walk (default 1,000,000).
func WithMaxPages(n int) Option {
	return func(c *Client) error {
		if n <= 0 {
			return fmt.Errorf("max pages %d: want > 0", n)
		}
		c.maxPages = n
		return nil
	}
}

// WithTracerProvider sets where spans go (default the global provider).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *Client) error { c.tracer = tp.Tracer(tracerName); return nil }
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *Client) error { c.userAgent = ua; return nil }
}

// New returns a client for the API at baseURL (e.g. https://api.vomo.org/v1)
// authenticating with token.
func New(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("vomo: base URL %q: want http(s)://host[/path]", baseURL)
	}
	if token == "" {
		return nil, errors.New("vomo: empty token")
	}
	c := &Client{
		base: u, token: token,
		hc:         &http.Client{Transport: http.DefaultTransport},
		tracer:     otel.Tracer(tracerName),
		userAgent:  "vomosync",
		maxBody:    32 << 20,
		maxPages:   1_000_000,
		maxRetries: 5,
		maxThrottl: 10,
		retryCap:   60 * time.Second,
		backoffMin: 500 * time.Millisecond,
		backoffMax: 30 * time.Second,
		timeout:    30 * time.Second,
		sleep:      sleepCtx,
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, fmt.Errorf("vomo: %w", err)
		}
	}
	return c, nil
}

// String never shows the token.
func (c *Client) String() string { return "vomo.Client(" + c.base.String() + ")" }

// GoString never shows the token.
func (c *Client) GoString() string { return c.String() }

// ServerNow is the API server's clock as last observed (Date header) applied
// to the local clock; before any response it is the local clock.
func (c *Client) ServerNow() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset).UTC()
}

// SyncClock makes ServerNow follow the server's clock before any other
// call: when no response has been seen yet it sends one cheap request
// (GET /organizations, drawn from the budget). Errors are the request's.
func (c *Client) SyncClock(ctx context.Context) error {
	c.mu.Lock()
	has := c.hasOffset
	c.mu.Unlock()
	if has {
		return nil
	}
	var st callStats
	_, err := c.do(ctx, c.resolve("/organizations", nil), &st)
	return err
}

func (c *Client) observeClock(serverTime, sent, received time.Time) {
	mid := sent.Add(received.Sub(sent) / 2)
	c.mu.Lock()
	c.offset, c.hasOffset = serverTime.Sub(mid), true
	c.mu.Unlock()
}

// Get fetches a detail path (e.g. /users/8205) and returns its data member.
// A 404 is ErrNotFound, returned at once.
func (c *Client) Get(ctx context.Context, path string) (json.RawMessage, error) {
	u := c.resolve(path, nil)
	var st callStats
	resp, err := c.do(ctx, u, &st)
	if err != nil {
		return nil, err
	}
	return DecodeDetail(resp.body, redact(u))
}

// callStats count the requests of one call.
type callStats struct {
	Requests  int
	Retries   int
	Statuses  map[int]int
	Throttled time.Duration
}

func (s *callStats) add(status int) {
	s.Requests++
	if s.Statuses == nil {
		s.Statuses = map[int]int{}
	}
	s.Statuses[status]++
}

type response struct {
	status        int
	body          []byte
	serverTime    time.Time
	retryAfter    time.Duration
	hasRetryAfter bool
}

// resolve builds an absolute URL from a path under the base and a query.
func (c *Client) resolve(path string, q url.Values) *url.URL {
	u := *c.base
	u.Path = strings.TrimSuffix(c.base.Path, "/") + "/" + strings.TrimPrefix(path, "/")
	u.RawPath = ""
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return &u
}

// endpoint is the low-cardinality template of a URL: the path under the
// base with numeric segments as {id}.
func (c *Client) endpoint(u *url.URL) string {
	p := strings.TrimPrefix(u.Path, strings.TrimSuffix(c.base.Path, "/"))
	segs := strings.Split(strings.Trim(p, "/"), "/")
	for i, s := range segs {
		if s == "" {
			continue
		}
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			segs[i] = "{id}"
		}
	}
	return "/" + strings.Join(segs, "/")
}

// redact returns the URL as safe to show: no userinfo (the token never is
// in a URL, but a misconfigured base could carry credentials).
func redact(u *url.URL) string {
	if u.User == nil {
		return u.String()
	}
	v := *u
	v.User = nil
	return v.String()
}

// do runs one logical request with budget, retries and a span per attempt.
func (c *Client) do(ctx context.Context, u *url.URL, st *callStats) (*response, error) {
	ep := c.endpoint(u)
	failures, throttles := 0, 0
	for attempt := 1; ; attempt++ {
		if c.limiter != nil {
			if err := c.limiter.Wait(ctx); err != nil {
				return nil, fmt.Errorf("vomo: request budget: %w", err)
			}
		}
		resp, err := c.attempt(ctx, u, ep, attempt, st)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("vomo: GET %s: %w", ep, context.Cause(ctx))
		}
		var ae *APIError
		if !errors.As(err, &ae) {
			return nil, err
		}
		ae.Attempts = attempt
		var wait time.Duration
		switch {
		case errors.Is(err, ErrRateLimited):
			throttles++
			ra, has := retryAfter(resp)
			switch {
			case throttles > c.maxThrottl:
				return nil, err
			case has && ra > c.retryCap:
				ae.Message = fmt.Sprintf("Retry-After %s exceeds the cap of %s", ra, c.retryCap)
				return nil, err
			case has && ra > 0:
				// A little jitter so callers sharing a budget do not return in step.
				wait = ra + time.Duration(rand.Int64N(int64(ra/10)+1))
			default:
				wait = c.backoff(throttles)
			}
			st.Throttled += wait
			if c.obs != nil {
				c.obs.ObserveThrottle(wait)
			}
		case errors.Is(err, ErrServer), errors.Is(err, ErrTransport):
			failures++
			if failures > c.maxRetries {
				return nil, err
			}
			wait = c.backoff(failures)
		default:
			return nil, err
		}
		st.Retries++
		if err := c.sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("vomo: GET %s: waiting to retry: %w", ep, err)
		}
	}
}

func (c *Client) backoff(n int) time.Duration {
	ceil := c.backoffMin << min(n-1, 30)
	if ceil <= 0 || ceil > c.backoffMax {
		ceil = c.backoffMax
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// retryAfter reads Retry-After in seconds or as an HTTP date.
func retryAfter(r *response) (time.Duration, bool) {
	if r == nil {
		return 0, false
	}
	return r.retryAfter, r.hasRetryAfter
}

// attempt sends one request. On failure it may return the response too
// (for Retry-After).
func (c *Client) attempt(ctx context.Context, u *url.URL, ep string, n int, st *callStats) (*response, error) {
	ctx, span := c.tracer.Start(ctx, "GET "+ep, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("http.request.method", http.MethodGet),
			attribute.String("url.full", redact(u)),
			attribute.String("server.address", u.Hostname()),
			attribute.String("vomo.endpoint", ep),
			attribute.Int("vomo.attempt", n),
		))
	defer span.End()
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("vomo: build request %s: %w", ep, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)

	sent := time.Now()
	hresp, err := c.hc.Do(req)
	status := 0
	var resp *response
	if err == nil {
		status = hresp.StatusCode
		resp = &response{status: status}
		resp.body, err = readBody(hresp.Body, c.maxBody)
		hresp.Body.Close()
		if t, perr := http.ParseTime(hresp.Header.Get("Date")); perr == nil {
			resp.serverTime = t.UTC()
			c.observeClock(resp.serverTime, sent, time.Now())
		} else {
			resp.serverTime = c.ServerNow().Truncate(time.Second)
		}
		resp.retryAfter, resp.hasRetryAfter = parseRetryAfter(hresp.Header.Get("Retry-After"), resp.serverTime)
	}
	d := time.Since(sent)
	st.add(status)
	if c.obs != nil {
		c.obs.ObserveRequest(ep, status, d)
	}
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	fail := func(e *APIError) (*response, error) {
		e.Method, e.Endpoint, e.Status, e.Attempts = http.MethodGet, ep, status, 1
		span.SetStatus(codes.Error, e.Error())
		return resp, e
	}
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return fail(&APIError{kind: ErrTooLarge, Message: fmt.Sprintf("over %d bytes", c.maxBody)})
		}
		if ctx.Err() != nil {
			span.SetStatus(codes.Error, "cancelled")
			return nil, ctx.Err()
		}
		return fail(&APIError{kind: ErrTransport, Message: transportMessage(err), cause: unwrapURLError(err)})
	}
	switch {
	case status >= 200 && status < 300:
		return resp, nil
	case status == http.StatusUnauthorized:
		return fail(&APIError{kind: ErrUnauthorized, Message: message(resp.body)})
	case status == http.StatusForbidden:
		return fail(&APIError{kind: ErrForbidden, Message: message(resp.body)})
	case status == http.StatusNotFound:
		return fail(&APIError{kind: ErrNotFound, Message: message(resp.body)})
	case status == http.StatusUnprocessableEntity:
		return fail(&APIError{kind: ErrValidation, Message: message(resp.body)})
	case status == http.StatusTooManyRequests:
		return fail(&APIError{kind: ErrRateLimited, Message: message(resp.body)})
	case status >= 500:
		return fail(&APIError{kind: ErrServer, Message: message(resp.body)})
	default:
		return fail(&APIError{kind: ErrStatus, Message: message(resp.body)})
	}
}

// readBody reads at most limit bytes; a longer body is ErrTooLarge, a body
// cut short (reset, truncated) is the read error.
func readBody(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, ErrTooLarge
	}
	return b, nil
}

func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now)), true
	}
	return 0, false
}

// message extracts VOMO's {"message": ...}, bounded in length.
func message(body []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	if len(m.Message) > 200 {
		return m.Message[:200] + "..."
	}
	return m.Message
}

// transportMessage describes a transport failure without the URL (which
// the APIError already names by endpoint).
func transportMessage(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return unwrapURLError(err).Error()
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
