// Package web serves the console: server-rendered pages for operators
// (fleet summary, customer health, cycles, gaps, dead letters, record
// history, action audit) and a customer's own health page reached with a
// customer-scoped token. No scripts, no external assets.
package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/vomosync/vomosync/services/console/auth"
	"github.com/vomosync/vomosync/services/console/ops"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Cookie names: one per kind, so a customer cookie is never read as an
// operator's.
const (
	OperatorCookie = "vomosync_session"
	CustomerCookie = "vomosync_customer"
)

// DB is what the console needs of the pool.
type DB interface {
	ops.DBTX
	Begin(ctx context.Context) (pgx.Tx, error)
}

// DeadLetters resolves dead letters (processor's deadletter.Store).
type DeadLetters interface {
	Retry(ctx context.Context, id int64, actor string) error
	Discard(ctx context.Context, id int64, actor, reason string) error
}

// Server is the console's HTTP handler.
type Server struct {
	DB       DB
	Sessions auth.Sessions
	// UserLimit and AddrLimit bound failed logins per user name and per
	// client address.
	UserLimit, AddrLimit auth.Limiter
	// DLQ resolves dead letters; CanRetry says whether it can republish
	// (the console needs a NATS user allowed to publish changes).
	DLQ      DeadLetters
	CanRetry bool
	// JaegerURL links trace ids to JaegerURL/trace/<id> ("" shows ids only).
	JaegerURL string
	// SummaryTTL is how long the fleet's standings are reused by summary
	// pages (one query reads every pair); 0 evaluates on every view.
	SummaryTTL time.Duration
	// SecureCookies marks cookies Secure; off only for local http.
	SecureCookies bool
	Log           zerolog.Logger

	pages map[string]*template.Template
	fleet *ops.Fleet
}

type ctxKey struct{}

// page is what every template gets.
type page struct {
	Title    string
	Operator string
	Customer string
	CSRF     string
	Flash    string
	Error    string
	Data     any
}

// Handler builds the routes.
func (s *Server) Handler() (http.Handler, error) {
	if err := s.parse(); err != nil {
		return nil, err
	}
	s.fleet = &ops.Fleet{DB: s.DB, TTL: s.SummaryTTL}
	static, _ := fs.Sub(assets, "static")
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.operator(s.logout))
	mux.HandleFunc("GET /{$}", s.operator(s.summary))
	mux.HandleFunc("GET /customers/{id}", s.operator(s.customer))
	mux.HandleFunc("GET /customers/{id}/cycles", s.operator(s.cycles))
	mux.HandleFunc("GET /customers/{id}/gaps", s.operator(s.gaps))
	mux.HandleFunc("GET /customers/{id}/dlq", s.operator(s.deadLetters))
	mux.HandleFunc("POST /customers/{id}/dlq/{dl}/{op}", s.operator(s.resolveLetter))
	mux.HandleFunc("POST /customers/{id}/{op}", s.operator(s.pauseResume))
	mux.HandleFunc("GET /records", s.operator(s.records))
	mux.HandleFunc("GET /actions", s.operator(s.actions))
	mux.HandleFunc("GET /portal/login", s.portalLoginPage)
	mux.HandleFunc("POST /portal/login", s.portalLogin)
	mux.HandleFunc("POST /portal/logout", s.customerOnly(s.portalLogout))
	mux.HandleFunc("GET /portal", s.customerOnly(s.portal))
	return securityHeaders(limitForms(mux)), nil
}

// MaxForm bounds a request body: the console's forms are a few short
// fields, so anything larger is refused before it is read further.
const MaxForm = 64 << 10

