// Package budget is the per-customer VOMO request budget: a token bucket kept
// in Postgres, so every process calling VOMO with one customer's token (all
// poller replicas and the reconciler) draws from the same bucket.
package budget

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DBTX is what the budget needs of a pool.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Budget implements the VOMO client's Limiter for one customer.
type Budget struct {
	db        DBTX
	customer  string
	perMinute float64
	burst     float64
	// OnWait, when set, is told how long each Wait blocked (metrics).
	OnWait func(time.Duration)
}

// New returns the shared budget of customer. perMinute < 0 means unlimited.
func New(db DBTX, customer string, perMinute, burst int) *Budget {
	return &Budget{db: db, customer: customer, perMinute: float64(perMinute), burst: float64(max(burst, 1))}
}

const take = `UPDATE vomosync.api_budgets
	SET tokens = least($2, tokens + greatest(0, extract(epoch FROM clock_timestamp() - refilled_at)) * $3 / 60.0) - 1,
	    refilled_at = clock_timestamp()
	WHERE customer_id = $1
	  AND least($2, tokens + greatest(0, extract(epoch FROM clock_timestamp() - refilled_at)) * $3 / 60.0) >= 1
	RETURNING tokens`

const peek = `SELECT least($2, tokens + greatest(0, extract(epoch FROM clock_timestamp() - refilled_at)) * $3 / 60.0)
	FROM vomosync.api_budgets WHERE customer_id = $1`

// Wait takes one request from the bucket, blocking until one is available
// or ctx ends.
func (b *Budget) Wait(ctx context.Context) error {
	if b.perMinute < 0 {
		return nil
	}
	start := time.Now()
	defer func() {
		if b.OnWait != nil {
			b.OnWait(time.Since(start))
		}
	}()
	for {
		var left float64
		err := b.db.QueryRow(ctx, take, b.customer, b.burst, b.perMinute).Scan(&left)
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
		wait := time.Duration((1 - avail) * 60 / b.perMinute * float64(time.Second))
		// Jitter keeps several waiters from hitting the row at the same instant.
		wait += time.Duration(rand.Int64N(int64(20 * time.Millisecond)))
		select {
		case <-ctx.Done():
			return fmt.Errorf("budget of %s: %w", b.customer, ctx.Err())
		case <-time.After(wait):
		}
	}
}
