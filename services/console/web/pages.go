package web

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/postgres"
	"github.com/vomosync/vomosync/services/console/auth"
	"github.com/vomosync/vomosync/services/console/ops"
)

func (s *Server) summary(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sq := ops.SummaryQuery{All: q.Get("all") == "1", Search: strings.TrimSpace(q.Get("q")), After: q.Get("after")}
	sum, err := s.fleet.Summary(r.Context(), sq)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "summary", page{Title: "Fleet summary",
		Data: map[string]any{"S": sum, "Q": sq.Search, "All": sq.All}})
}

// resources returns a known customer's resources or wraps ErrNotFound.
func (s *Server) resources(r *http.Request, id string) ([]string, error) {
	var res []string
	err := s.DB.QueryRow(r.Context(), `SELECT resources FROM vomosync.customers WHERE id = $1`, id).Scan(&res)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ops.ErrNotFound
	}
	return res, err
}

func (s *Server) customer(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, err := ops.CustomerHealth(ctx, s.DB, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	recent, err := ops.RecentRecords(ctx, s.DB, c.ID, 10)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	errs, err := ops.APIErrors(ctx, s.DB, time.Now().Add(-time.Hour), c.ID, 20)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "customer", page{Title: c.ID,
		Data: map[string]any{"C": c, "Recent": recent, "Errors": errs}})
}

func before(r *http.Request) (time.Time, error) {
	b := r.URL.Query().Get("before")
	if b == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, b)
	if err != nil {
		return t, badRequest("before must be an RFC 3339 time")
	}
	return t, nil
}