// limitForms caps every body at MaxForm and parses POST forms up front, so
// an oversized or malformed form is answered 413 or 400 instead of being
// read as empty fields.
func limitForms(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxForm)
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil {
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
					return
				}
				http.Error(w, "bad form", http.StatusBadRequest)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) parse() error {
	funcs := template.FuncMap{
		"ts":      fmtTime,
		"tsp":     func(t *time.Time) string { return fmtTimeP(t) },
		"ago":     ago,
		"lag":     func(p ops.Pair) string { return ops.Human(p.Lag(time.Now())) },
		"pct":     func(f float64) string { return strconv.FormatFloat(f*100, 'f', 2, 64) + "%" },
		"join":    func(s []string) string { return strings.Join(s, ", ") },
		"deref":   func(p *int64) int64 { return *p },
		"outcome": outcomeHTML,
		"trace":   s.traceHTML,
	}
	s.pages = map[string]*template.Template{}
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(assets, "templates/layout.html", n)
		if err != nil {
			return fmt.Errorf("parse template %s: %w", n, err)
		}
		s.pages[base] = t
	}
	return nil
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			hd.Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	if ss, ok := r.Context().Value(ctxKey{}).(auth.Session); ok {
		p.CSRF = ss.CSRF
		if ss.Kind == auth.KindOperator {
			p.Operator = ss.Username
		} else {
			p.Customer = ss.CustomerID
		}
	}
	if p.Flash == "" {
		p.Flash = r.URL.Query().Get("flash")
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.pages[name].ExecuteTemplate(w, "layout", p); err != nil {
		s.Log.Error().Err(err).Str("page", name).Msg("render")
	}
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusInternalServerError, "Something went wrong; the error is in the console's log."
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, ops.ErrNotFound):
		status, msg = http.StatusNotFound, "Not found."
	case errors.Is(err, errBadRequest):
		status, msg = http.StatusBadRequest, err.Error()
	case errors.As(err, &pgErr) && pgErr.Code == "22P02":
		status, msg = http.StatusBadRequest, "Bad parameter."
	default:
		s.Log.Error().Err(err).Str("path", r.URL.Path).Msg("request failed")
	}
	s.render(w, r, status, "error", page{Title: http.StatusText(status), Data: msg})
}

var errBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadRequest}, args...)...)
}

// session reads the session of cookie name, of the wanted kind only.
func (s *Server) session(r *http.Request, name, kind string) (auth.Session, bool) {
	c, err := r.Cookie(name)
	if err != nil {
		return auth.Session{}, false
	}
	ss, err := s.Sessions.Get(r.Context(), c.Value)
	if err != nil {
		if !errors.Is(err, auth.ErrNoSession) {
			s.Log.Error().Err(err).Msg("session lookup")
		}
		return auth.Session{}, false
	}
	return ss, ss.Kind == kind
}

// operator admits only operator sessions. Anything else goes to the login
// page (GET) or is refused (POST).
func (s *Server) operator(h http.HandlerFunc) http.HandlerFunc {
	return s.admit(OperatorCookie, auth.KindOperator, "/login?next=", false, h)
}

// customerOnly admits a customer session, or a console token presented as
// a bearer token (scripts, GET only), and nothing else.
func (s *Server) customerOnly(h http.HandlerFunc) http.HandlerFunc {
	return s.admit(CustomerCookie, auth.KindCustomer, "/portal/login", true, h)
}

// admit runs h for a live session of kind read from cookie; POSTs must also
// carry the session's CSRF token. login is where a GET without one goes
// (an operator's comes back to the page asked for).
func (s *Server) admit(cookie, kind, login string, bearer bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss, ok := s.session(r, cookie, kind)
		if !ok && bearer && r.Method == http.MethodGet {
			if tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); found {
				if cust, id, err := auth.CheckConsoleToken(r.Context(), s.DB, tok); err == nil {
					ss, ok = auth.Session{Kind: auth.KindCustomer, CustomerID: cust, TokenID: id}, true
				}
			}
		}
		if !ok {
			if r.Method == http.MethodGet {
				to := login
				if strings.HasSuffix(to, "=") {
					to += url.QueryEscape(r.URL.RequestURI())
				}
				http.Redirect(w, r, to, http.StatusSeeOther)
				return
			}
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		if r.Method == http.MethodPost && !auth.CheckCSRF(ss, r.PostFormValue("csrf")) {
			http.Error(w, "forbidden: stale form, reload the page", http.StatusForbidden)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, ss)))
	}
}

func sessionOf(r *http.Request) auth.Session {
	ss, _ := r.Context().Value(ctxKey{}).(auth.Session)
	return ss
}

