package poll_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/checkpoint"
	"github.com/vomosync/vomosync/services/poller/poll"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

// After a burst of changes the source goes quiet. The overlap behind the
// burst is re-read while it is within an overlap of what the last window
// covered, and then no more: the window moves on with the clock, not with
// the newest version (which a quiet source never moves). A late commit
// inside the overlap is still caught, and an operator's checkpoint decision
// takes the window back.
func TestQuietSourceWindowMovesOn(t *testing.T) {
	t.Parallel()
	var skew atomic.Int64 // the test's clock runs ahead of the wall clock by this much
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	b := setupWith(t, 200, sim.Options{Seed: 7, Now: clock})
	b.cycler.Now = clock
	require.Equal(t, "backfill", b.cycle(t).Origin)

	truth, err := b.sim.Truth("acme", "users")
	require.NoError(t, err)
	for _, r := range truth[:20] {
		require.NoError(t, b.sim.UpdateUser("acme", r.ID))
	}
	time.Sleep(1100 * time.Millisecond) // updated_at has 1-second precision
	res := b.cycle(t)
	require.GreaterOrEqual(t, res.RecordsSeen, 20)
	burst := b.position(t)
	require.GreaterOrEqual(t, b.cycle(t).RecordsSeen, 20, "the overlap re-reads the burst while it is recent")

	// Quiet for longer than the overlap (5 minutes by default).
	skew.Add(int64(6 * time.Minute))
	res = b.cycle(t)
	require.GreaterOrEqual(t, res.RecordsSeen, 20, "the first cycle after the pause still covers an overlap behind the last window")
	res = b.cycle(t)
	require.Equal(t, poll.OutcomeSuccess, res.Outcome)
	require.Zero(t, res.RecordsSeen, "nothing changed: the burst is no longer re-read")
	require.LessOrEqual(t, res.Requests, 2)
	require.True(t, res.WindowFrom.After(burst), "window from %s, burst at %s", res.WindowFrom, burst)
	require.Equal(t, burst, b.position(t), "the position is still the newest version handed on")
	b.requireCheckpointCovered(t)

	// A write committed 90 s late lands inside the overlap behind the last
	// window: the next cycle publishes it.
	late := truth[50].ID
	require.NoError(t, b.sim.LateUpdate("acme", "users", late, 90*time.Second))
	time.Sleep(1100 * time.Millisecond)
	res = b.cycle(t)
	require.Equal(t, 1, res.RecordsPublished)
	require.Equal(t, 2, b.streamIDs(t)[late], "backfill and the late write")
	b.requireCheckpointCovered(t)

	// An operator takes the checkpoint back: the window follows the decision,
	// not what earlier cycles walked.
	back := burst.Add(-time.Minute)
	require.NoError(t, checkpoint.Decide(b.ctx, b.pool, checkpoint.Decision{CustomerID: "acme", Resource: "users",
		Actor: "operator:test", Strategy: "set", Reason: "replay the burst", New: &back}))
	res = b.cycle(t)
	require.Equal(t, back.Add(-5*time.Minute), res.WindowFrom)
	require.GreaterOrEqual(t, res.RecordsSeen, 20)
}
