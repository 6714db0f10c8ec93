package budget

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// Background is a limiter on the same per-customer bucket as Budget that
// only takes a request while at least Reserve requests would stay in it.
// Pollers take down to zero, so whenever both wait for the refill the poller
// wins: background work (reconciliation) runs on what polling leaves and can
// never starve it, and together they never exceed the customer's budget.
type Background struct {
	b       *Budget
	reserve float64
	// OnWait, when set, is told how long each Wait blocked (metrics).
	OnWait func(time.Duration)
}

// Background returns a lower-priority limiter on b's bucket that keeps
// reserve requests for other callers. reserve is clamped to [0, burst-1] so
// the bucket can always satisfy it.
func (b *Budget) Background(reserve float64) *Background {
	return &Background{b: b, reserve: min(max(reserve, 0), b.burst-1)}
}

// Reserve is the number of requests left in the bucket for other callers.
func (g *Background) Reserve() float64 { return g.reserve }

const takeAbove = `UPDATE vomosync.api_budgets
	SET tokens = least($2, tokens + greatest(0, extract(epoch FROM clock_timestamp() - refilled_at)) * $3 / 60.0) - 1,
	    refilled_at = clock_timestamp()
	WHERE customer_id = $1
	  AND least($2, tokens + greatest(0, extract(epoch FROM clock_timestamp() - refilled_at)) * $3 / 60.0) >= 1 + $4
	RETURNING tokens`

// Wait takes one request from the bucket once more than Reserve are
// available, blocking until then or until ctx ends.
func (g *Background) Wait(ctx context.Context) error {
	b := g.b
	if b.perMinute < 0 {
		return nil
	}
	start := time.Now()
	defer func() {
		if g.OnWait != nil {
			g.OnWait(time.Since(start))
		}
	}()
	for {
		var left float64
		err := b.db.QueryRow(ctx, takeAbove, b.customer, b.burst, b.perMinute, g.reserve).Scan(&left)
		if err == nil {
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("budget of %s: %w", b.customer, err)
		}
		var avail float64
		err = b.db.QueryRow(ctx, peek, b.customer, b.burst, b.perMinute).Scan(&avail)
		if errors.Is(err, pgx.ErrNoRows) {
			if _, err := b.db.Exec(ctx, `INSERT INTO vomosync.api_budgets (customer_id, tokens) VALUES ($1, $2) ON CONFLICT DO NOTHING`, b.customer, b.burst); err != nil {
				return fmt.Errorf("budget of %s: %w", b.customer, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("budget of %s: %w", b.customer, err)
		}
		if b.perMinute == 0 {
			return fmt.Errorf("budget of %s is zero requests a minute", b.customer)
		}
		wait := time.Duration(max(1+g.reserve-avail, 0.05) * 60 / b.perMinute * float64(time.Second))
		// More jitter than the poller's: background work should lose the race.
		wait += time.Duration(rand.Int64N(int64(50 * time.Millisecond)))
		select {
		case <-ctx.Done():
			return fmt.Errorf("budget of %s: %w", b.customer, ctx.Err())
		case <-time.After(wait):
		}
	}
}