// setCookie sets a session cookie: HttpOnly, SameSite=Strict, and Secure
// unless the operator turned it off for plain http on a laptop.
func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	// Secure is on by default (CONSOLE_SECURE_COOKIES) and off only by configuration.
	c := &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true, Secure: s.SecureCookies, SameSite: http.SameSiteStrictMode} // #nosec G124 -- see above
	http.SetCookie(w, c)
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// local keeps a post-login redirect on this site.
func local(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "login", page{Title: "Operator login",
		Data: map[string]any{"Action": "/login", "Next": local(r.URL.Query().Get("next"))}})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	user := strings.TrimSpace(strings.ToLower(r.PostFormValue("username")))
	pass := r.PostFormValue("password")
	next := local(r.PostFormValue("next"))
	again := func(status int, msg string) {
		s.render(w, r, status, "login", page{Title: "Operator login", Error: msg,
			Data: map[string]any{"Action": "/login", "Next": next}})
	}
	userKey, addrKey := "user:"+user, "addr:"+clientAddr(r)
	if err := s.UserLimit.Allow(ctx, userKey); err != nil {
		s.limited(w, r, err, again)
		return
	}
	if err := s.AddrLimit.Allow(ctx, addrKey); err != nil {
		s.limited(w, r, err, again)
		return
	}
	op, err := auth.CheckPassword(ctx, s.DB, user, pass)
	if err != nil {
		if !errors.Is(err, auth.ErrBadCredentials) {
			s.fail(w, r, err)
			return
		}
		_ = s.UserLimit.Fail(ctx, userKey)
		_ = s.AddrLimit.Fail(ctx, addrKey)
		_ = ops.Record(ctx, s.DB, ops.Action{Actor: "console:" + user, Via: ops.ViaConsole, Action: "login_failed",
			Detail: map[string]any{"addr": clientAddr(r)}})
		again(http.StatusUnauthorized, "Wrong user or password.")
		return
	}
	tok, err := s.Sessions.NewOperator(ctx, op, clientAddr(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	_ = ops.Record(ctx, s.DB, ops.Action{Actor: "console:" + op.Username, Via: ops.ViaConsole, Action: "login",
		Detail: map[string]any{"addr": clientAddr(r)}})
	s.setCookie(w, OperatorCookie, tok, 0)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) limited(w http.ResponseWriter, r *http.Request, err error, again func(int, string)) {
	if errors.Is(err, auth.ErrRateLimited) {
		again(http.StatusTooManyRequests, "Too many failed logins. Wait a quarter of an hour, or ask another operator.")
		return
	}
	s.fail(w, r, err)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(OperatorCookie); err == nil {
		_ = s.Sessions.End(r.Context(), c.Value)
	}
	s.setCookie(w, OperatorCookie, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (s *Server) actor(r *http.Request) string { return "console:" + sessionOf(r).Username }

// traceHTML links a trace id to Jaeger.
func (s *Server) traceHTML(id string) template.HTML {
	if id == "" {
		return ""
	}
	esc := template.HTMLEscapeString(id)
	if s.JaegerURL == "" {
		return template.HTML(`<code>` + esc + `</code>`) // #nosec G203 -- escaped above
	}
	href := template.HTMLEscapeString(strings.TrimRight(s.JaegerURL, "/") + "/trace/" + url.PathEscape(id))
	return template.HTML(`<a class="trace" href="` + href + `" rel="noreferrer" target="_blank"><code>` + esc[:min(len(esc), 12)] + `…</code></a>`) // #nosec G203 -- escaped above
}

func outcomeHTML(o string) template.HTML {
	class := "muted"
	switch o {
	case "success", "applied":
		class = "ok"
	case "failed", "dead_lettered", "untrusted", "held":
		class = "bad"
	case "partial", "interrupted", "skipped_stale", "running":
		class = "warn"
	}
	return template.HTML(`<span class="` + class + `">` + template.HTMLEscapeString(o) + `</span>`) // #nosec G203 -- escaped
}

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

func fmtTimeP(t *time.Time) string {
	if t == nil {
		return "-"
	}
	if t.Unix() <= 0 {
		return "epoch"
	}
	return fmtTime(*t)
}

func ago(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x == nil {
			return "never"
		}
		t = *x
	}
	return ops.Human(time.Since(t)) + " ago"
}
