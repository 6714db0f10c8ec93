package sim

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Handler serves the VOMO surface under /v1/ and the control surface under /admin/.
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	list := func(pattern, endpoint, resource string, h v1Func) {
		mux.HandleFunc("GET /v1/"+pattern, s.v1(endpoint, resource, true, h))
	}
	detail := func(pattern, endpoint, resource string, h v1Func) {
		mux.HandleFunc("GET /v1/"+pattern, s.v1(endpoint, resource, false, h))
	}
	list("users", "users", Users, s.serveList(Users, usersScope))
	detail("users/{id}", "users/{id}", Users, s.serveDetail(Users, "id", nil))
	list("projects", "projects", Projects, s.serveList(Projects, projectsScope))
	detail("projects/{id}", "projects/{id}", Projects, s.serveDetail(Projects, "id", nil))
	detail("projects/today", "projects/today", Projects, s.serveToday)
	detail("projects/date/{id}", "projects/date/{id}", Projects, s.serveDate)
	list("groups", "groups", Groups, s.serveList(Groups, nil))
	detail("groups/{id}", "groups/{id}", Groups, s.serveDetail(Groups, "id", nil))
	list("groups/{id}/members", "groups/{id}/members", Groups, s.serveMembers)
	list("campaigns", "campaigns", Campaigns, s.serveList(Campaigns, nil))
	detail("campaigns/{id}", "campaigns/{id}", Campaigns, s.serveDetail(Campaigns, "id", nil))
	list("certificates", "certificates", Certificates, s.serveList(Certificates, nil))
	list("forms", "forms", Forms, s.serveList(Forms, nil))
	list("forms/{id}/completions", "forms/{id}/completions", Completions, s.serveList(Completions, completionsScope))
	detail("forms/{id}/completions/{completion}", "forms/{id}/completions/{id}", Completions, s.serveDetail(Completions, "completion", completionOfForm))
	list("organizations", "organizations", Organizations, s.serveList(Organizations, nil))
	detail("organizations/{id}", "organizations/{id}", Organizations, s.serveDetail(Organizations, "id", nil))
	mux.HandleFunc("/v1/", s.v1("", "", false, func(w http.ResponseWriter, r *http.Request, c *customer, b Behaviour) {
		writeMessage(w, http.StatusNotFound, msgNotFound)
	}))
	s.adminRoutes(mux)
	return mux
}

const (
	msgUnauthenticated = "Unauthenticated."
	msgNotFound        = "Resource not found."
	msgForbidden       = "This action is unauthorized."
	msgInvalid         = "The given data was invalid."
)

// statusWriter remembers the status for the per-token request counts.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type v1Func func(w http.ResponseWriter, r *http.Request, c *customer, b Behaviour)

// v1 authenticates the bearer token, stamps the Date header from the
// customer's clock, counts the request by token and status, and applies the
// endpoint's behaviour: 403, storms, the rate limit, then page faults.
func (s *Sim) v1(endpoint, resource string, isList bool, h v1Func) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.RLock()
		ts := s.tokens[tok]
		var c *customer
		if ts != nil {
			c = s.customers[ts.customer]
		}
		revoked := ts != nil && ts.revoked
		s.mu.RUnlock()
		sw := &statusWriter{ResponseWriter: w}
		if c == nil {
			w.Header().Set("Date", s.opts.Now().UTC().Format(http.TimeFormat))
			writeMessage(sw, http.StatusUnauthorized, msgUnauthenticated)
			s.unknownMu.Lock()
			s.unknown[sw.status]++
			s.unknownMu.Unlock()
			return
		}
		defer func() { c.count(tok, sw.status) }()
		c.mu.RLock()
		now := s.clock(c)
		b, key := c.behaviour(endpoint, resource)
		c.mu.RUnlock()
		w.Header().Set("Date", now.Format(http.TimeFormat))
		switch {
		case revoked:
			writeMessage(sw, http.StatusUnauthorized, msgUnauthenticated)
			return
		case b.Forbidden:
			writeMessage(sw, http.StatusForbidden, msgForbidden)
			return
		case c.throttle(sw, b, key, tok):
			return
		}
		page := 0
		if isList {
			page = pageParam(r.URL.Query())
		}
		if pf, ok := c.pageFault(b, endpoint, page); ok {
			if !applyFault(sw, r, pf, func(w http.ResponseWriter) { h(w, r, c, b) }) {
				return
			}
		}
		h(sw, r, c, b)
	}
}

// applyFault carries out a page fault; it reports whether the request
// should still be served normally (slow answers).
func applyFault(w http.ResponseWriter, r *http.Request, pf PageFault, serve func(http.ResponseWriter)) bool {
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-r.Context().Done():
			return false
		case <-t.C:
			return true
		}
	}
	switch pf.Kind {
	case "status":
		code := pf.Status
		if code == 0 {
			code = http.StatusInternalServerError
		}
		writeMessage(w, code, http.StatusText(code))
		return false
	case "slow":
		return wait(durationOr(pf.Delay, 2*time.Second))
	case "timeout":
		return wait(durationOr(pf.Delay, 2*time.Minute))
	case "reset":
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
			return false
		}
		panic(http.ErrAbortHandler)
	case "truncate":
		rec := &recorder{header: http.Header{}}
		serve(rec)
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(rec.body)))
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body[:len(rec.body)/2])
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // closes the connection mid-body
	}
	return true
}

func durationOr(d Duration, def time.Duration) time.Duration {
	if d > 0 {
		return time.Duration(d)
	}
	return def
}

// recorder buffers a response (for truncation).
type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body = append(r.body, b...)
	return len(b), nil
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeMessage(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, append(appendJSONString([]byte(`{"message":`), msg), '}'))
}

func validationError(w http.ResponseWriter, field, msg string) {
	b := []byte(`{"message":"` + msgInvalid + `","errors":{`)
	b = appendJSONString(b, field)
	b = append(b, `:[`...)
	b = appendJSONString(b, msg)
	b = append(b, `]}}`...)
	writeJSON(w, http.StatusUnprocessableEntity, b)
}

var encPool = sync.Pool{New: func() any { return &enc{b: make([]byte, 0, 16<<10)} }}

// filterLayouts are the accepted filter value formats; no zone means UTC.
var filterLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"}

// parseFilterTime reads an inclusive bound at one-second precision.
func parseFilterTime(v string) (int64, bool) {
	for _, l := range filterLayouts {
		if t, err := time.Parse(l, v); err == nil {
			return t.Unix(), true
		}
	}
	return 0, false
}

// listFilter reads the documented date filters.
func listFilter(q url.Values) (filter, string, bool) {
	f := filter{updBefore: noUpper, crBefore: noUpper, updAfter: -noUpper, crAfter: -noUpper}
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"updated_after", &f.updAfter}, {"updated_before", &f.updBefore}, {"created_after", &f.crAfter}, {"created_before", &f.crBefore}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		t, ok := parseFilterTime(v)
		if !ok {
			return f, p.name, false
		}
		*p.dst = t
	}
	return f, "", true
}

func pageParam(q url.Values) int {
	p, err := strconv.Atoi(q.Get("page"))
	if err != nil || p < 1 {
		return 1 // Laravel reads an invalid page as the first
	}
	return p
}

func (s *Sim) baseURL(r *http.Request) string {
	if s.opts.BaseURL != "" {
		return strings.TrimSuffix(s.opts.BaseURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