func (s *Server) cycles(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	res, err := s.resources(r, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	b, err := before(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resource := r.URL.Query().Get("resource")
	const limit = 50
	cs, err := ops.Cycles(r.Context(), s.DB, ops.CycleQuery{Customer: id, Resource: resource, Before: b, Limit: limit})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	next := ""
	if len(cs) == limit {
		next = cs[len(cs)-1].StartedAt.Format(time.RFC3339Nano)
	}
	s.render(w, r, http.StatusOK, "cycles", page{Title: id + " cycles",
		Data: map[string]any{"Customer": id, "Resources": res, "Resource": resource, "Cycles": cs, "Next": next}})
}

func (s *Server) gaps(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.resources(r, id); err != nil {
		s.fail(w, r, err)
		return
	}
	day := time.Now().UTC()
	if d := r.URL.Query().Get("day"); d != "" {
		var err error
		if day, err = time.Parse(time.DateOnly, d); err != nil {
			s.fail(w, r, badRequest("day must be YYYY-MM-DD"))
			return
		}
	}
	d, err := ops.GapsOfDay(r.Context(), s.DB, day, id, 500)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "gaps", page{Title: id + " gaps", Data: map[string]any{"Customer": id, "D": d}})
}

var letterStatuses = []string{"open", "retried", "redriven", "discarded", "all"}

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.resources(r, id); err != nil {
		s.fail(w, r, err)
		return
	}
	b, err := before(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	status := r.URL.Query().Get("status")
	if status == "" {
		status = "open"
	}
	const limit = 50
	ls, err := ops.DeadLetters(r.Context(), s.DB, ops.LetterQuery{Customer: id, Status: status, Before: b, Limit: limit})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	next := ""
	if len(ls) == limit {
		next = ls[len(ls)-1].LastFailedAt.Format(time.RFC3339Nano)
	}
	s.render(w, r, http.StatusOK, "dlq", page{Title: id + " dead letters", Data: map[string]any{"Customer": id,
		"Letters": ls, "Status": status, "Statuses": letterStatuses, "Next": next, "CanRetry": s.CanRetry && s.DLQ != nil}})
}

// resolveLetter retries or discards one dead letter of the customer in the
// path; a letter of another customer is not found.
func (s *Server) resolveLetter(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	dl, err := strconv.ParseInt(r.PathValue("dl"), 10, 64)
	if err != nil {
		s.fail(w, r, badRequest("dead letter id must be a number"))
		return
	}
	var owner string
	if err := s.DB.QueryRow(ctx, `SELECT customer_id FROM vomosync.dead_letters WHERE id = $1`, dl).Scan(&owner); err != nil || owner != id {
		s.fail(w, r, ops.ErrNotFound)
		return
	}
	op, reason := r.PathValue("op"), strings.TrimSpace(r.PostFormValue("reason"))
	switch {
	case s.DLQ == nil:
		err = badRequest("dead letters cannot be resolved from this console")
	case op == "retry" && s.CanRetry:
		err = s.DLQ.Retry(ctx, dl, s.actor(r))
	case op == "discard" && reason == "":
		err = badRequest("discarding needs a reason")
	case op == "discard":
		err = s.DLQ.Discard(ctx, dl, s.actor(r), reason)
	default:
		err = badRequest("unknown action %q", op)
	}
	if err == nil {
		err = ops.Record(ctx, s.DB, ops.Action{Actor: s.actor(r), Via: ops.ViaConsole, Action: "dlq_" + op,
			Customer: id, Target: strconv.FormatInt(dl, 10), Reason: reason})
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/customers/"+url.PathEscape(id)+"/dlq?flash="+url.QueryEscape("dead letter "+strconv.FormatInt(dl, 10)+": "+op+" done"), http.StatusSeeOther)
}

func (s *Server) pauseResume(w http.ResponseWriter, r *http.Request) {
	id, op := r.PathValue("id"), r.PathValue("op")
	resource, reason := r.PostFormValue("resource"), strings.TrimSpace(r.PostFormValue("reason"))
	var changed string
	var err error
	switch op {
	case "pause":
		changed, err = ops.Pause(r.Context(), s.DB, s.actor(r), ops.ViaConsole, id, resource, reason)
	case "resume":
		changed, err = ops.Resume(r.Context(), s.DB, s.actor(r), ops.ViaConsole, id, resource, reason)
	default:
		err = ops.ErrNotFound
	}
	if errors.Is(err, ops.ErrNeedsReason) {
		err = badRequest("a reason is required")
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/customers/"+url.PathEscape(id)+"?flash="+url.QueryEscape(changed), http.StatusSeeOther)
}

func (s *Server) records(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cust, resource, id := strings.TrimSpace(q.Get("customer")), q.Get("resource"), strings.TrimSpace(q.Get("id"))
	data := map[string]any{"Customer": cust, "Resource": resource, "ID": id, "Resources": customer.AllResources}
	if cust != "" && id != "" {
		if _, err := s.resources(r, cust); err != nil {
			s.fail(w, r, err)
			return
		}
		t, err := ops.RecordTrail(r.Context(), s.DB, cust, resource, id, 200)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		data["T"] = t
	}
	s.render(w, r, http.StatusOK, "records", page{Title: "Record history", Data: data})
}

func (s *Server) actions(w http.ResponseWriter, r *http.Request) {
	b, err := before(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	cust := r.URL.Query().Get("customer")
	const limit = 100
	as, err := ops.Actions(r.Context(), s.DB, cust, b, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	next := ""
	if len(as) == limit {
		next = as[len(as)-1].At.Format(time.RFC3339Nano)
	}
	s.render(w, r, http.StatusOK, "actions", page{Title: "Operator actions", Data: map[string]any{"Customer": cust, "Actions": as, "Next": next}})
}

func (s *Server) portalLoginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "login", page{Title: "Your sync health", Data: map[string]any{"Action": "/portal/login", "Customer": true}})
}

// portalLogin exchanges a console token for a customer session, so the
// token is typed once and never travels in a URL.
func (s *Server) portalLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	again := func(status int, msg string) {
		s.render(w, r, status, "login", page{Title: "Your sync health", Error: msg, Data: map[string]any{"Action": "/portal/login", "Customer": true}})
	}
	addrKey := "addr:" + clientAddr(r)
	if err := s.AddrLimit.Allow(ctx, addrKey); err != nil {
		s.limited(w, r, err, again)
		return
	}
	cust, tokID, err := auth.CheckConsoleToken(ctx, s.DB, strings.TrimSpace(r.PostFormValue("token")))
	if err != nil {
		if !errors.Is(err, auth.ErrBadCredentials) {
			s.fail(w, r, err)
			return
		}
		_ = s.AddrLimit.Fail(ctx, addrKey)
		again(http.StatusUnauthorized, "This token is not valid (unknown, revoked or expired).")
		return
	}
	tok, err := s.Sessions.NewCustomer(ctx, cust, tokID, clientAddr(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.setCookie(w, CustomerCookie, tok, 0)
	http.Redirect(w, r, "/portal", http.StatusSeeOther)
}

func (s *Server) portalLogout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(CustomerCookie); err == nil {
		_ = s.Sessions.End(r.Context(), c.Value)
	}
	s.setCookie(w, CustomerCookie, "", -1)
	http.Redirect(w, r, "/portal/login", http.StatusSeeOther)
}

// portal shows the session's customer its own health. The customer comes
// from the session only: no parameter can name another, and the queries run
// in a transaction row-level security limits to that customer.
func (s *Server) portal(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := sessionOf(r).CustomerID
	var c ops.Customer
	var cs []ops.Cycle
	err := postgres.WithTenant(ctx, s.DB, id, func(tx pgx.Tx) error {
		var err error
		if c, err = ops.CustomerHealth(ctx, tx, id); err != nil {
			return err
		}
		cs, err = ops.Cycles(ctx, tx, ops.CycleQuery{Customer: id, Limit: 20})
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "portal", page{Title: "Sync health", Data: map[string]any{"C": c, "Cycles": cs}})
}
