package vomo

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// TokenBucket is an in-process Limiter: perMinute requests a minute with
// bursts of burst. One bucket shared by every client of a customer in this
// process keeps them inside the customer's budget; across processes use the
// Postgres-backed budget (pkg/budget), which implements the same interface.
type TokenBucket struct {
	l *rate.Limiter
	// OnWait, when set, is told how long each Wait blocked.
	OnWait func(time.Duration)
}

// NewTokenBucket returns a bucket refilling perMinute tokens a minute,
// holding at most burst (at least 1). perMinute <= 0 means unlimited.
func NewTokenBucket(perMinute float64, burst int) *TokenBucket {
	if perMinute <= 0 {
		return &TokenBucket{l: rate.NewLimiter(rate.Inf, 1)}
	}
	return &TokenBucket{l: rate.NewLimiter(rate.Limit(perMinute/60), max(burst, 1))}
}

// Wait blocks until a request may be sent or ctx ends.
func (b *TokenBucket) Wait(ctx context.Context) error {
	start := time.Now()
	err := b.l.Wait(ctx)
	if b.OnWait != nil {
		b.OnWait(time.Since(start))
	}
	if err != nil {
		return fmt.Errorf("token bucket: %w", err)
	}
	return nil
}
