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

// Two budgets for one customer (as in two processes) never exceed the shared
// rate: burst plus rate × elapsed.
func TestSharedBucketBoundsTwoCallers(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `INSERT INTO vomosync.customers (id, token_ciphertext, token_wrapped_key, kek_id) VALUES ('acme', '', '', 'k')`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO vomosync.api_budgets (customer_id, tokens) VALUES ('acme', 1e9)`)
	require.NoError(t, err)

	const perMinute, burst = 600, 5 // 10/s
	a := budget.New(db.Pool, "acme", perMinute, burst)
	b := budget.New(db.Pool, "acme", perMinute, burst)
	var taken atomic.Int64
	rctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for _, bg := range []*budget.Budget{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for bg.Wait(rctx) == nil {
				taken.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	limit := float64(burst) + elapsed*perMinute/60 + 1
	require.LessOrEqual(t, float64(taken.Load()), limit, "took %d in %.2fs", taken.Load(), elapsed)
	require.GreaterOrEqual(t, taken.Load(), int64(burst), "both callers make progress")
}

func TestUnlimited(t *testing.T) {
	t.Parallel()
	b := budget.New(nil, "x", -1, 0)
	for range 1000 {
		require.NoError(t, b.Wait(context.Background()))
	}
}
