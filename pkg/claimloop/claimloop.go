// Package claimloop is the loop the lease-based schedulers share (the
// poller's and the reconciler's): claim as much due work as there is room
// for, run each claim in its own goroutine, claim again at once while a
// backlog fills every slot, otherwise wait a tick. What is claimed, and how,
// stays with each scheduler.
package claimloop

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Options configure Run.
type Options struct {
	// Concurrency is how many claims run at once.
	Concurrency int
	// Tick is the wait between claim rounds when no backlog is left.
	Tick time.Duration
	// What names the work in the claim-error log line ("due pairs").
	What string
	Log  zerolog.Logger
	// AfterRound, if set, runs after every claim round (a scheduler's
	// gauges; it throttles itself).
	AfterRound func(ctx context.Context)
}

// Run claims with claim (asking for at most n) and runs each claim with run
// until ctx ends, then waits for the running ones, which see ctx cancelled.
// A failed claim round is logged and tried again a tick later.
func Run[T any](ctx context.Context, o Options, claim func(ctx context.Context, n int) ([]T, error), run func(ctx context.Context, c T)) error {
	if o.Concurrency <= 0 || o.Tick <= 0 || claim == nil || run == nil {
		return errors.New("claimloop: Concurrency, Tick, claim and run are required")
	}
	sem := make(chan struct{}, o.Concurrency)
	freed := make(chan struct{}, 1) // a slot came free
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var wake <-chan struct{} // freed while every slot is busy, else nil
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-wake:
			timer.Stop() // Go ≥ 1.23: no stale tick is delivered after Stop
		}
		free := o.Concurrency - len(sem)
		claimed := 0
		if free > 0 {
			claims, err := claim(ctx, free)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				o.Log.Error().Err(err).Msg("claim " + o.What)
			}
			claimed = len(claims)
			for _, c := range claims {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() {
						<-sem
						select {
						case freed <- struct{}{}:
						default:
						}
					}()
					run(ctx, c)
				}()
			}
		}
		if o.AfterRound != nil {
			o.AfterRound(ctx)
		}
		// Claim again at once while there is a backlog and room; with
		// every slot busy, as soon as one comes free; else after a tick.
		wake = nil
		if free <= 0 {
			wake = freed
		}
		if claimed > 0 && claimed == free {
			timer.Reset(time.Millisecond)
		} else {
			timer.Reset(o.Tick)
		}
	}
}
