package ops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pair is the health of one customer's resource (a pair_health row).
type Pair struct {
	CustomerID     string     `json:"customer_id"`
	CustomerName   string     `json:"customer_name"`
	CustomerStatus string     `json:"customer_status"`
	StatusReason   string     `json:"status_reason,omitempty"`
	Resource       string     `json:"resource"`
	Cadence        Dur        `json:"cadence"`
	Paused         bool       `json:"paused"`
	PausedReason   string     `json:"paused_reason,omitempty"`
	LastStarted    *time.Time `json:"last_started_at"`
	LastFinished   *time.Time `json:"last_finished_at"`
	LastOutcome    string     `json:"last_outcome"`
	NextRun        *time.Time `json:"next_run_at"`
	Checkpoint     *time.Time `json:"checkpoint"` // nil: lost
	CheckpointAt   *time.Time `json:"checkpoint_written_at"`
	DLQOpen        int        `json:"dlq_open"`
	ReconKind      string     `json:"recon_kind,omitempty"`
	ReconOutcome   string     `json:"recon_outcome,omitempty"`
	ReconGapRate   float64    `json:"recon_gap_rate"`
	ReconStarted   *time.Time `json:"recon_started_at"`
	ReconReason    string     `json:"recon_reason,omitempty"`
	GapThreshold   float64    `json:"gap_threshold"`
	Silent         bool       `json:"silent"`
	CheckpointLost bool       `json:"checkpoint_lost"`
	PollFailed     bool       `json:"poll_failed"`
	DLQDeep        bool       `json:"dlq_deep"`
	ReconBad       bool       `json:"recon_bad"`
	Anomalous      bool       `json:"anomalous"`
}

// Dur is a duration that prints as "30m0s" in JSON.
type Dur time.Duration

// MarshalText writes the Go duration string.
func (d Dur) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the time.Duration.
func (d Dur) D() time.Duration { return time.Duration(d) }

// Lag is how far the checkpoint is behind now (0 when lost).
func (p Pair) Lag(now time.Time) time.Duration {
	if p.Checkpoint == nil {
		return 0
	}
	return now.Sub(*p.Checkpoint)
}

// Epoch reports a checkpoint that has not left epoch (a backfill runs).
func (p Pair) Epoch() bool { return p.Checkpoint != nil && p.Checkpoint.Unix() <= 0 }

