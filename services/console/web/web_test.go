package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/natstest"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
	"github.com/vomosync/vomosync/services/console/auth"
	"github.com/vomosync/vomosync/services/console/consoletest"
	"github.com/vomosync/vomosync/services/console/web"
	"github.com/vomosync/vomosync/services/processor/deadletter"
)

type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func newClient(t *testing.T, base string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: base, http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (c *client) do(method, path string, form url.Values, hdr ...string) (int, string, http.Header) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	require.NoError(c.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.http.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (c *client) get(path string) (int, string) {
	code, body, _ := c.do(http.MethodGet, path, nil)
	return code, body
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the form token from a page.
func (c *client) csrf(path string) string {
	c.t.Helper()
	_, body := c.get(path)
	m := csrfRE.FindStringSubmatch(body)
	require.NotNil(c.t, m, "no csrf token on %s", path)
	return m[1]
}

func (c *client) loginOperator(f *consoletest.Fixture) {
	c.t.Helper()
	code, _, hdr := c.do(http.MethodPost, "/login", url.Values{"username": {f.Operator}, "password": {f.Password}, "next": {"/"}})
	require.Equal(c.t, http.StatusSeeOther, code)
	require.Equal(c.t, "/", hdr.Get("Location"))
	u, _ := url.Parse(c.base)
	for _, ck := range c.http.Jar.Cookies(u) {
		if ck.Name == web.OperatorCookie {
			return
		}
	}
	c.t.Fatal("no session cookie")
}

func (c *client) loginCustomer(token string) {
	c.t.Helper()
	code, _, hdr := c.do(http.MethodPost, "/portal/login", url.Values{"token": {token}})
	require.Equal(c.t, http.StatusSeeOther, code)
	require.Equal(c.t, "/portal", hdr.Get("Location"))
}

func TestOperatorPages(t *testing.T) {
	t.Parallel()
	f := consoletest.Seed(t)
	srv := consoletest.Server(t, f, "http://jaeger.test:16686")
	c := newClient(t, srv.URL)
	ctx := context.Background()

	code, _ := c.get("/")
	require.Equal(t, http.StatusSeeOther, code, "no session: to the login page")
	code, body, _ := c.do(http.MethodPost, "/login", url.Values{"username": {f.Operator}, "password": {"wrong password!"}})
	require.Equal(t, http.StatusUnauthorized, code)
	require.Contains(t, body, "Wrong user or password")
	c.loginOperator(f)

	// The cookie is HttpOnly and SameSite=Strict.
	_, _, hdr := newClient(t, srv.URL).do(http.MethodPost, "/login", url.Values{"username": {f.Operator}, "password": {f.Password}})
	require.Contains(t, hdr.Get("Set-Cookie"), "HttpOnly")
	require.Contains(t, hdr.Get("Set-Cookie"), "SameSite=Strict")

	code, body = c.get("/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `id="n-customers">2<`)
	require.Contains(t, body, `id="n-healthy">1<`)
	require.Contains(t, body, `id="n-anomalous">1<`)
	require.Contains(t, body, `data-customer="globex"`)
	require.NotContains(t, body, `data-customer="acme"`, "healthy customers are not listed by default")
	require.Contains(t, body, "users: last poll cycle failed")
	require.Contains(t, body, "users: last reconciliation held: globex-held: gap rate over threshold")
	_, body = c.get("/?all=1")
	require.Contains(t, body, `data-customer="acme"`)
	_, body = c.get("/?all=1&q=acm")
	require.NotContains(t, body, `data-customer="globex"`)

	code, body = c.get("/customers/acme")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `id="health">healthy<`)
	require.Contains(t, body, `data-resource="groups"`)
	require.Contains(t, body, `/records?customer=acme&amp;resource=users&amp;id=1001`, "recently processed records link to their history")
	code, _ = c.get("/customers/nobody")
	require.Equal(t, http.StatusNotFound, code)

	_, body = c.get("/customers/globex")
	require.Contains(t, body, `id="api-errors">1<`)
	require.Contains(t, body, "globex-unauthorized")

	code, body = c.get("/records?customer=acme&resource=users&id=1001")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "first_name, email")
	require.Contains(t, body, "skipped_stale")
	require.Contains(t, body, `href="http://jaeger.test:16686/trace/`+f.AcmeTrace+`"`)
	require.Contains(t, body, "vomo-1001")

	for _, p := range []string{"/customers/globex/cycles", "/customers/globex/cycles?resource=users", "/customers/globex/gaps",
		"/customers/globex/dlq", "/customers/globex/dlq?status=all", "/actions"} {
		code, body = c.get(p)
		require.Equal(t, http.StatusOK, code, p)
	}
	_, body = c.get("/customers/globex/cycles")
	require.Contains(t, body, "globex-secret-error")
	_, body = c.get("/customers/globex/gaps")
	require.Contains(t, body, "dead_lettered")
	code, _ = c.get("/customers/globex/cycles?before=yesterday")
	require.Equal(t, http.StatusBadRequest, code)

	// Actions need the form token, a reason, and are audited with the actor.
	code, _, _ = c.do(http.MethodPost, "/customers/acme/pause", url.Values{"reason": {"x"}})
	require.Equal(t, http.StatusForbidden, code, "no csrf token")
	tok := c.csrf("/customers/acme")
	code, _, _ = c.do(http.MethodPost, "/customers/acme/pause", url.Values{"csrf": {tok}, "resource": {"groups"}})
	require.Equal(t, http.StatusBadRequest, code, "no reason")
	code, _, hdr = c.do(http.MethodPost, "/customers/acme/pause", url.Values{"csrf": {tok}, "resource": {"groups"}, "reason": {"customer migrating groups"}})
	require.Equal(t, http.StatusSeeOther, code)
	require.Contains(t, hdr.Get("Location"), "/customers/acme?flash=")
	var paused bool
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT paused FROM vomosync.schedules WHERE customer_id = 'acme' AND resource = 'groups' AND kind = 'poll'`).Scan(&paused))
	require.True(t, paused)
	_, body = c.get("/customers/acme")
	require.Contains(t, body, "groups: polling paused: customer migrating groups")

	code, _, _ = c.do(http.MethodPost, "/customers/globex/dlq/"+strconv.FormatInt(f.GlobexLetter, 10)+"/discard", url.Values{"csrf": {tok}})
	require.Equal(t, http.StatusBadRequest, code, "discard needs a reason")
	code, _, _ = c.do(http.MethodPost, "/customers/acme/dlq/"+strconv.FormatInt(f.GlobexLetter, 10)+"/discard", url.Values{"csrf": {tok}, "reason": {"x"}})
	require.Equal(t, http.StatusNotFound, code, "a letter of another customer is not found under this one")
	code, _, _ = c.do(http.MethodPost, "/customers/globex/dlq/"+strconv.FormatInt(f.GlobexLetter, 10)+"/discard", url.Values{"csrf": {tok}, "reason": {"test data"}})
	require.Equal(t, http.StatusSeeOther, code)
	var status, by string
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT status, resolved_by FROM vomosync.dead_letters WHERE id = $1`, f.GlobexLetter).Scan(&status, &by))
	require.Equal(t, "discarded", status)
	require.Equal(t, "console:alice", by)
	code, _, _ = c.do(http.MethodPost, "/customers/globex/dlq/"+strconv.FormatInt(f.GlobexLetter, 10)+"/retry", url.Values{"csrf": {tok}})
	require.Equal(t, http.StatusBadRequest, code, "retry is off unless the console may publish")

	rows, err := f.Pool.Query(ctx, `SELECT actor || ' ' || action || ' ' || customer_id || ' ' || reason FROM vomosync.operator_actions ORDER BY id`)
	require.NoError(t, err)
	var acts []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		acts = append(acts, s)
	}
	require.Contains(t, acts, "console:alice pause acme customer migrating groups")
	require.Contains(t, acts, "console:alice dlq_discard globex test data")
	require.Contains(t, acts, "console:alice login_failed  ")
	_, body = c.get("/actions?customer=acme")
	require.Contains(t, body, "customer migrating groups")

	code, _, hdr = c.do(http.MethodPost, "/logout", url.Values{"csrf": {tok}})
	require.Equal(t, http.StatusSeeOther, code)
	code, _ = c.get("/")
	require.Equal(t, http.StatusSeeOther, code, "the session ended")
}

