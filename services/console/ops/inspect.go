package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cycle is one recorded poll cycle.
type Cycle struct {
	ID               string         `json:"id"`
	CustomerID       string         `json:"customer_id"`
	Resource         string         `json:"resource"`
	Origin           string         `json:"origin"`
	TraceID          string         `json:"trace_id"`
	WindowFrom       *time.Time     `json:"window_from"`
	WindowTo         *time.Time     `json:"window_to"`
	CheckpointBefore *time.Time     `json:"checkpoint_before"`
	CheckpointAfter  *time.Time     `json:"checkpoint_after"`
	Pages            int            `json:"pages"`
	Requests         int            `json:"requests"`
	RecordsSeen      int            `json:"records_seen"`
	RecordsPublished int            `json:"records_published"`
	Statuses         map[string]int `json:"statuses"`
	StartedAt        time.Time      `json:"started_at"`
	DurationMS       *int64         `json:"duration_ms"`
	Outcome          string         `json:"outcome"`
	Error            string         `json:"error,omitempty"`
	Note             string         `json:"note,omitempty"`
}

// CycleQuery selects cycles, newest first; Before pages back in time.
type CycleQuery struct {
	Customer string
	Resource string // "" = every resource
	Before   time.Time
	Limit    int // default 20, at most 500
}

