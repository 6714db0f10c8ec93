package reconcile_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/services/reconciler/reconcile"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

func (b *testBundle) removeFromDestination(t *testing.T, recs ...sim.TruthRecord) {
	t.Helper()
	for _, r := range recs {
		b.exec(t, `DELETE FROM vomosync.sync_state WHERE customer_id = $1 AND record_id = $2`, custID, r.ID)
	}
}

// applied models the processor applying a repaired record.
func (b *testBundle) applied(t *testing.T, recs ...sim.TruthRecord) {
	t.Helper()
	for _, r := range recs {
		b.exec(t, `INSERT INTO vomosync.sync_state (customer_id, resource, record_id, external_id, source_updated_at)
			VALUES ($1, 'users', $2, 'vomo-' || $2, $3)`, custID, r.ID, r.UpdatedAt)
	}
}

// Over the gap threshold (default 1%) the repair is held and the signal
// raised; an operator's Force releases it.
func TestRepairHeldOverThresholdUntilForced(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 100})
	truth := b.deliverAll(t)
	b.removeFromDestination(t, truth[5], truth[50], truth[95])

	res := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeRepair})
	require.Equal(t, reconcile.OutcomeHeld, res.Outcome)
	require.True(t, res.Held)
	require.Contains(t, res.HeldReason, "threshold")
	require.InDelta(t, 0.03, res.GapRate, 1e-9)
	require.Zero(t, res.Repaired)
	require.Empty(t, b.published(t))
	require.InDelta(t, 3, testutil.ToFloat64(b.metrics.HeldRepairs.WithLabelValues(custID, "users")), 0)
	require.InDelta(t, 0, testutil.ToFloat64(b.metrics.LastRunOK.WithLabelValues(custID, "users")), 0)
	require.InDelta(t, 1, testutil.ToFloat64(b.metrics.Runs.WithLabelValues(custID, "users", "full", "held")), 0)
	var held bool
	var reason string
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT held, held_reason FROM vomosync.recon_runs WHERE id = $1`, res.ID).Scan(&held, &reason))
	require.True(t, held)
	require.Equal(t, res.HeldReason, reason)

	forced := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeRepair, Force: true, Actor: "operator:alice"})
	require.Equal(t, reconcile.OutcomeSuccess, forced.Outcome)
	require.Equal(t, 3, forced.Repaired)
	require.Len(t, b.published(t), 3)
	require.InDelta(t, 0, testutil.ToFloat64(b.metrics.HeldRepairs.WithLabelValues(custID, "users")), 0)
}

// Under the threshold repair proceeds on its own; a repair that does not
// stick, or gaps in run after run, hold it: repairing silently would hide
// the bug that makes them.
func TestPersistentGapsHoldRepair(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 200})
	b.rec.PersistRuns = 3
	truth := b.deliverAll(t)

	b.removeFromDestination(t, truth[7])
	r1 := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeRepair})
	require.Equal(t, reconcile.OutcomeSuccess, r1.Outcome, "0.5%% is under the 1%% threshold")
	require.Equal(t, 1, r1.Repaired)

	// Nothing applied it: the same version is missing again.
	r2 := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeRepair})
	require.Equal(t, reconcile.OutcomeHeld, r2.Outcome)
	require.Contains(t, r2.HeldReason, "does not stick")

	// Applied now; new gaps keep coming, one per run.
	b.applied(t, truth[7])
	b.removeFromDestination(t, truth[70])
	r3 := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeRepair})
	require.Equal(t, reconcile.OutcomeHeld, r3.Outcome, "three runs in a row found gaps")
	require.Contains(t, r3.HeldReason, "consecutive")
	require.Zero(t, r3.Repaired)
}
