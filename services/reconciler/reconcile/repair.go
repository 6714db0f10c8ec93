package reconcile

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vomosync/vomosync/pkg/faults"
	"github.com/vomosync/vomosync/pkg/messaging"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
)

// publishWindow is how many repair events are in flight before waiting for
// their acks (and marking their gaps repaired).
const publishWindow = 512

// repairRows streams the run's actionable gaps with the raw record the walk saw.
const repairRows = `
SELECT rg.id, rg.record_id, rg.class, rg.cause, rg.source_updated_at, g.raw, g.dest_deleted
FROM vomosync.recon_gaps rg
JOIN (
	SELECT DISTINCT ON (record_id, class) record_id, class, raw, dest_deleted FROM pg_temp.recon_gap
	ORDER BY record_id, class, source_updated_at DESC NULLS LAST
) g ON g.record_id = rg.record_id AND g.class = rg.class
WHERE rg.run_id = $1 AND rg.class <> 'untrusted_walk'
ORDER BY rg.id`

// repair republishes what the destination lacks: missing, stale and drifted
// records as upserts of the version the walk saw (origin reconcile), deletions
// as delete events at the walk's server time, and dead-lettered records whose
// cause has cleared as re-drives (origin redrive) of the current version.
// Every message id carries the run id, so JetStream's duplicate window never
// swallows a repair of a version published before.
func (r *Reconciler) repair(ctx context.Context, s *session, res *RunResult) error {
	if res.Mode != ModeRepair || r.JS == nil {
		return nil
	}
	cleared, err := r.clearedSince(ctx, res)
	if err != nil {
		return err
	}
	var invalidated map[string]bool
	if res.Gaps[ClassDestinationDrift] > 0 && s.dest != "" {
		if invalidated, err = r.invalidateDrifted(ctx, s, res); err != nil {
			return err
		}
		if n := res.Gaps[ClassDestinationDrift] - len(invalidated); n > 0 {
			res.note("%d destination_drift gaps not republished: a newer version was applied meanwhile", n)
		}
	}
	rows, err := s.conn.Query(ctx, repairRows, res.ID)
	if err != nil {
		return fmt.Errorf("read gaps to repair: %w", err)
	}
	defer rows.Close()
	p := &publisher{r: r, res: res, batch: messaging.NewBatch(r.JS)}
	for rows.Next() {
		var g gapToRepair
		if err := rows.Scan(&g.id, &g.recordID, &g.class, &g.cause, &g.sourceAt, &g.raw, &g.destDeleted); err != nil {
			return fmt.Errorf("read gaps to repair: %w", err)
		}
		ev := &eventsv1.ChangeEvent{CustomerId: res.CustomerID, Resource: res.Resource, RecordId: g.recordID,
			Origin: eventsv1.Origin_ORIGIN_RECONCILE, CycleId: res.ID, ObservedAt: timestamppb.New(r.now())}
		switch {
		case g.class == ClassDestinationDrift:
			// Redeliver what sync_state says was delivered (the walk
			// confirmed it against the source) at its own version; the
			// invalidation above lets it through both guards.
			if !invalidated[g.recordID] {
				continue
			}
			ev.SourceUpdatedAt = timestamppb.New(*g.sourceAt)
			if g.destDeleted {
				ev.Operation = eventsv1.Operation_OPERATION_DELETE
			} else {
				ev.Operation, ev.Record = eventsv1.Operation_OPERATION_UPSERT, g.raw
			}
		case g.class == ClassDeleted:
			// The deletion happened before the walk started; a re-created
			// record carries a newer updated_at and wins.
			ev.Operation, ev.SourceUpdatedAt = eventsv1.Operation_OPERATION_DELETE, timestamppb.New(res.WindowTo)
		default:
			at := *g.sourceAt
			switch {
			case g.destDeleted && res.WindowTo.After(at):
				// The destination holds a delete stamped later than this
				// version (a deletion inferred wrongly): only a newer stamp wins.
				at = res.WindowTo
			case g.class == ClassFieldDrift:
				// Same updated_at, new fields: the processor applies only
				// strictly newer versions, so stamp the correction a
				// microsecond later. VOMO stamps whole seconds, so the next
				// real version still wins.
				at = at.Add(time.Microsecond)
			}
			ev.Operation, ev.SourceUpdatedAt, ev.Record = eventsv1.Operation_OPERATION_UPSERT, timestamppb.New(at), g.raw
		}
		if g.cause == CauseDeadLettered {
			if !cleared(g) {
				continue
			}
			ev.Origin = eventsv1.Origin_ORIGIN_REDRIVE
		}
		if err := p.add(ctx, ev, g); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read gaps to repair: %w", err)
	}
	rows.Close()
	if err := p.flush(ctx); err != nil {
		return err
	}
	return r.redriveOrphans(ctx, p)
}