func TestLoginIsRateLimited(t *testing.T) {
	t.Parallel()
	f := consoletest.Seed(t)
	srv := consoletest.Server(t, f, "")
	c := newClient(t, srv.URL)
	for range 5 {
		code, _, _ := c.do(http.MethodPost, "/login", url.Values{"username": {f.Operator}, "password": {"guess guess guess"}})
		require.Equal(t, http.StatusUnauthorized, code)
	}
	code, body, _ := c.do(http.MethodPost, "/login", url.Values{"username": {f.Operator}, "password": {f.Password}})
	require.Equal(t, http.StatusTooManyRequests, code, "even the right password waits once the limit is reached")
	require.Contains(t, body, "Too many failed logins")
	code, _, _ = c.do(http.MethodPost, "/login", url.Values{"username": {"bob"}, "password": {"whatever whatever"}})
	require.Equal(t, http.StatusUnauthorized, code, "the limit is per user name")
}

func TestOpenRedirectRefused(t *testing.T) {
	t.Parallel()
	f := consoletest.Seed(t)
	srv := consoletest.Server(t, f, "")
	c := newClient(t, srv.URL)
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example"} {
		code, _, hdr := c.do(http.MethodPost, "/login", url.Values{"username": {f.Operator}, "password": {f.Password}, "next": {next}})
		require.Equal(t, http.StatusSeeOther, code)
		require.Equal(t, "/", hdr.Get("Location"), next)
	}
}