// Cycles returns a customer's recent poll cycles (index poll_cycles_by_customer).
func Cycles(ctx context.Context, db DBTX, q CycleQuery) ([]Cycle, error) {
	if q.Limit <= 0 {
		q.Limit = 20
	}
	q.Limit = min(q.Limit, 500)
	if q.Before.IsZero() {
		q.Before = time.Now().Add(time.Hour)
	}
	rows, err := db.Query(ctx, `SELECT id::text, customer_id, resource, origin, trace_id, window_from, window_to,
		checkpoint_before, checkpoint_after, pages, requests, records_seen, records_published, statuses,
		started_at, duration_ms, outcome, error, note
		FROM vomosync.poll_cycles
		WHERE customer_id = $1 AND ($2 = '' OR resource = $2) AND started_at < $3
		ORDER BY started_at DESC LIMIT $4`, q.Customer, q.Resource, q.Before, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("cycles of %s: %w", q.Customer, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Cycle, error) {
		var c Cycle
		var st []byte
		err := r.Scan(&c.ID, &c.CustomerID, &c.Resource, &c.Origin, &c.TraceID, &c.WindowFrom, &c.WindowTo,
			&c.CheckpointBefore, &c.CheckpointAfter, &c.Pages, &c.Requests, &c.RecordsSeen, &c.RecordsPublished, &st,
			&c.StartedAt, &c.DurationMS, &c.Outcome, &c.Error, &c.Note)
		if err == nil {
			_ = json.Unmarshal(st, &c.Statuses)
		}
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("cycles of %s: %w", q.Customer, err)
	}
	return out, nil
}

// Attempt is one processing attempt of a record (an audit_log row).
type Attempt struct {
	ProcessedAt     time.Time  `json:"processed_at"`
	RecordUpdatedAt *time.Time `json:"record_updated_at"`
	Origin          string     `json:"origin"`
	Operation       string     `json:"operation"`
	Outcome         string     `json:"outcome"`
	ChangedFields   []string   `json:"changed_fields"`
	Error           string     `json:"error,omitempty"`
	TraceID         string     `json:"trace_id"`
	CycleID         string     `json:"cycle_id,omitempty"`
}

// State is a record's sync_state row: what the destination was given last.
type State struct {
	ExternalID      string    `json:"external_id"`
	SourceUpdatedAt time.Time `json:"source_updated_at"`
	Deleted         bool      `json:"deleted"`
	FirstSeenAt     time.Time `json:"first_seen_at"`
	AppliedAt       time.Time `json:"applied_at"`
	TraceID         string    `json:"trace_id"`
}

// RecordLetter is a dead letter of the record.
type RecordLetter struct {
	ID              int64      `json:"id"`
	RecordUpdatedAt *time.Time `json:"record_updated_at"`
	Error           string     `json:"error"`
	ErrorClass      string     `json:"error_class"`
	Status          string     `json:"status"`
	LastFailedAt    time.Time  `json:"last_failed_at"`
	TraceID         string     `json:"trace_id"`
}

// RecordGap is a reconciliation gap found for the record.
type RecordGap struct {
	FoundAt  time.Time `json:"found_at"`
	Class    string    `json:"class"`
	Cause    string    `json:"cause"`
	Detail   string    `json:"detail,omitempty"`
	Repaired bool      `json:"repaired"`
}

// Trail is everything vomosync knows about one record: "when did we last
// process user X, and what happened?"
type Trail struct {
	CustomerID  string         `json:"customer_id"`
	Resource    string         `json:"resource"`
	RecordID    string         `json:"record_id"`
	State       *State         `json:"sync_state"` // nil: never applied
	Attempts    []Attempt      `json:"attempts"`
	DeadLetters []RecordLetter `json:"dead_letters"`
	Gaps        []RecordGap    `json:"gaps"`
}

// RecordTrail reads every attempt of a record (newest first, index
// audit_log_by_record), its sync state, dead letters and gaps.
func RecordTrail(ctx context.Context, db DBTX, customer, resource, id string, limit int) (Trail, error) {
	t := Trail{CustomerID: customer, Resource: resource, RecordID: id}
	if limit <= 0 {
		limit = 200
	}
	var s State
	err := db.QueryRow(ctx, `SELECT external_id, source_updated_at, deleted, first_seen_at, applied_at, trace_id
		FROM vomosync.sync_state WHERE customer_id = $1 AND resource = $2 AND record_id = $3`, customer, resource, id).
		Scan(&s.ExternalID, &s.SourceUpdatedAt, &s.Deleted, &s.FirstSeenAt, &s.AppliedAt, &s.TraceID)
	switch {
	case err == nil:
		t.State = &s
	case !errors.Is(err, pgx.ErrNoRows):
		return t, fmt.Errorf("sync state of %s/%s/%s: %w", customer, resource, id, err)
	}
	rows, err := db.Query(ctx, `SELECT processed_at, record_updated_at, origin, operation, outcome,
		coalesce(changed_fields, '{}'), error, trace_id, cycle_id
		FROM vomosync.audit_log WHERE customer_id = $1 AND resource = $2 AND record_id = $3
		ORDER BY processed_at DESC LIMIT $4`, customer, resource, id, limit)
	if err != nil {
		return t, fmt.Errorf("audit of %s/%s/%s: %w", customer, resource, id, err)
	}
	t.Attempts, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Attempt, error) {
		var a Attempt
		err := r.Scan(&a.ProcessedAt, &a.RecordUpdatedAt, &a.Origin, &a.Operation, &a.Outcome, &a.ChangedFields,
			&a.Error, &a.TraceID, &a.CycleID)
		return a, err
	})
	if err != nil {
		return t, fmt.Errorf("audit of %s/%s/%s: %w", customer, resource, id, err)
	}
	rows, err = db.Query(ctx, `SELECT id, record_updated_at, error, error_class, status, last_failed_at, trace_id
		FROM vomosync.dead_letters WHERE customer_id = $1 AND resource = $2 AND record_id = $3
		ORDER BY last_failed_at DESC LIMIT 50`, customer, resource, id)
	if err != nil {
		return t, fmt.Errorf("dead letters of %s/%s/%s: %w", customer, resource, id, err)
	}
	t.DeadLetters, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (RecordLetter, error) {
		var l RecordLetter
		err := r.Scan(&l.ID, &l.RecordUpdatedAt, &l.Error, &l.ErrorClass, &l.Status, &l.LastFailedAt, &l.TraceID)
		return l, err
	})
	if err != nil {
		return t, fmt.Errorf("dead letters of %s/%s/%s: %w", customer, resource, id, err)
	}
	rows, err = db.Query(ctx, `SELECT found_at, class, cause, detail, repaired FROM vomosync.recon_gaps
		WHERE customer_id = $1 AND resource = $2 AND record_id = $3 ORDER BY found_at DESC LIMIT 50`, customer, resource, id)
	if err != nil {
		return t, fmt.Errorf("gaps of %s/%s/%s: %w", customer, resource, id, err)
	}
	t.Gaps, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (RecordGap, error) {
		var g RecordGap
		err := r.Scan(&g.FoundAt, &g.Class, &g.Cause, &g.Detail, &g.Repaired)
		return g, err
	})
	if err != nil {
		return t, fmt.Errorf("gaps of %s/%s/%s: %w", customer, resource, id, err)
	}
	return t, nil
}

// Run is a reconciliation run as listed next to its gaps.
type Run struct {
	ID         string         `json:"id"`
	CustomerID string         `json:"customer_id"`
	Resource   string         `json:"resource"`
	Kind       string         `json:"kind"`
	Mode       string         `json:"mode"`
	Expected   int            `json:"expected"`
	Gaps       map[string]int `json:"gaps"`
	GapRate    float64        `json:"gap_rate"`
	Repaired   int            `json:"repaired"`
	Held       bool           `json:"held"`
	Reason     string         `json:"reason,omitempty"`
	StartedAt  time.Time      `json:"started_at"`
	Outcome    string         `json:"outcome"`
	TraceID    string         `json:"trace_id"`
}

