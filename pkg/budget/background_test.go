package budget_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/budget"
	"github.com/vomosync/vomosync/pkg/pgtest"
)

// A background caller and a foreground caller hammering one bucket: together
// they stay within burst + rate × elapsed, and the foreground caller gets the
// larger share because the background one leaves a reserve.
func TestBackgroundYieldsToForeground(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `INSERT INTO vomosync.customers (id, token_ciphertext, token_wrapped_key, kek_id) VALUES ('acme', '', '', 'k')`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO vomosync.api_budgets (customer_id, tokens) VALUES ('acme', 1e9)`)
	require.NoError(t, err)

	const perMinute, burst = 1200, 6 // 20/s
	fg := budget.New(db.Pool, "acme", perMinute, burst)
	bg := budget.New(db.Pool, "acme", perMinute, burst).Background(3)
	require.InDelta(t, 3, bg.Reserve(), 0.001)
	var fgN, bgN atomic.Int64
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for fg.Wait(rctx) == nil {
			fgN.Add(1)
		}
	}()
	go func() {
		defer wg.Done()
		for bg.Wait(rctx) == nil {
			bgN.Add(1)
		}
	}()
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	limit := float64(burst) + elapsed*perMinute/60 + 1
	total := float64(fgN.Load() + bgN.Load())
	require.LessOrEqual(t, total, limit, "took %v in %.2fs", total, elapsed)
	require.Greater(t, fgN.Load(), bgN.Load(), "foreground keeps priority (fg %d, bg %d)", fgN.Load(), bgN.Load())
}

// Alone, a background caller still progresses at the full rate above its reserve.
func TestBackgroundAloneProgresses(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `INSERT INTO vomosync.customers (id, token_ciphertext, token_wrapped_key, kek_id) VALUES ('acme', '', '', 'k')`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO vomosync.api_budgets (customer_id, tokens) VALUES ('acme', 1e9)`)
	require.NoError(t, err)
	bg := budget.New(db.Pool, "acme", 1200, 4).Background(100) // clamped to burst-1
	require.InDelta(t, 3, bg.Reserve(), 0.001)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for range 5 {
		require.NoError(t, bg.Wait(rctx))
	}
}
