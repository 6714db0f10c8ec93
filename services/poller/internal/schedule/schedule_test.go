package schedule_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/pkg/secrets"
	"github.com/vomosync/vomosync/services/poller/internal/schedule"
)

func keyring(t *testing.T) *secrets.Keyring {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	k, err := secrets.NewKeyring(base64.StdEncoding.EncodeToString(b))
	require.NoError(t, err)
	return k
}

// Three replicas over 200 customers: no pair is ever run by two replicas at
// once, and every due pair is run.
func TestReplicasShareDuePairs(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	store := customer.NewStore(db.Pool, keyring(t))
	const customers = 200
	for i := range customers {
		require.NoError(t, store.Add(ctx, customer.New{ID: fmt.Sprintf("c%03d", i), Token: "t", Resources: []string{"users", "groups"}}))
	}
	var mu sync.Mutex
	running := map[string]string{}
	runs := map[string]int{}
	violations := 0
	run := func(owner string) schedule.RunFunc {
		return func(ctx context.Context, c schedule.Claim) string {
			key := c.CustomerID + "/" + c.Resource
			mu.Lock()
			if other, ok := running[key]; ok {
				violations++
				t.Errorf("%s run by %s while %s holds it", key, owner, other)
			}
			running[key] = owner
			runs[key]++
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
			mu.Lock()
			delete(running, key)
			mu.Unlock()
			return "success"
		}
	}
	rctx, rcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range 3 {
		owner := fmt.Sprintf("poller-%d", i)
		s := &schedule.Scheduler{DB: db.Pool, Owner: owner, Lease: 30 * time.Second, Tick: 20 * time.Millisecond,
			Concurrency: 8, Cycle: run(owner), Log: zerolog.Nop()}
		wg.Add(1)
		go func() { defer wg.Done(); require.NoError(t, s.Run(rctx)) }()
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(runs) == customers*2
	}, 45*time.Second, 50*time.Millisecond, "every due pair is polled")
	rcancel()
	wg.Wait()
	require.Zero(t, violations)
	for key, n := range runs {
		require.Equal(t, 1, n, "%s ran once: its next run is a cadence away", key)
	}
	var leased int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.schedules WHERE lease_owner IS NOT NULL`).Scan(&leased))
	require.Zero(t, leased, "every lease released")
}

// A replica that dies holding a lease: once the lease expires another
// replica picks the pair up.
func TestExpiredLeaseIsPickedUp(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store := customer.NewStore(db.Pool, keyring(t))
	require.NoError(t, store.Add(ctx, customer.New{ID: "acme", Token: "t"}))
	_, err := db.Pool.Exec(ctx, `UPDATE vomosync.schedules SET lease_owner = 'dead', lease_until = now() + interval '300 milliseconds' WHERE kind = 'poll'`)
	require.NoError(t, err)
	s := &schedule.Scheduler{DB: db.Pool, Owner: "alive", Lease: 10 * time.Second, Tick: 20 * time.Millisecond, Concurrency: 1, Log: zerolog.Nop()}
	c := firstClaim(ctx, t, s, "expired lease never picked up")
	require.Equal(t, "acme", c.CustomerID)
}

// firstClaim runs s until its first claim, stops it and returns the claim;
// the test fails with failMsg when ctx ends first.
func firstClaim(ctx context.Context, t *testing.T, s *schedule.Scheduler, failMsg string) schedule.Claim {
	t.Helper()
	got := make(chan schedule.Claim, 1)
	s.Cycle = func(_ context.Context, c schedule.Claim) string {
		select {
		case got <- c:
		default:
		}
		return "success"
	}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	var c schedule.Claim
	select {
	case c = <-got:
	case <-ctx.Done():
		t.Fatal(failMsg)
	}
	rcancel()
	require.NoError(t, <-done)
	return c
}

// A claim says how late it came by the database clock: a pair due 90 s
// ago (next_run_at set by the database) is 90 s late whatever the
// service's clock says.
func TestClaimLatenessByDatabaseClock(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store := customer.NewStore(db.Pool, keyring(t))
	require.NoError(t, store.Add(ctx, customer.New{ID: "acme", Token: "t"}))
	_, err := db.Pool.Exec(ctx, `UPDATE vomosync.schedules SET next_run_at = now() - interval '90 seconds'
		WHERE kind = 'poll' AND resource = 'users'`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `UPDATE vomosync.schedules SET next_run_at = now() + interval '1 hour'
		WHERE kind = 'poll' AND resource <> 'users'`)
	require.NoError(t, err)
	s := &schedule.Scheduler{DB: db.Pool, Owner: "p", Lease: 10 * time.Second, Tick: 20 * time.Millisecond, Concurrency: 1, Log: zerolog.Nop()}
	c := firstClaim(ctx, t, s, "due pair never claimed")
	require.Equal(t, "users", c.Resource)
	require.InDelta(t, 90, c.Late.Seconds(), 5)
}