// Gap is one gap reconciliation found.
type Gap struct {
	RunID           string     `json:"run_id"`
	CustomerID      string     `json:"customer_id"`
	Resource        string     `json:"resource"`
	RecordID        string     `json:"record_id"`
	Class           string     `json:"class"`
	Cause           string     `json:"cause"`
	SourceUpdatedAt *time.Time `json:"source_updated_at"`
	DestUpdatedAt   *time.Time `json:"dest_updated_at"`
	Detail          string     `json:"detail,omitempty"`
	Repaired        bool       `json:"repaired"`
	FoundAt         time.Time  `json:"found_at"`
}

// Day is a day's reconciliation: its runs and the gaps they found.
type Day struct {
	Day  string `json:"day"`
	Runs []Run  `json:"runs"`
	Gaps []Gap  `json:"gaps"`
	// ByClassCause counts gaps per "class/cause".
	ByClassCause map[string]int `json:"by_class_cause"`
}

// GapsOfDay returns the runs started and the gaps found on day (UTC), of one
// customer or ("" ) of all. At most limit gaps are listed; the counts cover all.
func GapsOfDay(ctx context.Context, db DBTX, day time.Time, customer string, limit int) (Day, error) {
	from := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC)
	to := from.Add(24 * time.Hour)
	d := Day{Day: from.Format(time.DateOnly), ByClassCause: map[string]int{}}
	if limit <= 0 {
		limit = 500
	}
	rows, err := db.Query(ctx, `SELECT id::text, customer_id, resource, kind, mode, expected, gaps, gap_rate, repaired, held,
		coalesce(nullif(held_reason, ''), nullif(untrusted_reason, ''), error), started_at, outcome, trace_id
		FROM vomosync.recon_runs WHERE ($1 = '' OR customer_id = $1) AND started_at >= $2 AND started_at < $3
		ORDER BY started_at DESC LIMIT 1000`, customer, from, to)
	if err != nil {
		return d, fmt.Errorf("recon runs of %s: %w", d.Day, err)
	}
	d.Runs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Run, error) {
		var x Run
		var gaps []byte
		err := r.Scan(&x.ID, &x.CustomerID, &x.Resource, &x.Kind, &x.Mode, &x.Expected, &gaps, &x.GapRate, &x.Repaired,
			&x.Held, &x.Reason, &x.StartedAt, &x.Outcome, &x.TraceID)
		if err == nil {
			_ = json.Unmarshal(gaps, &x.Gaps)
		}
		return x, err
	})
	if err != nil {
		return d, fmt.Errorf("recon runs of %s: %w", d.Day, err)
	}
	rows, err = db.Query(ctx, `SELECT class || '/' || cause, count(*) FROM vomosync.recon_gaps
		WHERE ($1 = '' OR customer_id = $1) AND found_at >= $2 AND found_at < $3 GROUP BY 1`, customer, from, to)
	if err != nil {
		return d, fmt.Errorf("gaps of %s: %w", d.Day, err)
	}
	var k string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&k, &n}, func() error { d.ByClassCause[k] = n; return nil }); err != nil {
		return d, fmt.Errorf("gaps of %s: %w", d.Day, err)
	}
	rows, err = db.Query(ctx, `SELECT run_id::text, customer_id, resource, record_id, class, cause, source_updated_at,
		dest_updated_at, detail, repaired, found_at
		FROM vomosync.recon_gaps WHERE ($1 = '' OR customer_id = $1) AND found_at >= $2 AND found_at < $3
		ORDER BY found_at DESC, id LIMIT $4`, customer, from, to, limit)
	if err != nil {
		return d, fmt.Errorf("gaps of %s: %w", d.Day, err)
	}
	d.Gaps, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Gap, error) {
		var g Gap
		err := r.Scan(&g.RunID, &g.CustomerID, &g.Resource, &g.RecordID, &g.Class, &g.Cause, &g.SourceUpdatedAt,
			&g.DestUpdatedAt, &g.Detail, &g.Repaired, &g.FoundAt)
		return g, err
	})
	if err != nil {
		return d, fmt.Errorf("gaps of %s: %w", d.Day, err)
	}
	return d, nil
}

// APIError is a group of failed VOMO calls.
type APIError struct {
	CustomerID string    `json:"customer_id"`
	Endpoint   string    `json:"endpoint"`
	Status     int       `json:"status"`
	Count      int       `json:"count"`
	Last       time.Time `json:"last_at"`
	LastError  string    `json:"last_error"`
	TraceID    string    `json:"last_trace_id"`
}

