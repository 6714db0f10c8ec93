package poll_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/checkpoint"
	"github.com/vomosync/vomosync/pkg/faults"
	"github.com/vomosync/vomosync/pkg/messaging"
)

// TestKillPointsSitWhereTheyClaim fires every poller point and checks the
// state the process would die in: after a fetch nothing of the cycle is
// published yet; after a publish the events are in JetStream and the
// checkpoint has not moved; inside the checkpoint transaction the new
// position is written but not visible to anyone else.
func TestKillPointsSitWhereTheyClaim(t *testing.T) {
	t.Parallel()
	b := setup(t, 40) // three pages
	stored := func() uint64 {
		st, err := b.js.Stream(b.ctx, messaging.StreamChanges)
		require.NoError(t, err)
		info, err := st.Info(b.ctx)
		require.NoError(t, err)
		return info.State.Msgs
	}
	committed := func() bool { // has the checkpoint moved past the epoch?
		cp, err := checkpoint.Get(b.ctx, b.pool, "acme", "users")
		if errors.Is(err, checkpoint.ErrNotFound) {
			return false
		}
		require.NoError(t, err)
		return cp.Position.After(checkpoint.Epoch)
	}
	var seen []string
	var firstFetchStored, publishStored uint64
	var publishCommitted, txCommitted bool
	probs := map[string]float64{faults.PollerAfterFetch: 1, faults.PollerAfterPublish: 1, faults.PollerCheckpointTx: 1}
	b.cycler.Faults = faults.New(probs, 1).WithAction(func(p string) {
		switch {
		case p == faults.PollerAfterFetch && len(seen) == 0:
			firstFetchStored = stored()
		case p == faults.PollerAfterPublish && publishStored == 0:
			publishStored, publishCommitted = stored(), committed()
		case p == faults.PollerCheckpointTx:
			txCommitted = committed()
		}
		seen = append(seen, p)
	})
	res := b.cycle(t)
	require.Equal(t, 40, res.RecordsPublished)

	require.Equal(t, faults.PollerAfterFetch, seen[0])
	require.Equal(t, faults.PollerCheckpointTx, seen[len(seen)-1], "the checkpoint transaction is the last point: %v", seen)
	require.Contains(t, seen, faults.PollerAfterPublish)
	fetches := 0
	for _, p := range seen {
		if p == faults.PollerAfterFetch {
			fetches++
		}
	}
	require.GreaterOrEqual(t, fetches, 3, "one point per page fetched")
	require.Zero(t, firstFetchStored, "after the first fetch nothing is published")
	require.NotZero(t, publishStored, "after a publish the events are acknowledged")
	require.False(t, publishCommitted, "after a publish the checkpoint has not moved")
	require.False(t, txCommitted, "inside the checkpoint transaction nothing is committed")
	require.True(t, committed(), "the transaction commits after the point")
}
