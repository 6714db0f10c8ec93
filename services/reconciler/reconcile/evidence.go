package reconcile

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/vomosync/vomosync/pkg/customer"
)

// classify turns the candidate gaps into recon_gaps rows, each with the
// cause the evidence points to, in one statement (no per-gap round trips):
//   - an open dead letter of the record: published, then dead-lettered;
//   - the same version at the source, different fields: silent source change;
//   - a destination row that differs from sync_state: destination differs;
//   - an applied audit row for this version or newer: processed, and the
//     destination no longer holds it;
//   - no successful poll cycle window covered its updated_at: never published;
//   - otherwise a successful walk of its window did not see it: a late write
//     behind the checkpoint.
//
// Duplicates (a record listed twice by the walk) collapse to the newest version.
const classify = `
INSERT INTO vomosync.recon_gaps (run_id, customer_id, resource, record_id, class, cause, source_updated_at, dest_updated_at, detail)
SELECT $1, $2, $3, g.record_id, g.class,
	CASE
		WHEN g.class = 'untrusted_walk' THEN 'walk_problem'
		WHEN g.class = 'deleted' THEN 'source_deleted'
		WHEN g.class = 'destination_drift' THEN 'destination_differs'
		WHEN dl.id IS NOT NULL THEN 'dead_lettered'
		WHEN g.class = 'field_drift' THEN 'silent_source_change'
		WHEN a.processed_at IS NOT NULL THEN 'destination_differs'
		WHEN pc.id IS NULL THEN 'never_published'
		ELSE 'late_write'
	END,
	g.source_updated_at, g.dest_updated_at,
	concat_ws('; ', nullif(g.detail, ''),
		CASE
			WHEN g.class IN ('untrusted_walk', 'destination_drift') THEN NULL
			WHEN g.class = 'deleted' THEN format('not listed by a complete, trusted walk started at %s (source clock)', $5::timestamptz)
			WHEN dl.id IS NOT NULL THEN format('dead letter %s (%s) failed %s times, last at %s: %s',
				dl.id, dl.error_class, dl.attempts, dl.last_failed_at, dl.error)
			WHEN g.class = 'field_drift' THEN NULL
			WHEN a.processed_at IS NOT NULL THEN format('applied at %s (trace %s, origin %s) and no longer in the destination',
				a.processed_at, a.trace_id, a.origin)
			WHEN pc.id IS NULL THEN format('no successful poll cycle window covered updated_at %s (checkpoint %s)', g.source_updated_at, $4::timestamptz)
			ELSE format('poll cycle %s (trace %s) walked %s..%s successfully without it: committed behind the checkpoint after that walk',
				pc.id, pc.trace_id, pc.window_from, pc.window_to)
		END)
FROM (
	SELECT DISTINCT ON (record_id, class) * FROM pg_temp.recon_gap
	ORDER BY record_id, class, source_updated_at DESC NULLS LAST
) g
LEFT JOIN LATERAL (
	SELECT id, error_class, attempts, last_failed_at, error FROM vomosync.dead_letters
	WHERE customer_id = $2 AND resource = $3 AND record_id = g.record_id AND status = 'open'
	ORDER BY last_failed_at DESC LIMIT 1
) dl ON g.class IN ('missing', 'stale', 'field_drift')
LEFT JOIN LATERAL (
	SELECT processed_at, trace_id, origin FROM vomosync.audit_log
	WHERE customer_id = $2 AND resource = $3 AND record_id = g.record_id
	  AND outcome = 'applied' AND record_updated_at >= g.source_updated_at
	ORDER BY processed_at DESC LIMIT 1
) a ON g.class IN ('missing', 'stale')
LEFT JOIN LATERAL (
	SELECT id, trace_id, window_from, window_to FROM vomosync.poll_cycles
	WHERE customer_id = $2 AND resource = $3 AND outcome = 'success'
	  AND window_to >= g.source_updated_at AND window_from <= g.source_updated_at
	ORDER BY window_to LIMIT 1
) pc ON g.class IN ('missing', 'stale')`