// orphanLimit bounds the dead letters one run re-drives outside its gaps.
const orphanLimit = 1000

// orphanDeadLetters are open dead letters no gap of this run covered (older
// than an incremental window, or newer than the horizon) whose version the
// destination still lacks.
const orphanDeadLetters = `
SELECT dl.record_id, dl.payload, dl.error_class, dl.last_failed_at
FROM vomosync.dead_letters dl
LEFT JOIN vomosync.sync_state d ON d.customer_id = dl.customer_id AND d.resource = dl.resource AND d.record_id = dl.record_id
WHERE dl.customer_id = $1 AND dl.resource = $2 AND dl.status = 'open' AND dl.record_id <> ''
  AND (d.record_id IS NULL OR dl.record_updated_at IS NULL OR d.source_updated_at < dl.record_updated_at)
ORDER BY dl.id LIMIT $3`

// redriveOrphans re-drives, as they were published, the dead letters no gap
// of this run covered, when their cause has cleared (a failure of the
// environment, and the processor has applied records of the pair since).
func (r *Reconciler) redriveOrphans(ctx context.Context, p *publisher) error {
	res := p.res
	lastApplied, err := r.lastApplied(ctx, res)
	if err != nil {
		return err
	}
	rows, err := r.DB.Query(ctx, orphanDeadLetters, res.CustomerID, res.Resource, orphanLimit)
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	type orphan struct {
		recordID, class string
		payload         []byte
		failedAt        time.Time
	}
	orphans, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (orphan, error) {
		var o orphan
		err := row.Scan(&o.recordID, &o.payload, &o.class, &o.failedAt)
		return o, err
	})
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	for _, o := range orphans {
		if recordSpecific[o.class] || lastApplied == nil || !lastApplied.After(o.failedAt) {
			continue
		}
		ev, err := messaging.Decode(o.payload)
		if err != nil || ev.GetRecordId() != o.recordID {
			continue
		}
		ev.Origin, ev.CycleId, ev.ObservedAt = eventsv1.Origin_ORIGIN_REDRIVE, res.ID, timestamppb.New(r.now())
		if err := p.add(ctx, ev, gapToRepair{recordID: o.recordID, class: "redrive", cause: CauseDeadLettered}); err != nil {
			return err
		}
	}
	return p.flush(ctx)
}

func (r *Reconciler) lastApplied(ctx context.Context, res *RunResult) (*time.Time, error) {
	var at *time.Time
	err := r.DB.QueryRow(ctx, `SELECT max(applied_at) FROM vomosync.sync_state WHERE customer_id = $1 AND resource = $2`,
		res.CustomerID, res.Resource).Scan(&at)
	if err != nil {
		return nil, fmt.Errorf("last applied record: %w", err)
	}
	return at, nil
}

type gapToRepair struct {
	id          int64
	recordID    string
	class       string
	cause       string
	sourceAt    *time.Time
	raw         []byte
	destDeleted bool
}

// Dead-letter error classes (the processor's apply.Class*) whose failure is
// tied to the record's content rather than to the environment.
const classInvalid = "invalid"

var recordSpecific = map[string]bool{classInvalid: true, "validation": true, "destination_rejected": true}

