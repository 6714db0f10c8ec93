package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// The admin surface mirrors the Go control API for out-of-process use (the
// demo, syncctl, e2e runs against a binary). It has no authentication: it
// is a test fixture, served only where the simulator is.
func (s *Sim) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/customers", func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, s.Customers())
	})
	mux.HandleFunc("POST /admin/customers", func(w http.ResponseWriter, r *http.Request) {
		var spec CustomerSpec
		if !readJSON(w, r, &spec) {
			return
		}
		if err := s.AddCustomer(spec); err != nil {
			adminError(w, err)
			return
		}
		adminJSON(w, http.StatusCreated, map[string]string{"id": spec.ID})
	})
	mux.HandleFunc("POST /admin/customers/{c}/{res}", func(w http.ResponseWriter, r *http.Request) {
		id, err := s.Create(r.PathValue("c"), r.PathValue("res"))
		if err != nil {
			adminError(w, err)
			return
		}
		adminJSON(w, http.StatusCreated, map[string]string{"id": id})
	})
	mux.HandleFunc("POST /admin/customers/{c}/{res}/{id}/update", s.adminMutate(s.Update))
	mux.HandleFunc("POST /admin/customers/{c}/{res}/{id}/silent", s.adminMutate(s.SilentUpdate))
	mux.HandleFunc("DELETE /admin/customers/{c}/{res}/{id}", s.adminMutate(s.Delete))
	mux.HandleFunc("POST /admin/customers/{c}/{res}/{id}/touch", s.adminMutate(s.TouchDetail))
	mux.HandleFunc("POST /admin/customers/{c}/users/{id}/leave", s.adminMutate(func(c, _, id string) error { return s.Leave(c, id) }))
	mux.HandleFunc("POST /admin/customers/{c}/{res}/{id}/late", func(w http.ResponseWriter, r *http.Request) {
		lag, err := time.ParseDuration(r.URL.Query().Get("lag"))
		if err != nil {
			adminJSON(w, http.StatusBadRequest, map[string]string{"error": "lag: want a duration such as 5m"})
			return
		}
		s.adminMutate(func(c, res, id string) error { return s.LateUpdate(c, res, id, lag) })(w, r)
	})
	mux.HandleFunc("GET /admin/customers/{c}/clock", func(w http.ResponseWriter, r *http.Request) {
		now, err := s.Now(r.PathValue("c"))
		if err != nil {
			adminError(w, err)
			return
		}
		adminJSON(w, http.StatusOK, map[string]time.Time{"now": now})
	})
	mux.HandleFunc("PUT /admin/customers/{c}/webhooks", func(w http.ResponseWriter, r *http.Request) {
		var cfg *Webhooks
		if !readJSON(w, r, &cfg) {
			return
		}
		if err := s.SetWebhooks(r.PathValue("c"), cfg); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /admin/customers/{c}/webhooks", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.WebhookStatsOf(r.PathValue("c"))
		if err != nil {
			adminError(w, err)
			return
		}
		adminJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET /admin/customers/{c}/truth/{res}", s.adminTruth)
	mux.HandleFunc("PUT /admin/customers/{c}/token", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Token string `json:"token"`
		}
		if !readJSON(w, r, &body) {
			return
		}
		if err := s.RotateToken(r.PathValue("c"), body.Token); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /admin/customers/{c}/token", func(w http.ResponseWriter, r *http.Request) {
		if err := s.RevokeToken(r.PathValue("c")); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /admin/customers/{c}/faults", func(w http.ResponseWriter, r *http.Request) {
		f, err := s.GetFaults(r.PathValue("c"))
		if err != nil {
			adminError(w, err)
			return
		}
		adminJSON(w, http.StatusOK, f)
	})
	mux.HandleFunc("PUT /admin/customers/{c}/faults", func(w http.ResponseWriter, r *http.Request) {
		var f Faults
		if !readJSON(w, r, &f) {
			return
		}
		if err := s.SetFaults(r.PathValue("c"), f); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /admin/customers/{c}/requests", func(w http.ResponseWriter, r *http.Request) {
		c := r.PathValue("c")
		if _, err := s.customer(c); err != nil {
			adminError(w, err)
			return
		}
		adminJSON(w, http.StatusOK, map[string]any{"by_status": s.RequestCounts(c), "by_token": s.RequestCountsByToken(c)})
	})
	mux.HandleFunc("POST /admin/customers/{c}/changes", func(w http.ResponseWriter, r *http.Request) {
		var rates Rates
		if !readJSON(w, r, &rates) {
			return
		}
		// Generators outlive the admin request; StopChanges ends them.
		if err := s.StartChanges(context.Background(), r.PathValue("c"), rates); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /admin/customers/{c}/changes", func(w http.ResponseWriter, r *http.Request) {
		if err := s.StopChanges(r.PathValue("c")); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *Sim) adminMutate(fn func(customerID, resource, id string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fn(r.PathValue("c"), r.PathValue("res"), r.PathValue("id")); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// adminTruth streams NDJSON, one TruthRecord a line, so a million records
// never sit in memory at once. ?fields=false leaves the fields out.
func (s *Sim) adminTruth(w http.ResponseWriter, r *http.Request) {
	withFields := r.URL.Query().Get("fields") != "false"
	c, res := r.PathValue("c"), r.PathValue("res")
	if _, err := s.Count(c, res); err != nil {
		adminError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	bw := bufio.NewWriterSize(w, 64<<10)
	var line []byte
	err := s.EachTruth(c, res, withFields, func(tr TruthRecord) error {
		line = append(line[:0], `{"id":`...)
		line = appendJSONString(line, tr.ID)
		line = append(line, `,"updated_at":"`...)
		line = tr.UpdatedAt.AppendFormat(line, "2006-01-02T15:04:05Z07:00")
		line = append(line, '"')
		if withFields {
			line = append(line, `,"fields":`...)
			line = append(line, tr.Fields...)
		}
		line = append(line, '}', '\n')
		_, err := bw.Write(line)
		return err
	})
	if err == nil {
		err = bw.Flush()
	}
	_ = err // the client went away; nothing to tell it
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		adminJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return false
	}
	return true
}

func adminError(w http.ResponseWriter, err error) {
	code := http.StatusBadRequest
	switch {
	case errors.Is(err, ErrUnknownCustomer), errors.Is(err, ErrNotFound), errors.Is(err, ErrUnknownResource):
		code = http.StatusNotFound
	case errors.Is(err, ErrCustomerExists), errors.Is(err, ErrTokenInUse):
		code = http.StatusConflict
	}
	adminJSON(w, code, map[string]string{"error": err.Error()})
}

func adminJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
