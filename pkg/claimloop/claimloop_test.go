package claimloop_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/claimloop"
)

// A backlog is drained without waiting a tick between rounds, never more
// than Concurrency at once, and Run returns only after running claims end.
func TestRunDrainsBacklogWithinConcurrency(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	backlog := 100
	var running, peak, done atomic.Int32
	claim := func(_ context.Context, n int) ([]int, error) {
		mu.Lock()
		defer mu.Unlock()
		k := min(n, backlog)
		backlog -= k
		return make([]int, k), nil
	}
	run := func(context.Context, int) {
		r := running.Add(1)
		for p := peak.Load(); r > p && !peak.CompareAndSwap(p, r); p = peak.Load() {
		}
		time.Sleep(time.Millisecond)
		running.Add(-1)
		done.Add(1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	// A tick of an hour: only the backlog rule can drain 100 claims.
	go func() {
		errc <- claimloop.Run(ctx, claimloop.Options{Concurrency: 4, Tick: time.Hour, Log: zerolog.Nop()}, claim, run)
	}()
	require.Eventually(t, func() bool { return done.Load() == 100 }, 10*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-errc)
	require.LessOrEqual(t, peak.Load(), int32(4))
	require.Zero(t, running.Load())
}

// A failing claim round is retried a tick later; the loop keeps going.
func TestRunRetriesAfterClaimError(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	claim := func(context.Context, int) ([]int, error) {
		if calls.Add(1) < 3 {
			return nil, errors.New("database away")
		}
		return nil, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- claimloop.Run(ctx, claimloop.Options{Concurrency: 1, Tick: time.Millisecond, What: "work", Log: zerolog.Nop()},
			claim, func(context.Context, int) {})
	}()
	require.Eventually(t, func() bool { return calls.Load() >= 5 }, 5*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-errc)
	require.Error(t, claimloop.Run(ctx, claimloop.Options{}, claim, func(context.Context, int) {}))
}