// APIErrors groups the failed VOMO calls since a time by customer,
// endpoint and status, most frequent first.
func APIErrors(ctx context.Context, db DBTX, since time.Time, customer string, limit int) ([]APIError, error) {
	if limit <= 0 {
		limit = 200
	}
	rows, err := db.Query(ctx, `SELECT DISTINCT ON (customer_id, endpoint, status) customer_id, endpoint, status,
		count(*) OVER w, at, error, trace_id
		FROM vomosync.api_errors WHERE ($1 = '' OR customer_id = $1) AND at >= $2
		WINDOW w AS (PARTITION BY customer_id, endpoint, status)
		ORDER BY customer_id, endpoint, status, at DESC`, customer, since)
	if err != nil {
		return nil, fmt.Errorf("api errors: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIError, error) {
		var e APIError
		err := r.Scan(&e.CustomerID, &e.Endpoint, &e.Status, &e.Count, &e.Last, &e.LastError, &e.TraceID)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("api errors: %w", err)
	}
	sortAPIErrors(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Recent is a record processed recently.
type Recent struct {
	ProcessedAt time.Time `json:"processed_at"`
	Resource    string    `json:"resource"`
	RecordID    string    `json:"record_id"`
	Outcome     string    `json:"outcome"`
}

// RecentRecords lists records processed by the customer's latest poll
// cycles of the last day that published anything. It finds them by the
// cycles' trace ids (audit_log_by_trace), so it stays an index lookup
// whatever the size of the audit log.
func RecentRecords(ctx context.Context, db DBTX, customer string, limit int) ([]Recent, error) {
	rows, err := db.Query(ctx, `SELECT a.processed_at, a.resource, a.record_id, a.outcome
		FROM (SELECT trace_id FROM vomosync.poll_cycles
		      WHERE customer_id = $1 AND records_published > 0 AND started_at > now() - interval '1 day'
		      ORDER BY started_at DESC LIMIT 3) c
		CROSS JOIN LATERAL (SELECT processed_at, resource, record_id, outcome FROM vomosync.audit_log a
		      WHERE a.trace_id = c.trace_id AND a.customer_id = $1 ORDER BY processed_at DESC LIMIT $2) a
		ORDER BY a.processed_at DESC, a.record_id LIMIT $2`, customer, limit)
	if err != nil {
		return nil, fmt.Errorf("recent records of %s: %w", customer, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Recent, error) {
		var x Recent
		err := r.Scan(&x.ProcessedAt, &x.Resource, &x.RecordID, &x.Outcome)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("recent records of %s: %w", customer, err)
	}
	return out, nil
}

// Letter is a dead letter as listed (without its payload).
type Letter struct {
	ID             int64     `json:"id"`
	CustomerID     string    `json:"customer_id"`
	Resource       string    `json:"resource"`
	RecordID       string    `json:"record_id"`
	Error          string    `json:"error"`
	ErrorClass     string    `json:"error_class"`
	Attempts       int       `json:"attempts"`
	TraceID        string    `json:"trace_id"`
	LastFailedAt   time.Time `json:"last_failed_at"`
	Status         string    `json:"status"`
	ResolvedBy     string    `json:"resolved_by,omitempty"`
	ResolvedReason string    `json:"resolved_reason,omitempty"`
}

// LetterQuery selects dead letters, newest first; Before pages back.
type LetterQuery struct {
	Customer string
	Status   string // open (default) | retried | redriven | discarded | all
	Before   time.Time
	Limit    int // default 50
}

// DeadLetters lists a customer's dead letters (index dead_letters_open).
func DeadLetters(ctx context.Context, db DBTX, q LetterQuery) ([]Letter, error) {
	if q.Status == "" {
		q.Status = "open"
	}
	if q.Limit <= 0 {
		q.Limit = 50
	}
	if q.Before.IsZero() {
		q.Before = time.Now().Add(time.Hour)
	}
	rows, err := db.Query(ctx, `SELECT id, customer_id, resource, record_id, error, error_class, attempts, trace_id,
		last_failed_at, status, resolved_by, resolved_reason
		FROM vomosync.dead_letters WHERE customer_id = $1 AND ($2 = 'all' OR status = $2) AND last_failed_at < $3
		ORDER BY last_failed_at DESC, id DESC LIMIT $4`, q.Customer, q.Status, q.Before, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("dead letters of %s: %w", q.Customer, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Letter, error) {
		var l Letter
		err := r.Scan(&l.ID, &l.CustomerID, &l.Resource, &l.RecordID, &l.Error, &l.ErrorClass, &l.Attempts, &l.TraceID,
			&l.LastFailedAt, &l.Status, &l.ResolvedBy, &l.ResolvedReason)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("dead letters of %s: %w", q.Customer, err)
	}
	return out, nil
}
