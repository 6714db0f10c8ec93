package poll

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// insertCycle records the cycle as running. started_at is the database's
// clock, like finished_at, so a poller with a skewed clock writes rows
// that order and measure correctly.
func insertCycle(ctx context.Context, db execer, r *Result) error {
	err := db.QueryRow(ctx, `INSERT INTO vomosync.poll_cycles
		(id, customer_id, resource, origin, trace_id, window_from, checkpoint_before, started_at, outcome)
		VALUES ($1, $2, $3, $4, $5, $6, $7, now(), 'running') RETURNING started_at`,
		r.ID, r.CustomerID, r.Resource, r.Origin, r.TraceID, nullTime(r.WindowFrom), r.CheckpointBefore).Scan(&r.Started)
	if err != nil {
		return fmt.Errorf("insert poll cycle: %w", err)
	}
	return nil
}

func updateCycle(ctx context.Context, tx pgx.Tx, r *Result) error {
	statuses := map[string]int{}
	for code, n := range r.Statuses {
		statuses[fmt.Sprint(code)] = n
	}
	st, _ := json.Marshal(statuses)
	note := r.Note
	if r.Deferred > 0 {
		note = fmt.Sprintf("%s%d records newer than the window left for the next cycle", sep(note), r.Deferred)
	}
	tag, err := tx.Exec(ctx, `UPDATE vomosync.poll_cycles SET
		origin = $2, window_from = $3, window_to = $4, checkpoint_before = $5, checkpoint_after = $6,
		pages = $7, requests = $8, records_seen = $9, records_published = $10, statuses = $11,
		finished_at = now(), duration_ms = $12, outcome = $13, error = $14, note = $15
		WHERE id = $1`,
		r.ID, r.Origin, nullTime(r.WindowFrom), nullTime(r.WindowTo), r.CheckpointBefore, r.CheckpointAfter,
		r.Pages, r.Requests, r.RecordsSeen, r.RecordsPublished, st,
		r.Duration.Milliseconds(), r.Outcome, r.Error, note)
	if err != nil {
		return fmt.Errorf("update poll cycle: %w", err)
	}
	if tag.RowsAffected() == 0 {
		// The cycle failed before its row was written (e.g. held checkpoint).
		_, err = tx.Exec(ctx, `INSERT INTO vomosync.poll_cycles
			(id, customer_id, resource, origin, trace_id, window_from, window_to, checkpoint_before, checkpoint_after,
			 pages, requests, records_seen, records_published, statuses, started_at, finished_at, duration_ms, outcome, error, note)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, now() - $15 * interval '1 millisecond', now(), $16, $17, $18, $19)`,
			r.ID, r.CustomerID, r.Resource, r.Origin, r.TraceID, nullTime(r.WindowFrom), nullTime(r.WindowTo),
			r.CheckpointBefore, r.CheckpointAfter, r.Pages, r.Requests, r.RecordsSeen, r.RecordsPublished, st,
			r.Duration.Milliseconds(), r.Duration.Milliseconds(), r.Outcome, r.Error, note)
		if err != nil {
			return fmt.Errorf("insert poll cycle: %w", err)
		}
	}
	return nil
}

func sep(s string) string {
	if s == "" {
		return ""
	}
	return s + "; "
}

func nullTime(t interface{ IsZero() bool }) any {
	if t.IsZero() {
		return nil
	}
	return t
}
