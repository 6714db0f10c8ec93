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
	mux.HandleFunc("GET /v1/users", s.v1(Users, s.serveList(Users)))
	mux.HandleFunc("GET /v1/users/{id}", s.v1(Users, s.serveDetail(Users)))
	mux.HandleFunc("/v1/", s.v1("", func(w http.ResponseWriter, r *http.Request, c *customer) {
		writeMessage(w, http.StatusNotFound, msgNotFound)
	}))
	s.adminRoutes(mux)
	return mux
}

const (
	msgUnauthenticated = "Unauthenticated."
	msgNotFound        = "Resource not found."
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

type v1Func func(w http.ResponseWriter, r *http.Request, c *customer)

// v1 authenticates the bearer token, stamps the Date header from the
// customer's clock and counts the request by token and status.
func (s *Sim) v1(resource string, h v1Func) http.HandlerFunc {
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
		c.mu.RUnlock()
		w.Header().Set("Date", now.Format(http.TimeFormat))
		if revoked {
			writeMessage(sw, http.StatusUnauthorized, msgUnauthenticated)
			return
		}
		h(sw, r, c)
	}
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

func (s *Sim) serveList(resource string) v1Func {
	render := renderers[resource]
	return func(w http.ResponseWriter, r *http.Request, c *customer) {
		q := r.URL.Query()
		f, bad, ok := listFilter(q)
		if !ok {
			validationError(w, bad, "The "+strings.ReplaceAll(bad, "_", " ")+" is not a valid date.")
			return
		}
		page := pageParam(q)
		ps := s.opts.PageSize
		path := s.baseURL(r) + r.URL.Path

		e := encPool.Get().(*enc)
		defer encPool.Put(e)
		e.b = e.b[:0]

		c.mu.RLock()
		e.wf = c.faults.Wire
		f.byUpdated = c.faults.Order == "updated_at"
		t := c.tables[resource]
		idxs := t.selectRows(f)
		total := len(idxs)
		from := (page - 1) * ps
		to := min(from+ps, total)
		e.raw(`{"data":[`)
		for i := from; i < to; i++ {
			idx := idxs[i]
			id := t.id(idx)
			e.lay = e.wf.layout(id)
			render(e, c, id, &t.rows[idx], false)
		}
		c.mu.RUnlock()
		e.raw(`]`)
		lastPage := max(1, (total+ps-1)/ps)
		link := func(k string, p int, ok bool) {
			e.key(k)
			if !ok {
				e.raw("null")
				return
			}
			q.Set("page", strconv.Itoa(p))
			e.b = appendJSONString(e.b, path+"?"+q.Encode())
		}
		e.open("links", '{')
		link("first", 1, true)
		link("last", lastPage, true)
		link("prev", page-1, page > 1)
		link("next", page+1, page < lastPage)
		e.close('}')
		meta := func(k string, v int, ok bool) {
			switch {
			case !ok:
				e.null(k)
			case e.wf.StringMeta:
				e.str(k, strconv.Itoa(v))
			default:
				e.num(k, int64(v))
			}
		}
		e.open("meta", '{')
		meta("current_page", page, true)
		meta("from", from+1, from < to)
		meta("to", to, from < to)
		e.str("path", path)
		meta("per_page", ps, true)
		meta("total", total, true)
		meta("last_page", lastPage, true)
		e.close('}')
		e.close('}')
		writeJSON(w, http.StatusOK, e.b)
	}
}

func (s *Sim) serveDetail(resource string) v1Func {
	render := renderers[resource]
	return func(w http.ResponseWriter, r *http.Request, c *customer) {
		n, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			writeMessage(w, http.StatusNotFound, msgNotFound)
			return
		}
		e := encPool.Get().(*enc)
		defer encPool.Put(e)
		e.b = append(e.b[:0], `{"data":`...)
		c.mu.RLock()
		t := c.tables[resource]
		idx, ok := t.lookup(n)
		if ok {
			e.wf = c.faults.Wire
			e.lay = e.wf.layout(n)
			render(e, c, n, &t.rows[idx], true)
		}
		c.mu.RUnlock()
		if !ok {
			writeMessage(w, http.StatusNotFound, msgNotFound)
			return
		}
		e.close('}')
		writeJSON(w, http.StatusOK, e.b)
	}
}