// Problems says in words what is wrong with the pair (empty when healthy).
// The flags come from the pair_health view; only the wording is here.
func (p Pair) Problems(now time.Time) []string {
	var out []string
	r := p.Resource
	if p.Paused {
		out = append(out, fmt.Sprintf("%s: polling paused: %s", r, orUnknown(p.PausedReason)))
	}
	if p.CheckpointLost {
		out = append(out, r+": checkpoint lost (restore or set it: syncctl checkpoint restore|set)")
	}
	if p.PollFailed {
		out = append(out, r+": last poll cycle failed")
	}
	if p.Silent {
		if p.LastFinished == nil {
			out = append(out, fmt.Sprintf("%s: no poll cycle has finished yet (cadence %s)", r, p.Cadence.D()))
		} else {
			out = append(out, fmt.Sprintf("%s: no poll cycle finished for %s (cadence %s)", r, Human(now.Sub(*p.LastFinished)), p.Cadence.D()))
		}
	}
	if p.DLQDeep {
		out = append(out, fmt.Sprintf("%s: %d dead letters open", r, p.DLQOpen))
	}
	if p.ReconBad {
		switch p.ReconOutcome {
		case "held", "untrusted", "failed":
			out = append(out, fmt.Sprintf("%s: last reconciliation %s: %s", r, p.ReconOutcome, orUnknown(p.ReconReason)))
		default:
			out = append(out, fmt.Sprintf("%s: reconciliation found %.1f%% gaps (threshold %.1f%%)", r, p.ReconGapRate*100, p.GapThreshold*100))
		}
	}
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

// Human rounds d for people: "3m", "2h5m", "4d3h".
func Human(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

const pairColumns = `customer_id, customer_name, customer_status, status_reason, resource, coalesce(cadence, '0'),
	paused, paused_reason, last_started_at, last_finished_at, last_outcome, next_run_at, position, checkpoint_written_at,
	dlq_open, coalesce(recon_kind, ''), coalesce(recon_outcome, ''), coalesce(recon_gap_rate, 0), recon_started_at,
	coalesce(recon_reason, ''), gap_threshold, silent, checkpoint_lost, poll_failed, dlq_deep, recon_bad, anomalous`

func scanPair(row pgx.CollectableRow) (Pair, error) {
	var p Pair
	var cadence time.Duration
	err := row.Scan(&p.CustomerID, &p.CustomerName, &p.CustomerStatus, &p.StatusReason, &p.Resource, &cadence,
		&p.Paused, &p.PausedReason, &p.LastStarted, &p.LastFinished, &p.LastOutcome, &p.NextRun, &p.Checkpoint, &p.CheckpointAt,
		&p.DLQOpen, &p.ReconKind, &p.ReconOutcome, &p.ReconGapRate, &p.ReconStarted,
		&p.ReconReason, &p.GapThreshold, &p.Silent, &p.CheckpointLost, &p.PollFailed, &p.DLQDeep, &p.ReconBad, &p.Anomalous)
	p.Cadence = Dur(cadence)
	return p, err
}

// Pairs returns the pair health of the given customers, ordered.
func Pairs(ctx context.Context, db DBTX, customers []string) ([]Pair, error) {
	rows, err := db.Query(ctx, `SELECT `+pairColumns+` FROM vomosync.pair_health
		WHERE customer_id = ANY($1) ORDER BY customer_id, resource`, customers)
	if err != nil {
		return nil, fmt.Errorf("pair health: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanPair)
	if err != nil {
		return nil, fmt.Errorf("pair health: %w", err)
	}
	return out, nil
}

// Customer is one customer's health.
type Customer struct {
	ID        string    `json:"customer_id"`
	Name      string    `json:"name"`
	Status    string    `json:"status"`
	Reason    string    `json:"status_reason,omitempty"`
	Pairs     []Pair    `json:"pairs"`
	Problems  []string  `json:"problems"`
	APIErrors int       `json:"api_errors_last_hour"`
	Checked   time.Time `json:"checked_at"`
}

// Healthy reports a customer with nothing to look at.
func (c Customer) Healthy() bool { return len(c.Problems) == 0 }

// customerProblems words the customer-level state, then each pair's.
func customerProblems(status, reason string, pairs []Pair, now time.Time) []string {
	var out []string
	switch status {
	case "paused":
		out = append(out, "customer paused: "+orUnknown(reason))
	case "disabled":
		out = append(out, "customer disabled: "+orUnknown(reason))
	}
	for _, p := range pairs {
		out = append(out, p.Problems(now)...)
	}
	return out
}

// CustomerHealth returns one customer's health: every pair, and its API
// errors of the last hour. Unknown customers wrap ErrNotFound.
func CustomerHealth(ctx context.Context, db DBTX, id string) (Customer, error) {
	c := Customer{ID: id, Checked: time.Now()}
	err := db.QueryRow(ctx, `SELECT name, status, status_reason,
		(SELECT count(*) FROM vomosync.api_errors e WHERE e.customer_id = c.id AND e.at > now() - interval '1 hour')
		FROM vomosync.customers c WHERE id = $1`, id).Scan(&c.Name, &c.Status, &c.Reason, &c.APIErrors)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("customer %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("customer %s: %w", id, err)
	}
	if c.Pairs, err = Pairs(ctx, db, []string{id}); err != nil {
		return c, err
	}
	c.Problems = customerProblems(c.Status, c.Reason, c.Pairs, c.Checked)
	return c, nil
}

// Summary is the fleet at a glance and one page of customers.
type Summary struct {
	Customers int        `json:"customers"`
	Healthy   int        `json:"healthy"`
	Anomalous int        `json:"anomalous"`
	Disabled  int        `json:"disabled"`
	Page      []Customer `json:"page"`
	// Next is the cursor of the following page ("" on the last one).
	Next string `json:"next,omitempty"`
	// AsOf is when the fleet's states were evaluated.
	AsOf time.Time `json:"as_of"`
}

// SummaryQuery selects the page of the summary.
type SummaryQuery struct {
	// All lists every customer; otherwise only anomalous ones (not disabled).
	All bool
	// Search keeps customers whose id starts with it or whose name contains it.
	Search string
	// After is the cursor: the last customer id of the previous page.
	After string
	Limit int // default 50, at most 500
}

// Standing is one customer's place in the fleet: anomalous or not.
type Standing struct {
	ID        string
	Name      string
	Status    string
	Anomalous bool
}

// FleetStandings evaluates pair_health for every customer, in one pass.
func FleetStandings(ctx context.Context, db DBTX) ([]Standing, error) {
	rows, err := db.Query(ctx, `SELECT customer_id, min(customer_name), min(customer_status), bool_or(anomalous)
		FROM vomosync.pair_health GROUP BY customer_id ORDER BY customer_id`)
	if err != nil {
		return nil, fmt.Errorf("fleet states: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Standing, error) {
		var s Standing
		return s, r.Scan(&s.ID, &s.Name, &s.Status, &s.Anomalous)
	})
	if err != nil {
		return nil, fmt.Errorf("fleet states: %w", err)
	}
	return out, nil
}

// Fleet answers summary pages from FleetStandings, evaluated at most once per
// TTL (the one query that reads every pair), and the page's pairs by index.
type Fleet struct {
	DB  DBTX
	TTL time.Duration // 0: evaluate on every call

	mu     sync.Mutex
	at     time.Time
	states []Standing
}

func (f *Fleet) current(ctx context.Context) ([]Standing, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.states != nil && time.Since(f.at) < f.TTL {
		return f.states, f.at, nil
	}
	st, err := FleetStandings(ctx, f.DB)
	if err != nil {
		return nil, time.Time{}, err
	}
	f.states, f.at = st, time.Now()
	return st, f.at, nil
}

// FleetSummary is Fleet.Summary without a cache.
func FleetSummary(ctx context.Context, db DBTX, q SummaryQuery) (Summary, error) {
	return (&Fleet{DB: db}).Summary(ctx, q)
}

// Summary counts healthy, anomalous and disabled customers and returns one
// page of customers (anomalous ones by default) with their problems in
// words. Disabled customers are deliberate: counted apart, never listed as
// anomalous.
func (f *Fleet) Summary(ctx context.Context, q SummaryQuery) (Summary, error) {
	var s Summary
	if q.Limit <= 0 {
		q.Limit = 50
	}
	q.Limit = min(q.Limit, 500)
	states, at, err := f.current(ctx)
	if err != nil {
		return s, err
	}
	s.AsOf = at
	search := strings.ToLower(q.Search)
	var ids []string
	for _, c := range states {
		s.Customers++
		switch {
		case c.Status == "disabled":
			s.Disabled++
		case c.Anomalous:
			s.Anomalous++
		default:
			s.Healthy++
		}
		if !q.All && (c.Status == "disabled" || !c.Anomalous) {
			continue
		}
		if search != "" && !strings.HasPrefix(c.ID, search) && !strings.Contains(strings.ToLower(c.Name), search) {
			continue
		}
		if c.ID > q.After && len(ids) <= q.Limit {
			ids = append(ids, c.ID)
		}
	}
	if len(ids) > q.Limit {
		ids = ids[:q.Limit]
		s.Next = ids[len(ids)-1]
	}
	pairs, err := Pairs(ctx, f.DB, ids)
	if err != nil {
		return s, err
	}
	now := time.Now()
	for _, id := range ids {
		s.Page = append(s.Page, Customer{ID: id, Checked: now})
	}
	byID := map[string]*Customer{}
	for i := range s.Page {
		byID[s.Page[i].ID] = &s.Page[i]
	}
	for _, p := range pairs {
		c := byID[p.CustomerID]
		c.Name, c.Status, c.Reason = p.CustomerName, p.CustomerStatus, p.StatusReason
		c.Pairs = append(c.Pairs, p)
	}
	for i := range s.Page {
		c := &s.Page[i]
		c.Problems = customerProblems(c.Status, c.Reason, c.Pairs, now)
	}
	return s, nil
}
