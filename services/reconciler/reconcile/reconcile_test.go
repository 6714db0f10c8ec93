package reconcile_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/messaging"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
	"github.com/vomosync/vomosync/services/reconciler/reconcile"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

func TestMain(m *testing.M) {
	// Real trace ids, so tests can follow a repair to its run's trace.
	otel.SetTracerProvider(sdktrace.NewTracerProvider())
	otel.SetTextMapPropagator(propagation.TraceContext{})
	os.Exit(m.Run())
}

// gapWorld injects one gap of each cause a full run can find into a
// destination that otherwise holds the simulator's truth.
type gapWorld struct {
	missingApplied, staleApplied, lateWrite, deleted, neverPublished, deadLettered sim.TruthRecord
}

func injectGaps(t *testing.T, b *testBundle) gapWorld {
	t.Helper()
	truth := b.deliverAll(t)
	w := gapWorld{missingApplied: pick(truth, 3), staleApplied: pick(truth, 10), lateWrite: pick(truth, 20),
		deleted: pick(truth, 30), neverPublished: pick(truth, 40), deadLettered: pick(truth, 50)}
	// Processed, then lost by the destination.
	b.exec(t, `DELETE FROM vomosync.sync_state WHERE customer_id = $1 AND record_id = $2`, custID, w.missingApplied.ID)
	b.exec(t, `UPDATE vomosync.sync_state SET source_updated_at = source_updated_at - interval '1 hour' WHERE customer_id = $1 AND record_id = $2`,
		custID, w.staleApplied.ID)
	// Changed at the source after a successful walk covered its new time.
	require.NoError(t, b.sim.UpdateUser(custID, w.lateWrite.ID))
	// Hard-deleted at the source.
	require.NoError(t, b.sim.DeleteUser(custID, w.deleted.ID))
	// Never published: no attempt, and a hole in the poll windows around it.
	b.exec(t, `DELETE FROM vomosync.sync_state WHERE customer_id = $1 AND record_id = $2`, custID, w.neverPublished.ID)
	b.exec(t, `DELETE FROM vomosync.audit_log WHERE customer_id = $1 AND record_id = $2`, custID, w.neverPublished.ID)
	b.exec(t, `DELETE FROM vomosync.poll_cycles WHERE customer_id = $1`, custID)
	now := time.Now().Add(2 * time.Second).UTC()
	b.pollCycle(t, time.Unix(0, 0), w.neverPublished.UpdatedAt.Add(-time.Second))
	b.pollCycle(t, w.neverPublished.UpdatedAt.Add(time.Second), now)
	b.setCheckpoint(t, now)
	// Published and dead-lettered; the destination has applied other
	// records since, so the cause has cleared.
	b.exec(t, `DELETE FROM vomosync.sync_state WHERE customer_id = $1 AND record_id = $2`, custID, w.deadLettered.ID)
	b.exec(t, `DELETE FROM vomosync.audit_log WHERE customer_id = $1 AND record_id = $2`, custID, w.deadLettered.ID)
	b.exec(t, `INSERT INTO vomosync.dead_letters (customer_id, resource, record_id, record_updated_at, subject, payload, error, error_class, last_failed_at)
		VALUES ($1, 'users', $2, $3, 'vomosync.changes.acme.users', '\x00', 'destination refused: connection reset', 'transient', now() - interval '2 hours')`,
		custID, w.deadLettered.ID, w.deadLettered.UpdatedAt)
	return w
}

