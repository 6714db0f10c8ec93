package schedule_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/pkg/secrets"
	"github.com/vomosync/vomosync/services/reconciler/internal/schedule"
)

type bundle struct {
	ctx context.Context
	db  *pgtest.DB
}

func setup(t *testing.T, customers ...string) *bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	db := pgtest.New(t)
	kek := sha256.Sum256([]byte(t.Name()))
	keys, err := secrets.NewKeyring(base64.StdEncoding.EncodeToString(kek[:]))
	require.NoError(t, err)
	st := customer.NewStore(db.Pool, keys)
	for _, c := range customers {
		require.NoError(t, st.Add(ctx, customer.New{ID: c, Token: "t-" + c, Resources: []string{customer.Users, customer.Groups}}))
	}
	return &bundle{ctx: ctx, db: db}
}

func (b *bundle) due(t *testing.T, cust, resource, kind string) {
	t.Helper()
	_, err := b.db.Pool.Exec(b.ctx, `UPDATE vomosync.schedules SET next_run_at = now() - interval '1 minute'
		WHERE customer_id = $1 AND resource = $2 AND kind = $3`, cust, resource, kind)
	require.NoError(t, err)
}

// Two replicas share the due runs: each runs once, a pair never runs two
// kinds at once (the full run wins), and the next run is one cadence away;
// a run that asks for a retry comes back after RetryAfter.
func TestReplicasShareDueRuns(t *testing.T) {
	t.Parallel()
	b := setup(t, "acme", "beta")
	b.due(t, "acme", "users", schedule.KindFull)
	b.due(t, "acme", "users", schedule.KindDaily)
	b.due(t, "beta", "users", schedule.KindDaily)
	b.due(t, "beta", "groups", schedule.KindFull)

	var mu sync.Mutex
	ran := map[schedule.Claim]int{}
	running := map[string]string{}
	overlap := false
	do := func(ctx context.Context, c schedule.Claim, _ func()) schedule.Outcome {
		pair := c.CustomerID + "/" + c.Resource
		mu.Lock()
		if running[pair] != "" {
			overlap = true
		}
		running[pair] = c.Kind
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		delete(running, pair)
		ran[schedule.Claim{CustomerID: c.CustomerID, Resource: c.Resource, Kind: c.Kind}]++
		mu.Unlock()
		if c.CustomerID == "beta" && c.Resource == "groups" {
			return schedule.Outcome{Outcome: "untrusted", Retry: true}
		}
		return schedule.Outcome{Outcome: "success"}
	}
	ctx, cancel := context.WithCancel(b.ctx)
	var wg sync.WaitGroup
	for _, owner := range []string{"r1", "r2"} {
		s := &schedule.Scheduler{DB: b.db.Pool, Owner: owner, Lease: 10 * time.Second, Tick: 20 * time.Millisecond,
			Concurrency: 2, RetryAfter: time.Hour, Do: do, Log: zerolog.Nop()}
		wg.Add(1)
		go func() { defer wg.Done(); require.NoError(t, s.Run(ctx)) }()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(ran)
		mu.Unlock()
		if n == 4 {
			break
		}
		require.False(t, time.Now().After(deadline), "runs: %v", ran)
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	for c, n := range ran {
		require.Equal(t, 1, n, "%v ran once", c)
	}
	require.False(t, overlap, "a pair never runs two reconciliations at once")

	next := func(cust, resource, kind string) time.Duration {
		var d float64
		var owner *string
		require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT extract(epoch FROM next_run_at - now()), lease_owner FROM vomosync.schedules
			WHERE customer_id = $1 AND resource = $2 AND kind = $3`, cust, resource, kind).Scan(&d, &owner))
		require.Nil(t, owner, "lease released")
		return time.Duration(d * float64(time.Second))
	}
	require.InDelta(t, (7 * 24 * time.Hour).Hours(), next("acme", "users", schedule.KindFull).Hours(), 2)
	require.InDelta(t, 24, next("beta", "users", schedule.KindDaily).Hours(), 0.5)
	require.InDelta(t, 1, next("beta", "groups", schedule.KindFull).Hours(), 0.1, "retry after an untrusted walk")
}

// A run that keeps reporting progress lives past the stall timeout; once it
// stops (a hung statement, say), the watchdog cancels it with ErrStalled
// although its lease is renewed, and the pair is failed and retried after
// RetryAfter, not at once.
func TestStalledRunIsCancelledAndRetriedLater(t *testing.T) {
	t.Parallel()
	b := setup(t, "acme")
	b.due(t, "acme", "users", schedule.KindFull)

	const stall = 400 * time.Millisecond
	type end struct {
		cause    error
		aliveFor time.Duration
	}
	ended := make(chan end, 1)
	do := func(ctx context.Context, c schedule.Claim, alive func()) schedule.Outcome {
		start := time.Now()
		for time.Since(start) < 3*stall { // progress, for longer than the timeout
			alive()
			time.Sleep(stall / 8)
		}
		aliveFor := time.Since(start)
		<-ctx.Done() // then nothing: hung
		ended <- end{cause: context.Cause(ctx), aliveFor: aliveFor}
		return schedule.Outcome{Outcome: "interrupted"}
	}
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	s := &schedule.Scheduler{DB: b.db.Pool, Owner: "r1", Lease: 10 * time.Second, Tick: 20 * time.Millisecond,
		Concurrency: 1, RetryAfter: time.Hour, StallTimeout: stall, Do: do, Log: zerolog.Nop()}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	var e end
	select {
	case e = <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the stalled run was never cancelled")
	}
	require.ErrorIs(t, e.cause, schedule.ErrStalled)
	require.GreaterOrEqual(t, e.aliveFor, 3*stall, "a run reporting progress is not cancelled")

	// The release follows the run's return.
	var outcome string
	var d float64
	require.Eventually(t, func() bool {
		var owner *string
		require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT coalesce(last_outcome, ''), extract(epoch FROM next_run_at - now()), lease_owner
			FROM vomosync.schedules WHERE customer_id = 'acme' AND resource = 'users' AND kind = $1`, schedule.KindFull).
			Scan(&outcome, &d, &owner))
		return owner == nil && outcome != ""
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "failed", outcome, "a stalled run is a failure, not an interruption")
	require.InDelta(t, 1, d/3600, 0.1, "retried after RetryAfter, not at once")
	cancel()
	require.NoError(t, <-done)
}
