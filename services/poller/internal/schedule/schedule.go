// Package schedule shares due (customer, resource) pairs among poller
// replicas with leases: a pair is claimed with FOR UPDATE SKIP LOCKED, its
// lease renewed while the cycle runs, and released with the next run time.
// A crashed replica's lease expires and another replica picks the pair up.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/vomosync/vomosync/pkg/claimloop"
	"github.com/vomosync/vomosync/pkg/logging"
	"github.com/vomosync/vomosync/pkg/metrics"
)

// Claim is one pair this replica now holds.
type Claim struct {
	CustomerID string
	Resource   string
	DueAt      time.Time
	Cadence    time.Duration
	// Late is how long after DueAt the claim came, by the database clock
	// (the one next_run_at was set by), so no service clock skews it.
	Late time.Duration
}

// RunFunc runs one cycle of a claimed pair and returns its outcome.
type RunFunc func(ctx context.Context, c Claim) (outcome string)

// Scheduler claims due pairs and runs them with bounded concurrency.
type Scheduler struct {
	DB          *pgxpool.Pool
	Owner       string
	Lease       time.Duration
	Tick        time.Duration
	Concurrency int
	Cycle       RunFunc
	Metrics     *metrics.Poller
	Log         zerolog.Logger
}

// Run claims and runs due pairs until ctx ends, then waits for running
// cycles (which see ctx cancelled and record themselves as interrupted).
func (s *Scheduler) Run(ctx context.Context) error {
	if s.Concurrency <= 0 || s.Lease <= 0 || s.Tick <= 0 || s.Cycle == nil {
		return errors.New("schedule: Concurrency, Lease, Tick and Cycle are required")
	}
	// Leases still held under our id belong to a previous life of this
	// replica (ids are unique among live replicas): release them at once
	// instead of waiting for them to expire.
	if _, err := s.DB.Exec(ctx, `UPDATE vomosync.schedules SET lease_owner = NULL, lease_until = NULL
		WHERE lease_owner = $1 AND kind = 'poll'`, s.Owner); err != nil {
		return fmt.Errorf("release own leases: %w", err)
	}
	var lastObserved time.Time
	return claimloop.Run(ctx, claimloop.Options{Concurrency: s.Concurrency, Tick: s.Tick, What: "due pairs", Log: s.Log,
		AfterRound: func(ctx context.Context) {
			if time.Since(lastObserved) > 5*time.Second {
				// Counting due pairs scans the due index: every few seconds is
				// enough for a scaling signal.
				s.observeDue(ctx)
				lastObserved = time.Now()
			}
		}}, s.claim, s.runOne)
}

const claimSQL = `
UPDATE vomosync.schedules s
SET lease_owner = $1, lease_until = now() + $2::interval, last_started_at = now()
FROM (
	SELECT sc.customer_id, sc.resource, sc.kind
	FROM vomosync.schedules sc
	JOIN vomosync.customers c ON c.id = sc.customer_id
	WHERE sc.kind = 'poll' AND NOT sc.paused AND c.status = 'active'
	  AND sc.resource = ANY (c.resources)
	  AND sc.next_run_at <= now()
	  AND (sc.lease_until IS NULL OR sc.lease_until < now())
	ORDER BY sc.next_run_at
	LIMIT $3
	FOR UPDATE OF sc SKIP LOCKED
) due
WHERE s.customer_id = due.customer_id AND s.resource = due.resource AND s.kind = due.kind
RETURNING s.customer_id, s.resource, s.next_run_at, extract(epoch FROM s.cadence),
	extract(epoch FROM greatest(now() - s.next_run_at, '0'::interval))`

func (s *Scheduler) claim(ctx context.Context, n int) ([]Claim, error) {
	rows, err := s.DB.Query(ctx, claimSQL, s.Owner, s.Lease, n)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Claim, error) {
		var c Claim
		var secs, late float64
		err := r.Scan(&c.CustomerID, &c.Resource, &c.DueAt, &secs, &late)
		c.Cadence = time.Duration(secs * float64(time.Second))
		c.Late = time.Duration(late * float64(time.Second))
		return c, err
	})
}

func (s *Scheduler) runOne(ctx context.Context, c Claim) {
	if s.Metrics != nil {
		s.Metrics.DueDelay.Observe(c.Late.Seconds())
		s.Metrics.Cadence.WithLabelValues(c.CustomerID, c.Resource).Set(c.Cadence.Seconds())
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Renew the lease while the cycle runs; losing it stops the cycle, and
	// the checkpoint transaction re-checks ownership (fencing).
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		t := time.NewTicker(s.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-cctx.Done():
				return
			case <-t.C:
				tag, err := s.DB.Exec(cctx, `UPDATE vomosync.schedules SET lease_until = now() + $4::interval
					WHERE customer_id = $1 AND resource = $2 AND kind = 'poll' AND lease_owner = $3`,
					c.CustomerID, c.Resource, s.Owner, s.Lease)
				if err == nil && tag.RowsAffected() == 0 {
					s.Log.Warn().Str(logging.FCustomerID, c.CustomerID).Str(logging.FResource, c.Resource).Msg("lease lost; stopping cycle")
					cancel()
					return
				}
			}
		}
	}()
	outcome := s.Cycle(cctx, c)
	cancel()
	<-renewDone
	// After downtime the next run is one cadence from now, not a burst of
	// missed runs: the next cycle covers the whole window. Jitter (up to 10%
	// of the cadence, at most a minute) spreads customers that share a cadence.
	jitter := time.Duration(rand.Int64N(int64(min(c.Cadence/10, time.Minute)) + 1))
	next := c.Cadence + jitter
	if outcome == "interrupted" {
		next = 0
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer rcancel()
	_, err := s.DB.Exec(rctx, `UPDATE vomosync.schedules
		SET lease_owner = NULL, lease_until = NULL, last_finished_at = now(), last_outcome = $4,
		    next_run_at = now() + $5::interval
		WHERE customer_id = $1 AND resource = $2 AND kind = 'poll' AND lease_owner = $3`,
		c.CustomerID, c.Resource, s.Owner, outcome, next)
	if err != nil {
		s.Log.Error().Err(err).Str(logging.FCustomerID, c.CustomerID).Str(logging.FResource, c.Resource).Msg("release lease")
	}
}

func (s *Scheduler) observeDue(ctx context.Context) {
	if s.Metrics == nil {
		return
	}
	var n int
	err := s.DB.QueryRow(ctx, `SELECT count(*) FROM vomosync.schedules sc JOIN vomosync.customers c ON c.id = sc.customer_id
		WHERE sc.kind = 'poll' AND NOT sc.paused AND c.status = 'active' AND sc.resource = ANY (c.resources)
		  AND sc.next_run_at <= now() AND (sc.lease_until IS NULL OR sc.lease_until < now())`).Scan(&n)
	if err == nil {
		s.Metrics.DuePairs.Set(float64(n))
	}
}