// record classifies and stores the run's gaps and counts them.
func (s *session) record(ctx context.Context) error {
	if _, err := s.conn.Exec(ctx, classify, s.res.ID, s.customer, s.resource, s.res.Horizon, s.res.WindowTo); err != nil {
		return fmt.Errorf("classify gaps: %w", err)
	}
	rows, err := s.conn.Query(ctx, `SELECT class, cause, count(*) FROM vomosync.recon_gaps WHERE run_id = $1 GROUP BY 1, 2`, s.res.ID)
	if err != nil {
		return fmt.Errorf("count gaps: %w", err)
	}
	var class, cause string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&class, &cause, &n}, func() error {
		s.res.Gaps[class] += n
		s.res.Causes[cause] += n
		return nil
	})
	if err != nil {
		return fmt.Errorf("count gaps: %w", err)
	}
	return nil
}

// decideHold applies the graduated response: repair automatically while the
// gap rate stays under the customer's threshold and gaps do not persist;
// otherwise hold the repair for an operator (Request.Force releases it).
// Repairing a sustained gap silently would hide the bug that causes it.
func (r *Reconciler) decideHold(ctx context.Context, req Request, eff customer.Settings, res *RunResult) error {
	if req.Force {
		return nil
	}
	threshold := eff.Reconcile.GapThreshold
	if res.GapRate > threshold {
		res.Held = true
		res.HeldReason = fmt.Sprintf("gap rate %.3f%% (%d of %d) is over the %.3f%% threshold: repairing would hide a systematic miss; look, then `syncctl reconcile --force`",
			100*res.GapRate, res.Actionable(), res.Expected, 100*threshold)
		return nil
	}
	// Gaps a previous run repaired that came back at the same version: the
	// repair does not stick (the processor rejects it, something undoes it).
	var prevID string
	var back int
	err := r.DB.QueryRow(ctx, `
		WITH prev AS (
			SELECT id FROM vomosync.recon_runs
			WHERE customer_id = $2 AND resource = $3 AND id <> $1 AND repaired > 0 AND finished_at IS NOT NULL
			ORDER BY started_at DESC LIMIT 1)
		SELECT coalesce((SELECT id::text FROM prev), ''), count(*)
		FROM vomosync.recon_gaps g JOIN vomosync.recon_gaps p
		  ON p.run_id = (SELECT id FROM prev) AND p.record_id = g.record_id AND p.class = g.class AND p.repaired
		 AND p.source_updated_at IS NOT DISTINCT FROM g.source_updated_at
		WHERE g.run_id = $1 AND g.class <> 'untrusted_walk'`, res.ID, res.CustomerID, res.Resource).Scan(&prevID, &back)
	if err != nil {
		return fmt.Errorf("compare with the previous repair: %w", err)
	}
	if back > 0 {
		res.Held = true
		res.HeldReason = fmt.Sprintf("%d gaps repaired by run %s are back at the same version: the repair does not stick; investigate before forcing", back, prevID)
		return nil
	}
	// Gaps in every one of the last PersistRuns runs: a steady leak.
	n := r.persistRuns()
	if n < 2 {
		return nil
	}
	rows, err := r.DB.Query(ctx, `SELECT gaps FROM vomosync.recon_runs
		WHERE customer_id = $2 AND resource = $3 AND id <> $1 AND finished_at IS NOT NULL
		  AND mode <> 'dry_run' AND outcome IN ('success', 'held', 'untrusted')
		ORDER BY started_at DESC LIMIT $4`, res.ID, res.CustomerID, res.Resource, n-1)
	if err != nil {
		return fmt.Errorf("read previous runs: %w", err)
	}
	prev, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return fmt.Errorf("read previous runs: %w", err)
	}
	if len(prev) < n-1 {
		return nil
	}
	for _, b := range prev {
		var g map[string]int
		if err := json.Unmarshal(b, &g); err != nil {
			return fmt.Errorf("previous run gaps: %w", err)
		}
		if g[ClassMissing]+g[ClassStale]+g[ClassDeleted]+g[ClassFieldDrift]+g[ClassDestinationDrift] == 0 {
			return nil
		}
	}
	res.Held = true
	res.HeldReason = fmt.Sprintf("gaps found in %d consecutive runs: a steady leak (a polling bug?) that repairs would hide; investigate, then `syncctl reconcile --force`", n)
	return nil
}
