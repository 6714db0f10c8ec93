package reconcile_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/services/reconciler/reconcile"
)

// An incremental run walks only the daily window: it finds the recent
// versions the destination lacks, leaves older records and deletions to the
// full run, and counts versions newer than the checkpoint as pending.
func TestIncrementalRunCoversTheWindow(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{users: 80, settings: settingsThreshold(0.5)})
	truth := b.deliverAll(t)
	old := truth[5]
	require.Less(t, old.UpdatedAt, time.Now().Add(-48*time.Hour), "seeded long ago")
	b.removeFromDestination(t, old)                           // outside the window
	require.NoError(t, b.sim.DeleteUser(custID, truth[6].ID)) // deletions need a full run
	require.NoError(t, b.sim.UpdateUser(custID, truth[7].ID)) // recent, missed
	horizon := time.Now().Add(time.Second)
	b.pollCycle(t, time.Now().Add(-time.Hour), horizon)
	b.setCheckpoint(t, horizon)
	time.Sleep(2100 * time.Millisecond)                       // whole-second clock: the next update is past the horizon
	require.NoError(t, b.sim.UpdateUser(custID, truth[8].ID)) // newer than the checkpoint

	res := b.run(t, reconcile.Request{Mode: reconcile.ModeRepair})
	require.Equal(t, reconcile.KindIncremental, res.Kind)
	require.Equal(t, reconcile.OutcomeSuccess, res.Outcome, "%+v", res)
	require.WithinDuration(t, time.Now().Add(-36*time.Hour), res.WindowFrom, time.Minute, "default daily window")
	require.Equal(t, map[string]int{"stale": 1}, res.Gaps)
	gaps := b.gapsByRecord(t, res.ID)
	require.Equal(t, reconcile.CauseLateWrite, gaps[truth[7].ID].Cause)
	require.Equal(t, 1, res.Pending, "the version newer than the checkpoint is on its way")
	require.Equal(t, 79, res.Expected, "the destination's live records are the denominator")
	require.Less(t, res.SourceRecords, 80)
	require.Equal(t, 1, res.Repaired)
}