// Every operator route, with globex in every place a customer can be named.
var operatorRoutes = []struct{ method, path string }{
	{"GET", "/"}, {"GET", "/?all=1"}, {"GET", "/?all=1&q=globex"},
	{"GET", "/customers/globex"}, {"GET", "/customers/globex/cycles"}, {"GET", "/customers/globex/gaps"},
	{"GET", "/customers/globex/dlq?status=all"}, {"GET", "/records?customer=globex&resource=users&id=2002"},
	{"GET", "/actions"}, {"GET", "/actions?customer=globex"},
	{"POST", "/customers/globex/pause"}, {"POST", "/customers/globex/resume"},
	{"POST", "/customers/globex/dlq/1/discard"}, {"POST", "/customers/globex/dlq/1/retry"}, {"POST", "/logout"},
	{"GET", "/customers/acme"}, {"GET", "/customers/acme/cycles"}, {"GET", "/records?customer=acme&resource=users&id=1001"},
}

// globexMarks are strings only globex's data contains.
var globexMarks = []string{"globex", "Globex", "2002", "0af7651916cd43dd8448eb211c80319c", "secret-error", "bad-email", "unauthorized"}

// requireNoGlobex checks body for globex's data; where is the request path,
// which a redirect to the login page echoes back (url-escaped).
func requireNoGlobex(t *testing.T, where, body string) {
	t.Helper()
	body = strings.ReplaceAll(body, url.QueryEscape(where), "")
	for _, m := range globexMarks {
		require.NotContains(t, body, m, "%s leaks %q", where, m)
	}
}

