package apply

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/vomosync/vomosync/services/processor/destination"
)

// The fast path of a batch whose destinations live in the vomosync database
// (destination.Postgres). The batch's fresh versions are copied once, in
// binary, into a per-connection temporary table; one INSERT ... ON CONFLICT
// DO UPDATE on sync_state is the guard and the state write (taking every row
// lock in key order in a single pass), and the destination copies the rows
// it applies from the same table. Records are sent and parsed once instead
// of three times, and no statement carries the batch as array parameters
// (which Postgres copies while planning each execution).
//
// Anything unusual on this path (a destination answering stale or failing,
// the stage table missing) rolls the transaction back and runs the batch
// again through the general path, which isolates failures record by record.

// stagedDest is a destination that can write from the stage table.
type stagedDest interface {
	ApplyStaged(ctx context.Context, tx pgx.Tx, stage string, rows []int32, news []bool, ops []destination.Op) ([]error, error)
}

// errUnstaged asks Apply to run the batch again through the general path.
var errUnstaged = errors.New("batch needs the general path")

const (
	stageTable = "pg_temp.vomosync_stage"
	// The table lives as long as the connection and is emptied by every commit.
	stageDDL = `CREATE TEMP TABLE IF NOT EXISTS vomosync_stage (
		idx int NOT NULL, customer_id text NOT NULL, resource text NOT NULL, record_id text NOT NULL,
		external_id text NOT NULL, source_updated_at timestamptz NOT NULL, deleted boolean NOT NULL,
		content_hash bytea, record jsonb, trace_id text NOT NULL) ON COMMIT DELETE ROWS`
	stageCopy = `COPY pg_temp.vomosync_stage (idx, customer_id, resource, record_id, external_id,
		source_updated_at, deleted, content_hash, record, trace_id) FROM STDIN (FORMAT binary)`
	// stageReady marks, in the connection's custom data, that the stage
	// table exists (set after a commit, so a rolled-back creation is redone).
	stageReady = "vomosync.apply.stage"

	// upsertState is guard and state write in one. ON CONFLICT DO UPDATE
	// locks the existing row even when WHERE rejects the version, so every
	// record of the batch is locked before its destination row is touched.
	// RETURNING lists the applied versions; a record the statement inserted
	// has xmax 0; prev is the version before (read from the statement's
	// snapshot: under a race with another replica it may be one older than
	// the one replaced, which only affects changed-field names and, for a
	// record first seen as a tombstone, an outbox insert the unique dedup key
	// then refuses). The lookup names both unique keys (external ids never
	// change), so any plan of it, even one cached while the table was empty,
	// is a unique index lookup, never a scan of a customer's rows.
	upsertState = `INSERT INTO vomosync.sync_state AS ss
			(customer_id, resource, record_id, external_id, source_updated_at, deleted, content_hash, record, trace_id)
		SELECT customer_id, resource, record_id, external_id, source_updated_at, deleted, content_hash, record, trace_id
		FROM pg_temp.vomosync_stage
		ORDER BY customer_id, resource, record_id
		ON CONFLICT (customer_id, resource, record_id) DO UPDATE SET
			external_id = EXCLUDED.external_id, source_updated_at = EXCLUDED.source_updated_at, deleted = EXCLUDED.deleted,
			content_hash = coalesce(EXCLUDED.content_hash, ss.content_hash), record = coalesce(EXCLUDED.record, ss.record),
			trace_id = EXCLUDED.trace_id, applied_at = now()
		WHERE ss.source_updated_at < EXCLUDED.source_updated_at
		RETURNING ss.customer_id, ss.resource, ss.record_id, ss.xmax = 0,
			CASE WHEN ss.xmax <> 0 THEN (SELECT o.record FROM vomosync.sync_state o
				WHERE o.customer_id = ss.customer_id AND o.resource = ss.resource AND o.record_id = ss.record_id
				AND o.external_id = ss.external_id) END`
)

// splitStaged separates the winners whose destination writes from the stage.
func splitStaged(winners []*cand) (staged, rest []*cand) {
	for _, k := range winners {
		if _, ok := k.target.Dest.(stagedDest); ok {
			staged = append(staged, k)
		} else {
			rest = append(rest, k)
		}
	}
	return staged, rest
}