func TestFullRunClassifiesAndRepairsEveryGap(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 60, settings: customer.Settings{Reconcile: customer.Reconcile{GapThreshold: 0.5}}})
	b.rec.BatchSize = 7 // many batches compared while the walk goes on
	w := injectGaps(t, b)

	var progress []int
	res := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeRepair, Actor: "operator:test",
		Progress: func(done, total int) { progress = append(progress, done) }})
	require.Equal(t, reconcile.OutcomeSuccess, res.Outcome, "%+v", res)
	require.True(t, res.Trusted)
	require.Equal(t, 59, res.SourceRecords)
	require.Equal(t, 59, res.Expected)
	require.Equal(t, map[string]int{"missing": 3, "stale": 2, "deleted": 1}, res.Gaps)
	require.Equal(t, 6, res.Repaired)
	require.Equal(t, 1, res.Redriven)
	require.NotEmpty(t, progress)
	require.Equal(t, 59, progress[len(progress)-1])

	gaps := b.gapsByRecord(t, res.ID)
	want := map[string][2]string{
		w.missingApplied.ID: {reconcile.ClassMissing, reconcile.CauseDestinationDiffers},
		w.staleApplied.ID:   {reconcile.ClassStale, reconcile.CauseDestinationDiffers},
		w.lateWrite.ID:      {reconcile.ClassStale, reconcile.CauseLateWrite},
		w.deleted.ID:        {reconcile.ClassDeleted, reconcile.CauseSourceDeleted},
		w.neverPublished.ID: {reconcile.ClassMissing, reconcile.CauseNeverPublished},
		w.deadLettered.ID:   {reconcile.ClassMissing, reconcile.CauseDeadLettered},
	}
	require.Len(t, gaps, len(want))
	for id, cw := range want {
		g := gaps[id]
		require.Equal(t, cw, [2]string{g.Class, g.Cause}, "record %s: %s", id, g.Detail)
		require.True(t, g.Repaired, id)
		require.NotEmpty(t, g.Detail, id)
	}

	pub := b.published(t)
	require.Len(t, pub, len(want))
	for id := range want {
		p := pub[id]
		require.NotNil(t, p.ev, id)
		require.Equal(t, res.ID, p.ev.GetCycleId())
		require.True(t, strings.HasSuffix(p.msgID, ":"+res.ID), "message id unique to the repair: %s", p.msgID)
	}
	require.Equal(t, eventsv1.Operation_OPERATION_DELETE, pub[w.deleted.ID].ev.GetOperation())
	require.Equal(t, res.WindowTo, pub[w.deleted.ID].ev.GetSourceUpdatedAt().AsTime())
	require.Equal(t, eventsv1.Origin_ORIGIN_REDRIVE, pub[w.deadLettered.ID].ev.GetOrigin())
	for _, id := range []string{w.missingApplied.ID, w.staleApplied.ID, w.lateWrite.ID, w.neverPublished.ID} {
		require.Equal(t, eventsv1.Operation_OPERATION_UPSERT, pub[id].ev.GetOperation())
		require.Equal(t, eventsv1.Origin_ORIGIN_RECONCILE, pub[id].ev.GetOrigin())
		require.NotEmpty(t, pub[id].ev.GetRecord())
	}

	// Repairs carry the run's trace.
	st, err := b.js.Stream(b.ctx, messaging.StreamChanges)
	require.NoError(t, err)
	m, err := st.GetMsg(b.ctx, 1)
	require.NoError(t, err)
	sc := trace.SpanContextFromContext(messaging.Extract(b.ctx, m.Header))
	require.Equal(t, res.TraceID, sc.TraceID().String())

	var status, by string
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT status, resolved_by FROM vomosync.dead_letters WHERE record_id = $1`, w.deadLettered.ID).Scan(&status, &by))
	require.Equal(t, "redriven", status)
	require.Equal(t, res.ID, by)

	runs, err := reconcile.ListRuns(b.ctx, b.db.Pool, reconcile.RunFilter{Customer: custID})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, res.Gaps, runs[0].Gaps)
	require.Equal(t, reconcile.OutcomeSuccess, runs[0].Outcome)
	require.Equal(t, "full", runs[0].Kind)
	require.Positive(t, runs[0].Requests)
	require.Equal(t, res.TraceID, runs[0].TraceID)
}

func TestReportAndDryRunChangeNothing(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{reconcile.ModeReport, reconcile.ModeDryRun} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{users: 60, settings: customer.Settings{Reconcile: customer.Reconcile{GapThreshold: 0.5}}})
			w := injectGaps(t, b)
			var before int
			require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT count(*) FROM vomosync.sync_state`).Scan(&before))

			res := b.run(t, reconcile.Request{Full: true, Mode: mode})
			require.Equal(t, reconcile.OutcomeSuccess, res.Outcome)
			require.Equal(t, 6, res.Actionable())
			require.Zero(t, res.Repaired)
			require.Empty(t, b.published(t), "nothing published")
			var status string
			require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT status FROM vomosync.dead_letters WHERE record_id = $1`, w.deadLettered.ID).Scan(&status))
			require.Equal(t, "open", status)
			var after int
			require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT count(*) FROM vomosync.sync_state`).Scan(&after))
			require.Equal(t, before, after)
			for _, g := range b.gapsByRecord(t, res.ID) {
				require.False(t, g.Repaired)
			}
		})
	}
}