func TestCustomerTokenSeesOnlyItsOwnCustomer(t *testing.T) {
	t.Parallel()
	f := consoletest.Seed(t)
	srv := consoletest.Server(t, f, "http://jaeger.test")
	ctx := context.Background()

	c := newClient(t, srv.URL)
	code, body, _ := c.do(http.MethodPost, "/portal/login", url.Values{"token": {"vsct_not-a-token"}})
	require.Equal(t, http.StatusUnauthorized, code)
	requireNoGlobex(t, "failed portal login", body)
	c.loginCustomer(f.AcmeToken)
	tok := c.csrf("/portal")

	for _, p := range []string{"/portal", "/portal?customer=globex", "/portal?id=globex"} {
		code, body = c.get(p)
		require.Equal(t, http.StatusOK, code, p)
		require.Contains(t, body, "Acme Volunteers", p)
		require.Contains(t, body, `data-resource="groups"`, p)
		requireNoGlobex(t, p, body)
	}

	// A customer session reaches no operator page, with or without the form
	// token, and learns nothing of globex from the refusal.
	for _, r := range operatorRoutes {
		var form url.Values
		if r.method == http.MethodPost {
			form = url.Values{"csrf": {tok}, "reason": {"x"}}
		}
		code, body, hdr := c.do(r.method, r.path, form)
		if r.method == http.MethodGet {
			require.Equal(t, http.StatusSeeOther, code, r.path)
			require.True(t, strings.HasPrefix(hdr.Get("Location"), "/login"), r.path)
		} else {
			require.Equal(t, http.StatusForbidden, code, r.path)
		}
		requireNoGlobex(t, r.path, body)
	}

	// The customer cookie's value under the operator cookie's name is no
	// operator session either.
	u, _ := url.Parse(srv.URL)
	var custCookie string
	for _, ck := range c.http.Jar.Cookies(u) {
		if ck.Name == web.CustomerCookie {
			custCookie = ck.Value
		}
	}
	require.NotEmpty(t, custCookie)
	forged := newClient(t, srv.URL)
	forged.http.Jar.SetCookies(u, []*http.Cookie{{Name: web.OperatorCookie, Value: custCookie}})
	for _, r := range operatorRoutes {
		if r.method != http.MethodGet {
			continue
		}
		code, body := forged.get(r.path)
		require.Equal(t, http.StatusSeeOther, code, r.path)
		requireNoGlobex(t, r.path, body)
	}

	// The token as a bearer works for the portal only.
	bearer := newClient(t, srv.URL)
	code, body, _ = bearer.do(http.MethodGet, "/portal", nil, "Authorization", "Bearer "+f.AcmeToken)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "Acme Volunteers")
	requireNoGlobex(t, "bearer portal", body)
	for _, r := range operatorRoutes {
		code, body, _ := bearer.do(r.method, r.path, nil, "Authorization", "Bearer "+f.AcmeToken)
		require.Contains(t, []int{http.StatusSeeOther, http.StatusForbidden}, code, r.path)
		requireNoGlobex(t, r.path, body)
	}

	// With globex's real dead letter id too: nothing happened to it, and no
	// operator action was recorded for the customer's attempts.
	for _, op := range []string{"retry", "discard"} {
		p := "/customers/globex/dlq/" + strconv.FormatInt(f.GlobexLetter, 10) + "/" + op
		code, body, _ := c.do(http.MethodPost, p, url.Values{"csrf": {tok}, "reason": {"x"}})
		require.Equal(t, http.StatusForbidden, code, p)
		requireNoGlobex(t, p, body)
	}
	var letterStatus string
	var acted int
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT status, (SELECT count(*) FROM vomosync.operator_actions WHERE action <> 'login')
		FROM vomosync.dead_letters WHERE id = $1`, f.GlobexLetter).Scan(&letterStatus, &acted))
	require.Equal(t, "open", letterStatus)
	require.Zero(t, acted)

	// An operator session is not a customer session.
	op := newClient(t, srv.URL)
	op.loginOperator(f)
	code, _ = op.get("/portal")
	require.Equal(t, http.StatusSeeOther, code)

	// Revoking the token ends its sessions.
	var id int64
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT id FROM vomosync.console_tokens WHERE customer_id = 'acme'`).Scan(&id))
	require.NoError(t, auth.RevokeConsoleToken(ctx, f.Pool, "acme", id))
	code, _ = c.get("/portal")
	require.Equal(t, http.StatusSeeOther, code, "revoked token, no session")
	code, _, _ = bearer.do(http.MethodGet, "/portal", nil, "Authorization", "Bearer "+f.AcmeToken)
	require.Equal(t, http.StatusSeeOther, code)

	var stored []byte
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT token_hash FROM vomosync.console_tokens WHERE id = $1`, id).Scan(&stored))
	require.NotContains(t, string(stored), f.AcmeToken, "only the hash is stored")
}

// With a publisher, the console retries a dead letter through the normal
// path (origin redrive) and records who did it.
func TestRetryFromConsole(t *testing.T) {
	t.Parallel()
	f := consoletest.Seed(t)
	ctx := context.Background()
	natsURL, _ := natstest.Start(t)
	nc, js, err := messaging.Connect(ctx, natsURL, "test", 5*time.Second)
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, messaging.EnsureStreams(ctx, js, messaging.Settings{Replicas: 1, DuplicateWindow: time.Minute, MaxAge: time.Hour, MaxBytes: -1}))
	payload, err := proto.Marshal(&eventsv1.ChangeEvent{CustomerId: "globex", Resource: "users", RecordId: f.GlobexRecord,
		Operation: eventsv1.Operation_OPERATION_UPSERT, SourceUpdatedAt: timestamppb.Now(), Record: []byte(`{"id":2002}`)})
	require.NoError(t, err)
	var id int64
	require.NoError(t, f.Pool.QueryRow(ctx, `INSERT INTO vomosync.dead_letters (customer_id, resource, record_id, subject, payload, error)
		VALUES ('globex', 'users', $1, 'vomosync.changes.globex.users', $2, 'destination down') RETURNING id`, f.GlobexRecord, payload).Scan(&id))
	srv := consoletest.Server(t, f, "", func(s *web.Server) {
		s.DLQ, s.CanRetry = &deadletter.Store{DB: f.Pool, JS: js}, true
	})
	c := newClient(t, srv.URL)
	c.loginOperator(f)
	_, body := c.get("/customers/globex/dlq")
	require.Contains(t, body, "/dlq/"+strconv.FormatInt(id, 10)+"/retry")
	tok := c.csrf("/customers/globex/dlq")
	code, _, _ := c.do(http.MethodPost, "/customers/globex/dlq/"+strconv.FormatInt(id, 10)+"/retry", url.Values{"csrf": {tok}})
	require.Equal(t, http.StatusSeeOther, code)
	var status, by string
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT status, resolved_by FROM vomosync.dead_letters WHERE id = $1`, id).Scan(&status, &by))
	require.Equal(t, "retried", status)
	require.Equal(t, "console:alice", by)
	stream, err := js.Stream(ctx, messaging.StreamChanges)
	require.NoError(t, err)
	m, err := stream.GetMsg(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "ORIGIN_REDRIVE", m.Header.Get(messaging.HeaderOrigin))
	var action string
	require.NoError(t, f.Pool.QueryRow(ctx, `SELECT action FROM vomosync.operator_actions WHERE action LIKE 'dlq_%'`).Scan(&action))
	require.Equal(t, "dlq_retry", action)
}