// applyStaged runs guard, state and destination of winners (sorted by key)
// on the fast path and settles their results.
func (a *Applier) applyStaged(ctx context.Context, tx pgx.Tx, winners []*cand, res []Result, tm *timer) error {
	conn := tx.Conn().PgConn()
	if conn.CustomData()[stageReady] == nil {
		if _, err := tx.Exec(ctx, stageDDL); err != nil {
			return fmt.Errorf("stage table: %w", err)
		}
	}
	cb := newCopyBuf(len(winners) * 1024)
	for _, k := range winners {
		cb.row(10)
		cb.int4(int32(k.i))
		cb.text(k.op.CustomerID)
		cb.text(k.op.Resource)
		cb.text(k.op.RecordID)
		cb.text(k.op.ExternalID)
		cb.timestamptz(k.op.SourceUpdatedAt)
		cb.boolean(k.op.Delete)
		cb.bytea(k.hash)
		if k.op.Delete {
			cb.jsonb(nil)
		} else {
			cb.jsonb(k.op.Record)
		}
		cb.text(k.op.TraceID)
	}
	if err := copyIn(ctx, tx, cb.done(), stageCopy); err != nil {
		delete(conn.CustomData(), stageReady)
		return unstaged("stage copy", err)
	}
	cb.release()

	byKey := make(map[[3]string]*cand, len(winners))
	for _, k := range winners {
		byKey[[3]string{k.op.CustomerID, k.op.Resource, k.op.RecordID}] = k
	}
	rows, err := tx.Query(ctx, upsertState)
	if err != nil {
		return unstaged("state upsert", err)
	}
	for rows.Next() {
		var key [3]string
		var inserted bool
		var prev []byte
		if err := rows.Scan(&key[0], &key[1], &key[2], &inserted, &prev); err != nil {
			rows.Close()
			return fmt.Errorf("state upsert scan: %w", err)
		}
		if k := byKey[key]; k != nil {
			k.outcome, k.inserted = Applied, inserted
			if !inserted {
				k.prev = &prevState{record: prev, noRecord: prev == nil}
			}
		}
	}
	if err := rows.Err(); err != nil {
		return unstaged("state upsert", err)
	}

	tm.mark(PhaseGuard)
	for _, k := range winners {
		if k.outcome != Applied { // the upsert's WHERE refused it
			k.outcome = SkippedStale
		}
	}
	for _, g := range groupByTarget(winners, res) {
		ops, idx, news := make([]destination.Op, len(g)), make([]int32, len(g)), make([]bool, len(g))
		for j, k := range g {
			ops[j], idx[j], news[j] = k.op, int32(k.i), k.inserted
		}
		perOp, err := g[0].target.Dest.(stagedDest).ApplyStaged(ctx, tx, stageTable, idx, news, ops)
		if err != nil {
			return unstaged("destination", err)
		}
		for j := range g {
			if j >= len(perOp) || perOp[j] != nil {
				// Stale at the destination or refused: the general path
				// decides record by record.
				return errUnstaged
			}
		}
	}
	tm.mark(PhaseDestination)
	for _, k := range winners {
		if k.outcome == Applied {
			res[k.i] = a.appliedResult(k)
		}
	}
	return nil
}

// unstaged wraps a fast-path error: a retry of the same path resolves
// deadlocks, serialization failures and lost connections; anything else (a
// record the database refuses, the stage table gone) goes to the general
// path, which isolates the record at fault.
func unstaged(what string, err error) error {
	if transient(err) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %w", errUnstaged, what, err)
}

// markStageReady records after a commit that the connection has the stage
// table.
func markStageReady(tx pgx.Tx) {
	tx.Conn().PgConn().CustomData()[stageReady] = true
}

// markAuditReady records after a commit that the connection has the audit
// stage table.
func markAuditReady(tx pgx.Tx) {
	tx.Conn().PgConn().CustomData()[auditReady] = true
}

func copyIn(ctx context.Context, tx pgx.Tx, data []byte, sql string) error {
	_, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), sql)
	return err
}