// clearedSince returns whether a dead-lettered gap's cause has cleared: the
// source has a newer version than the one that failed, or, for failures of
// the environment (destination down or misconfigured, customer disabled,
// retries exhausted), the processor has applied records of this customer and
// resource since the last failure. A record-specific failure (invalid,
// validation, destination_rejected) of the same version never clears.
func (r *Reconciler) clearedSince(ctx context.Context, res *RunResult) (func(gapToRepair) bool, error) {
	lastApplied, err := r.lastApplied(ctx, res)
	if err != nil {
		return nil, err
	}
	return func(g gapToRepair) bool {
		var failedAt time.Time
		var failedVersion *time.Time
		var class string
		err := r.DB.QueryRow(ctx, `SELECT last_failed_at, record_updated_at, error_class FROM vomosync.dead_letters
			WHERE customer_id = $1 AND resource = $2 AND record_id = $3 AND status = 'open'
			ORDER BY last_failed_at DESC LIMIT 1`, res.CustomerID, res.Resource, g.recordID).Scan(&failedAt, &failedVersion, &class)
		if err != nil {
			// The dead letter was resolved meanwhile (or unreadable): republish.
			return err == pgx.ErrNoRows
		}
		if failedVersion != nil && g.sourceAt != nil && g.sourceAt.After(*failedVersion) && class != classInvalid {
			return true // a new version at the source: worth another try
		}
		if recordSpecific[class] {
			return false // the same version would fail the same way
		}
		return lastApplied != nil && lastApplied.After(failedAt)
	}, nil
}

// publisher publishes repair events in windows and marks their gaps repaired
// (and their dead letters redriven) once JetStream acknowledged them.
type publisher struct {
	r       *Reconciler
	res     *RunResult
	batch   *messaging.Batch
	pending []gapToRepair
}

func (p *publisher) add(ctx context.Context, ev *eventsv1.ChangeEvent, g gapToRepair) error {
	pctx, span := messaging.StartPublishSpan(ctx, ev)
	msg, err := messaging.NewMsg(pctx, ev, messaging.MsgID(ev, p.res.ID))
	if err == nil {
		err = p.batch.Add(msg)
	}
	if err != nil {
		span.RecordError(err)
	}
	span.End()
	if err != nil {
		return fmt.Errorf("publish repair of %s: %w", g.recordID, err)
	}
	p.pending = append(p.pending, g)
	if len(p.pending) >= publishWindow {
		return p.flush(ctx)
	}
	return nil
}

func (p *publisher) flush(ctx context.Context) error {
	if len(p.pending) == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	acked, werr := p.batch.Wait(wctx)
	cancel()
	alive(ctx)
	done := p.pending[:acked]
	p.pending = p.pending[:0]
	var ids []int64
	var redriven []string
	for _, g := range done {
		if g.id != 0 { // 0: a dead letter re-driven outside the run's gaps
			ids = append(ids, g.id)
		}
		if g.cause == CauseDeadLettered {
			redriven = append(redriven, g.recordID)
		}
		if p.r.Metrics != nil {
			p.r.Metrics.Repairs.WithLabelValues(p.res.CustomerID, p.res.Resource, g.class).Inc()
		}
	}
	if len(ids) > 0 {
		_, err := p.r.DB.Exec(ctx, `UPDATE vomosync.recon_gaps SET repaired = true WHERE id = ANY($1)`, ids)
		if err != nil {
			return fmt.Errorf("mark gaps repaired: %w", err)
		}
		p.res.Repaired += len(ids)
	}
	if len(redriven) > 0 {
		tag, err := p.r.DB.Exec(ctx, `UPDATE vomosync.dead_letters
			SET status = 'redriven', resolved_by = $4, resolved_at = now(),
			    resolved_reason = 'cause cleared; the current source version was re-driven by reconciliation run ' || $4
			WHERE customer_id = $1 AND resource = $2 AND record_id = ANY($3) AND status = 'open'`,
			p.res.CustomerID, p.res.Resource, redriven, p.res.ID)
		if err != nil {
			return fmt.Errorf("mark dead letters redriven: %w", err)
		}
		p.res.Redriven += int(tag.RowsAffected())
		if p.r.Metrics != nil {
			p.r.Metrics.RedrivenDLQ.WithLabelValues(p.res.CustomerID, p.res.Resource).Add(float64(tag.RowsAffected()))
		}
	}
	if werr != nil {
		return fmt.Errorf("repair events not acknowledged: %w", werr)
	}
	if len(done) > 0 {
		p.r.Faults.Point(faults.ReconcilerMidRepair)
	}
	return nil
}
