package reconcile_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/faults"
	"github.com/vomosync/vomosync/services/reconciler/reconcile"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

// TestMidRepairPointSeesARunHalfDone checks the state a reconciler killed at
// its mid-repair point leaves: repairs acknowledged by JetStream and marked
// repaired, the run still recorded as running.
func TestMidRepairPointSeesARunHalfDone(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 60, settings: customer.Settings{Reconcile: customer.Reconcile{GapThreshold: 0.5}}})
	injectGaps(t, b)
	type state struct {
		outcome  string
		repaired int
		streamed int
	}
	var seen []state
	b.rec.Faults = faults.New(map[string]float64{faults.ReconcilerMidRepair: 1}, 1).WithAction(func(string) {
		var s state
		require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT r.outcome, (SELECT count(*) FROM vomosync.recon_gaps g WHERE g.run_id = r.id AND g.repaired)
			FROM vomosync.recon_runs r ORDER BY started_at DESC LIMIT 1`).Scan(&s.outcome, &s.repaired))
		s.streamed = len(b.published(t))
		seen = append(seen, s)
	})
	res := b.run(t, reconcile.Request{Full: true, Mode: reconcile.ModeRepair, Actor: "operator:test"})
	require.Equal(t, reconcile.OutcomeSuccess, res.Outcome, "%+v", res)
	require.NotEmpty(t, seen, "the point was reached")
	for _, s := range seen {
		require.Equal(t, "running", s.outcome)
		require.Positive(t, s.repaired)
		require.GreaterOrEqual(t, s.streamed, s.repaired, "marked repaired only once acknowledged")
	}
}

func TestAbandonRunsClosesOnlyTheActorsRunningRuns(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 1})
	insert := func(actor, outcome string) string {
		id := uuid.NewString()
		b.exec(t, `INSERT INTO vomosync.recon_runs (id, customer_id, resource, kind, mode, trace_id, started_at, outcome, forced, actor)
			VALUES ($1, $2, 'users', 'full', 'repair', 't', $3, $4, false, $5)`, id, custID, time.Now(), outcome, actor)
		return id
	}
	dead := insert("scheduler:r1", "running")
	done := insert("scheduler:r1", "success")
	other := insert("scheduler:r2", "running")
	n, err := reconcile.AbandonRuns(b.ctx, b.db.Pool, "scheduler:r1")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	outcome := func(id string) (o string, finished bool) {
		require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT outcome, finished_at IS NOT NULL FROM vomosync.recon_runs WHERE id = $1`, id).Scan(&o, &finished))
		return o, finished
	}
	o, fin := outcome(dead)
	require.Equal(t, "interrupted", o)
	require.True(t, fin)
	o, _ = outcome(done)
	require.Equal(t, "success", o)
	o, fin = outcome(other)
	require.Equal(t, "running", o, "another replica's run is left alone")
	require.False(t, fin)
}

// TestIncrementalWindowFollowsTheAPIClock skews the API two hours behind and
// the reconciler's own clock 90 s ahead: the window is still the last hour
// of the API's time, so a version the API stamped just now is found.
func TestIncrementalWindowFollowsTheAPIClock(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 30, settings: settingsThreshold(0.5)})
	require.NoError(t, b.sim.SetFaults(custID, sim.Faults{ClockSkew: sim.Duration(-2 * time.Hour)}))
	b.rec.Now = faults.Skewed(90 * time.Second)
	truth := b.deliverAll(t)
	require.NoError(t, b.sim.UpdateUser(custID, truth[7].ID)) // stamped by the API's clock
	apiNow, err := b.sim.Now(custID)
	require.NoError(t, err)

	res := b.run(t, reconcile.Request{Mode: reconcile.ModeReport, Window: time.Hour})
	require.Equal(t, reconcile.OutcomeSuccess, res.Outcome, "%+v", res)
	require.WithinDuration(t, apiNow.Add(-time.Hour), res.WindowFrom, 5*time.Second)
	require.Equal(t, map[string]int{"stale": 1}, res.Gaps)
}
