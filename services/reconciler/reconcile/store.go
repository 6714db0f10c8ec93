package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DBTX is what the queries need of a pool or a transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// insertRun records the run as running. started_at is the database's clock,
// like finished_at: runs of replicas whose clocks disagree still order
// correctly (the hold rules read the previous run by started_at).
func insertRun(ctx context.Context, db DBTX, r *RunResult) error {
	err := db.QueryRow(ctx, `INSERT INTO vomosync.recon_runs
		(id, customer_id, resource, kind, mode, trace_id, started_at, outcome, forced, actor)
		VALUES ($1, $2, $3, $4, $5, $6, now(), 'running', $7, $8) RETURNING started_at`,
		r.ID, r.CustomerID, r.Resource, r.Kind, r.Mode, r.TraceID, r.Forced, r.Actor).Scan(&r.Started)
	if err != nil {
		return fmt.Errorf("insert recon run: %w", err)
	}
	return nil
}

// AbandonRuns records the runs of actor still marked running as
// interrupted: the process that ran them died (a kill, a crash) before it
// could say so. Call it at start, before actor runs anything; the actor is
// unique among live replicas. It returns how many runs it closed.
func AbandonRuns(ctx context.Context, db DBTX, actor string) (int64, error) {
	tag, err := db.Exec(ctx, `UPDATE vomosync.recon_runs SET outcome = 'interrupted', finished_at = now(),
		error = 'the reconciler stopped during the run (killed or crashed); gaps marked repaired were republished, the rest are left to the next run'
		WHERE actor = $1 AND outcome = 'running'`, actor)
	if err != nil {
		return 0, fmt.Errorf("close abandoned runs: %w", err)
	}
	return tag.RowsAffected(), nil
}

func finishRun(ctx context.Context, db DBTX, r *RunResult) error {
	gaps, _ := json.Marshal(r.Gaps)
	causes, _ := json.Marshal(r.Causes)
	_, err := db.Exec(ctx, `UPDATE vomosync.recon_runs SET
		window_from = $2, window_to = $3, horizon = $4, expected = $5, source_records = $6, pending = $7,
		gaps = $8, causes = $9, gap_rate = $10, repaired = $11, redriven = $12, held = $13, held_reason = $14,
		trusted = $15, untrusted_reason = $16, drift_checked = $17, requests = $18,
		finished_at = now(), duration_ms = $19, outcome = $20, error = $21, note = $22
		WHERE id = $1`,
		r.ID, nullTime(r.WindowFrom), nullTime(r.WindowTo), nullTime(r.Horizon), r.Expected, r.SourceRecords, r.Pending,
		gaps, causes, r.GapRate, r.Repaired, r.Redriven, r.Held, r.HeldReason,
		r.Trusted, r.Untrusted, r.DriftChecked, r.Requests,
		r.Duration.Milliseconds(), r.Outcome, r.Error, r.Note)
	if err != nil {
		return fmt.Errorf("record recon run: %w", err)
	}
	return nil
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// RunFilter selects runs for ListRuns; zero fields do not filter.
type RunFilter struct {
	Customer string
	Resource string
	Since    time.Time
	Limit    int // default 50
}

// ListRuns returns recorded runs, newest first ("what did reconciliation
// catch yesterday": ListRuns with Since = 24h ago).
func ListRuns(ctx context.Context, db DBTX, f RunFilter) ([]RunResult, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	rows, err := db.Query(ctx, `SELECT id, trace_id, customer_id, resource, kind, mode, actor,
		coalesce(window_from, 'epoch'), coalesce(window_to, 'epoch'), coalesce(horizon, 'epoch'),
		expected, source_records, pending, gaps, causes, gap_rate, repaired, redriven, held, held_reason, forced,
		trusted, untrusted_reason, drift_checked, requests, started_at, coalesce(duration_ms, 0), outcome, error, note
		FROM vomosync.recon_runs
		WHERE ($1 = '' OR customer_id = $1) AND ($2 = '' OR resource = $2) AND started_at >= $3
		ORDER BY started_at DESC LIMIT $4`, f.Customer, f.Resource, f.Since, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list recon runs: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (RunResult, error) {
		var r RunResult
		var gaps, causes []byte
		var ms int64
		err := row.Scan(&r.ID, &r.TraceID, &r.CustomerID, &r.Resource, &r.Kind, &r.Mode, &r.Actor,
			&r.WindowFrom, &r.WindowTo, &r.Horizon, &r.Expected, &r.SourceRecords, &r.Pending, &gaps, &causes,
			&r.GapRate, &r.Repaired, &r.Redriven, &r.Held, &r.HeldReason, &r.Forced, &r.Trusted, &r.Untrusted,
			&r.DriftChecked, &r.Requests, &r.Started, &ms, &r.Outcome, &r.Error, &r.Note)
		if err != nil {
			return r, fmt.Errorf("list recon runs: %w", err)
		}
		r.Duration = time.Duration(ms) * time.Millisecond
		for _, t := range []*time.Time{&r.WindowFrom, &r.WindowTo, &r.Horizon} {
			if t.Equal(time.Unix(0, 0)) {
				*t = time.Time{}
			}
		}
		_ = json.Unmarshal(gaps, &r.Gaps)
		_ = json.Unmarshal(causes, &r.Causes)
		return r, nil
	})
}

// Gap is one recorded gap.
type Gap struct {
	ID              int64
	RunID           string
	CustomerID      string
	Resource        string
	RecordID        string
	Class           string
	Cause           string
	SourceUpdatedAt *time.Time
	DestUpdatedAt   *time.Time
	Detail          string
	Repaired        bool
	FoundAt         time.Time
}

// GapFilter selects gaps for ListGaps; zero fields do not filter.
type GapFilter struct {
	RunID    string
	Customer string
	Resource string
	RecordID string
	Class    string
	Since    time.Time
	Limit    int // default 100
}

// ListGaps returns recorded gaps, newest first.
func ListGaps(ctx context.Context, db DBTX, f GapFilter) ([]Gap, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := db.Query(ctx, `SELECT id, run_id, customer_id, resource, record_id, class, cause,
		source_updated_at, dest_updated_at, detail, repaired, found_at
		FROM vomosync.recon_gaps
		WHERE ($1 = '' OR run_id = nullif($1, '')::uuid) AND ($2 = '' OR customer_id = $2) AND ($3 = '' OR resource = $3)
		  AND ($4 = '' OR record_id = $4) AND ($5 = '' OR class = $5) AND found_at >= $6
		ORDER BY found_at DESC, id LIMIT $7`, f.RunID, f.Customer, f.Resource, f.RecordID, f.Class, f.Since, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list recon gaps: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Gap, error) {
		var g Gap
		err := row.Scan(&g.ID, &g.RunID, &g.CustomerID, &g.Resource, &g.RecordID, &g.Class, &g.Cause,
			&g.SourceUpdatedAt, &g.DestUpdatedAt, &g.Detail, &g.Repaired, &g.FoundAt)
		if err != nil {
			return g, fmt.Errorf("list recon gaps: %w", err)
		}
		return g, nil
	})
}