func TestCookiesAndBodyCap(t *testing.T) {
	t.Parallel()
	f := consoletest.Seed(t)
	srv := consoletest.Server(t, f, "", func(s *web.Server) { s.SecureCookies = true })
	cookie := func(hdr http.Header) string {
		for _, c := range hdr.Values("Set-Cookie") {
			return c
		}
		t.Fatal("no cookie set")
		return ""
	}
	c := newClient(t, srv.URL)
	_, _, hdr := c.do(http.MethodPost, "/login", url.Values{"username": {f.Operator}, "password": {f.Password}})
	op := cookie(hdr)
	_, _, hdr = c.do(http.MethodPost, "/portal/login", url.Values{"token": {f.AcmeToken}})
	cust := cookie(hdr)
	for name, ck := range map[string]string{web.OperatorCookie: op, web.CustomerCookie: cust} {
		require.True(t, strings.HasPrefix(ck, name+"="), ck)
		for _, attr := range []string{"HttpOnly", "Secure", "SameSite=Strict", "Path=/"} {
			require.Contains(t, ck, attr, name)
		}
		require.NotContains(t, ck, "Domain=", name)
	}

	// A body over the cap is refused before the password is looked at, and
	// does not count as a failed login.
	big := url.Values{"username": {f.Operator}, "password": {strings.Repeat("x", web.MaxForm)}}
	code, _, _ := newClient(t, srv.URL).do(http.MethodPost, "/login", big)
	require.Equal(t, http.StatusRequestEntityTooLarge, code)
	code, _, _ = newClient(t, srv.URL).do(http.MethodPost, "/portal/login", url.Values{"token": {strings.Repeat("x", web.MaxForm)}})
	require.Equal(t, http.StatusRequestEntityTooLarge, code)
	var fails int
	require.NoError(t, f.Pool.QueryRow(context.Background(), `SELECT count(*) FROM vomosync.login_failures`).Scan(&fails))
	require.Zero(t, fails)
}

// Guessing console tokens is limited per client address, like passwords.
func TestPortalLoginIsRateLimited(t *testing.T) {
	t.Parallel()
	f := consoletest.Seed(t)
	srv := consoletest.Server(t, f, "", func(s *web.Server) { s.AddrLimit.Max = 3 })
	c := newClient(t, srv.URL)
	for range 3 {
		code, _, _ := c.do(http.MethodPost, "/portal/login", url.Values{"token": {"vsct_guess"}})
		require.Equal(t, http.StatusUnauthorized, code)
	}
	code, body, _ := c.do(http.MethodPost, "/portal/login", url.Values{"token": {f.AcmeToken}})
	require.Equal(t, http.StatusTooManyRequests, code)
	require.NotContains(t, body, "Acme")
}
