package reconcile

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/vomosync/vomosync/pkg/customer"
)

// destTable is the customer's Postgres destination table of a resource
// (destination.Postgres: one table per resource in the configured schema),
// or "" when the customer's destination is not the Postgres one or the
// table does not exist yet.
func (s *session) destTable(ctx context.Context, eff customer.Settings) (string, bool, error) {
	d := eff.Destination
	if d.Kind != "postgres" {
		return "", false, nil
	}
	var exists bool
	if err := s.conn.QueryRow(ctx, `SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL`,
		d.Schema, s.resource).Scan(&exists); err != nil {
		return "", false, fmt.Errorf("find destination table: %w", err)
	}
	if !exists {
		return "", false, nil
	}
	return pgx.Identifier{d.Schema, s.resource}.Sanitize(), d.DeleteMode == "hard", nil
}

// destinationDriftQuery compares the destination table with sync_state (what
// vomosync delivered, which the walk just confirmed against the source) in
// one statement, for records no other gap covers: a live record whose row is
// missing, marked deleted or holds other jsonb; a deleted record whose row is
// still there (hard delete) or not marked deleted (soft delete). The
// processor writes both tables in one transaction, so one snapshot of both
// never sees a write half done. $3: the destination hard-deletes.
const destinationDriftQuery = `
INSERT INTO pg_temp.recon_gap (record_id, class, source_updated_at, dest_updated_at, dest_deleted, raw, detail)
SELECT ss.record_id, 'destination_drift', ss.source_updated_at, d.source_updated_at, ss.deleted,
	CASE WHEN NOT ss.deleted THEN convert_to(ss.record::text, 'UTF8') END,
	CASE
		WHEN NOT ss.deleted AND d.external_id IS NULL THEN 'the destination row is missing'
		WHEN NOT ss.deleted AND d.deleted THEN 'the destination row is marked deleted; the record is live'
		WHEN NOT ss.deleted THEN 'the destination record differs from the one delivered (sync_state)'
		WHEN $3 THEN 'the record was deleted and the destination still holds its row'
		ELSE 'the record was deleted and the destination row is not marked deleted'
	END
FROM vomosync.sync_state ss
LEFT JOIN %s d ON d.customer_id = ss.customer_id AND d.external_id = ss.external_id
WHERE ss.customer_id = $1 AND ss.resource = $2
  AND NOT EXISTS (SELECT 1 FROM pg_temp.recon_gap g WHERE g.record_id = ss.record_id)
  AND CASE
	WHEN NOT ss.deleted THEN ss.record IS NOT NULL
		AND (d.external_id IS NULL OR d.deleted OR d.record IS DISTINCT FROM ss.record)
	WHEN $3 THEN d.external_id IS NOT NULL
	ELSE d.external_id IS NOT NULL AND NOT d.deleted
  END`

// destinationDrift records destination rows changed behind vomosync's back
// (full runs of customers writing to the Postgres destination). Comparing
// the source with sync_state alone never sees them: sync_state still holds
// what was delivered.
func (s *session) destinationDrift(ctx context.Context, eff customer.Settings) error {
	table, hard, err := s.destTable(ctx, eff)
	if err != nil || table == "" {
		return err
	}
	s.dest, s.destHard = table, hard
	q := fmt.Sprintf(destinationDriftQuery, table) // #nosec G201 -- table is a quoted identifier (pgx.Identifier.Sanitize)
	tag, err := s.conn.Exec(ctx, q, s.customer, s.resource, hard)
	if err != nil {
		return fmt.Errorf("compare destination with sync_state: %w", err)
	}
	if n := tag.RowsAffected(); n > 0 {
		s.res.note("%d destination rows differ from what was delivered", n)
	}
	return nil
}

// invalidateDrifted makes the repair of the run's destination_drift gaps
// apply. The processor applies only versions strictly newer than the one in
// sync_state (its guard) and than the one in the destination row (the
// destination's own upsert/delete guard), and the drifted rows hold the very
// version the repair republishes. So, before publishing, both are set one
// microsecond before that version, for exactly the gaps' records and only
// while sync_state still holds the version compared (a newer one applied
// since is left alone and wins anyway). The sync_state row and its record
// stay, so the repair is not a first sighting (no first_seen action fires).
// Locks are taken in the processor's order: sync_state rows by key, then
// destination rows. It returns the record ids invalidated.
func (r *Reconciler) invalidateDrifted(ctx context.Context, s *session, res *RunResult) (map[string]bool, error) {
	tx, err := r.DB.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("invalidate drifted records: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT 1 FROM vomosync.sync_state ss JOIN vomosync.recon_gaps g
			ON g.run_id = $1 AND g.class = 'destination_drift' AND g.record_id = ss.record_id
		WHERE ss.customer_id = $2 AND ss.resource = $3
		ORDER BY ss.customer_id, ss.resource, ss.record_id
		FOR UPDATE OF ss`, res.ID, res.CustomerID, res.Resource); err != nil {
		return nil, fmt.Errorf("lock drifted records: %w", err)
	}
	// #nosec G201 -- s.dest is a quoted identifier (pgx.Identifier.Sanitize)
	rows, err := tx.Query(ctx, fmt.Sprintf(`
		WITH inv AS (
			UPDATE vomosync.sync_state ss SET source_updated_at = ss.source_updated_at - interval '1 microsecond'
			FROM vomosync.recon_gaps g
			WHERE g.run_id = $1 AND g.class = 'destination_drift' AND g.record_id = ss.record_id
			  AND ss.customer_id = $2 AND ss.resource = $3 AND ss.source_updated_at = g.source_updated_at
			RETURNING ss.record_id, ss.external_id, ss.source_updated_at),
		dest AS (
			UPDATE %s d SET source_updated_at = inv.source_updated_at
			FROM inv WHERE d.customer_id = $2 AND d.external_id = inv.external_id
			  AND d.source_updated_at > inv.source_updated_at
			RETURNING 1)
		SELECT record_id FROM inv`, s.dest), res.ID, res.CustomerID, res.Resource)
	if err != nil {
		return nil, fmt.Errorf("invalidate drifted records: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("invalidate drifted records: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("invalidate drifted records: %w", err)
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}
