package schedule_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/services/reconciler/internal/schedule"
)

// A replica killed mid-run leaves its lease behind; started again under the
// same id it releases the lease and runs the pair at once instead of
// waiting for the lease to expire. Other replicas' leases are kept.
func TestRestartReleasesOwnLeases(t *testing.T) {
	t.Parallel()
	b := setup(t, "acme")
	b.due(t, "acme", "users", schedule.KindFull)
	b.due(t, "acme", "groups", schedule.KindFull)
	_, err := b.db.Pool.Exec(b.ctx, `UPDATE vomosync.schedules SET lease_owner = CASE resource WHEN 'users' THEN 'r1' ELSE 'r2' END,
		lease_until = now() + interval '1 hour' WHERE customer_id = 'acme' AND kind = $1`, schedule.KindFull)
	require.NoError(t, err)

	ran := make(chan schedule.Claim, 4)
	s := &schedule.Scheduler{DB: b.db.Pool, Owner: "r1", Lease: 10 * time.Second, Tick: 20 * time.Millisecond, Concurrency: 1,
		Do: func(_ context.Context, c schedule.Claim, _ func()) schedule.Outcome {
			ran <- c
			return schedule.Outcome{Outcome: "success"}
		}, Log: zerolog.Nop()}
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case c := <-ran:
		require.Equal(t, "users", c.Resource)
	case <-time.After(15 * time.Second):
		t.Fatal("the pair leased by this replica's previous life did not run")
	}
	cancel()
	require.NoError(t, <-done)
	require.Empty(t, ran, "the pair leased by another replica waits for its lease")
	var owner string
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT lease_owner FROM vomosync.schedules WHERE customer_id = 'acme' AND resource = 'groups' AND kind = $1`,
		schedule.KindFull).Scan(&owner))
	require.Equal(t, "r2", owner)
}
