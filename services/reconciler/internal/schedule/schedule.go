// Package schedule shares due reconciliations (reconcile_daily and
// reconcile_full schedule rows) among reconciler replicas with leases, the
// way the poller shares poll rows: claimed with FOR UPDATE SKIP LOCKED,
// renewed while the run lasts, released with the next run time. A crashed
// replica's lease expires and another replica picks the run up.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/vomosync/vomosync/pkg/claimloop"
	"github.com/vomosync/vomosync/pkg/logging"
)

// Schedule kinds this package runs.
const (
	KindDaily = "reconcile_daily"
	KindFull  = "reconcile_full"
)

// Claim is one due run this replica now holds.
type Claim struct {
	CustomerID string
	Resource   string
	Kind       string
	DueAt      time.Time
	Cadence    time.Duration
}

// Outcome is what a run reports back; it sets the next run time.
type Outcome struct {
	Outcome string
	// Retry asks for an early retry (a walk that could not be trusted, a
	// failure): a weekly full run must not wait a week to try again.
	Retry bool
}

// RunFunc runs one claimed reconciliation. It calls alive whenever the run
// moves on; ctx ends when the run stalls (its cause then wraps ErrStalled),
// loses its lease or the scheduler stops.
type RunFunc func(ctx context.Context, c Claim, alive func()) Outcome

// ErrStalled is the cause of a run cancelled by the stall watchdog.
var ErrStalled = errors.New("run stalled")

// Scheduler claims due reconciliations and runs them with bounded concurrency.
type Scheduler struct {
	DB          *pgxpool.Pool
	Owner       string
	Lease       time.Duration
	Tick        time.Duration
	Concurrency int
	// RetryAfter is when a run asking for a retry runs again.
	RetryAfter time.Duration
	// StallTimeout cancels a run that has not called alive for this long
	// (0: never). The lease only proves the replica lives; a statement or a
	// call that hangs would renew it forever and the pair would never be
	// reconciled again. A stalled run fails and is retried after RetryAfter.
	StallTimeout time.Duration
	Do           RunFunc
	Log          zerolog.Logger
}

// Run claims and runs due reconciliations until ctx ends, then waits for the
// running ones (which see ctx cancelled and record themselves interrupted).
func (s *Scheduler) Run(ctx context.Context) error {
	if s.Concurrency <= 0 || s.Lease <= 0 || s.Tick <= 0 || s.Do == nil {
		return errors.New("schedule: Concurrency, Lease, Tick and Do are required")
	}
	// Leases still held under our id belong to a previous life of this
	// replica (killed mid-run): release them at once instead of leaving the
	// pair unreconciled until they expire.
	if _, err := s.DB.Exec(ctx, `UPDATE vomosync.schedules SET lease_owner = NULL, lease_until = NULL
		WHERE lease_owner = $1 AND kind IN ('reconcile_daily', 'reconcile_full')`, s.Owner); err != nil {
		return fmt.Errorf("release own leases: %w", err)
	}
	return claimloop.Run(ctx, claimloop.Options{Concurrency: s.Concurrency, Tick: s.Tick, What: "due reconciliations", Log: s.Log},
		s.claim, s.runOne)
}

// claimSQL takes due rows of active customers' enabled resources. A pair
// never runs two reconciliations at once: a row whose sibling kind holds a
// live lease waits (a full run covers what the daily one would).
const claimSQL = `
UPDATE vomosync.schedules s
SET lease_owner = $1, lease_until = now() + $2::interval, last_started_at = now()
FROM (
	SELECT sc.customer_id, sc.resource, sc.kind
	FROM vomosync.schedules sc
	JOIN vomosync.customers c ON c.id = sc.customer_id
	WHERE sc.kind IN ('reconcile_daily', 'reconcile_full') AND NOT sc.paused AND c.status = 'active'
	  AND sc.resource = ANY (c.resources)
	  AND sc.next_run_at <= now()
	  AND (sc.lease_until IS NULL OR sc.lease_until < now())
	  AND NOT EXISTS (
		SELECT 1 FROM vomosync.schedules o
		WHERE o.customer_id = sc.customer_id AND o.resource = sc.resource AND o.kind <> sc.kind
		  AND o.kind IN ('reconcile_daily', 'reconcile_full') AND o.lease_until > now())
	ORDER BY sc.kind = 'reconcile_full' DESC, sc.next_run_at
	LIMIT $3
	FOR UPDATE OF sc SKIP LOCKED
) due
WHERE s.customer_id = due.customer_id AND s.resource = due.resource AND s.kind = due.kind
RETURNING s.customer_id, s.resource, s.kind, s.next_run_at, extract(epoch FROM s.cadence)`

// claimLock serialises claims across replicas: SKIP LOCKED locks only the
// claimed row, so without it two replicas could take the two kinds of one
// pair at once. Claims are cheap and once a tick, so one lock is no bottleneck.
const claimLock = 0x7265636f6e // "recon"

func (s *Scheduler) claim(ctx context.Context, n int) ([]Claim, error) {
	var claims []Claim
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, claimLock); err != nil {
			return err
		}
		// A new statement, so its snapshot sees the previous claimer's leases.
		rows, err := tx.Query(ctx, claimSQL, s.Owner, s.Lease, n)
		if err != nil {
			return err
		}
		claims, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Claim, error) {
			var c Claim
			var secs float64
			err := r.Scan(&c.CustomerID, &c.Resource, &c.Kind, &c.DueAt, &secs)
			c.Cadence = time.Duration(secs * float64(time.Second))
			return c, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	// Two sibling rows of one pair claimed in the same statement: run the
	// full one, give the daily one back.
	full := map[string]bool{}
	for _, c := range claims {
		if c.Kind == KindFull {
			full[c.CustomerID+"/"+c.Resource] = true
		}
	}
	out := claims[:0]
	for _, c := range claims {
		if c.Kind == KindDaily && full[c.CustomerID+"/"+c.Resource] {
			s.release(ctx, c, "", 0)
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

func (s *Scheduler) runOne(ctx context.Context, c Claim) {
	log := s.Log.With().Str(logging.FCustomerID, c.CustomerID).Str(logging.FResource, c.Resource).Str("kind", c.Kind).Logger()
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Progress is measured on the monotonic clock (time since start), so a
	// wall-clock step cannot make every running run look stalled.
	start := time.Now()
	var last atomic.Int64 // time.Since(start) at the run's last sign of progress
	alive := func() { last.Store(int64(time.Since(start))) }
	every := s.Lease / 3
	if s.StallTimeout > 0 {
		every = min(every, s.StallTimeout/4)
	}
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-cctx.Done():
				return
			case <-t.C:
				if idle := time.Since(start) - time.Duration(last.Load()); s.StallTimeout > 0 && idle > s.StallTimeout {
					log.Error().Dur("idle", idle).Dur("stall_timeout", s.StallTimeout).Msg("run stalled; cancelling it")
					cancel(fmt.Errorf("%w: no progress for %s (RECONCILER_STALL_TIMEOUT %s)", ErrStalled, idle.Round(time.Second), s.StallTimeout))
					return
				}
				tag, err := s.DB.Exec(cctx, `UPDATE vomosync.schedules SET lease_until = now() + $5::interval
					WHERE customer_id = $1 AND resource = $2 AND kind = $3 AND lease_owner = $4`,
					c.CustomerID, c.Resource, c.Kind, s.Owner, s.Lease)
				if err == nil && tag.RowsAffected() == 0 {
					log.Warn().Msg("lease lost; stopping run")
					cancel(nil)
					return
				}
			}
		}
	}()
	out := s.Do(cctx, c, alive)
	stalled := errors.Is(context.Cause(cctx), ErrStalled)
	cancel(nil)
	<-renewDone
	if stalled {
		// Not an interruption to resume at once: it would likely hang again.
		out.Retry = true
		if out.Outcome == "interrupted" || out.Outcome == "" {
			out.Outcome = "failed"
		}
	}
	// Jitter (up to 1% of the cadence, at most 10 minutes) keeps customers
	// that share a cadence from drifting into one another.
	next := c.Cadence + time.Duration(rand.Int64N(int64(min(c.Cadence/100, 10*time.Minute))+1))
	switch {
	case out.Outcome == "interrupted":
		next = 0
	case out.Retry && s.RetryAfter > 0 && s.RetryAfter < next:
		next = s.RetryAfter
	}
	s.release(ctx, c, out.Outcome, next)
}

func (s *Scheduler) release(ctx context.Context, c Claim, outcome string, next time.Duration) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var err error
	if outcome == "" {
		_, err = s.DB.Exec(rctx, `UPDATE vomosync.schedules SET lease_owner = NULL, lease_until = NULL
			WHERE customer_id = $1 AND resource = $2 AND kind = $3 AND lease_owner = $4`,
			c.CustomerID, c.Resource, c.Kind, s.Owner)
	} else {
		_, err = s.DB.Exec(rctx, `UPDATE vomosync.schedules
			SET lease_owner = NULL, lease_until = NULL, last_finished_at = now(), last_outcome = $5,
			    next_run_at = now() + $6::interval
			WHERE customer_id = $1 AND resource = $2 AND kind = $3 AND lease_owner = $4`,
			c.CustomerID, c.Resource, c.Kind, s.Owner, outcome, next)
	}
	if err != nil {
		s.Log.Error().Err(err).Str(logging.FCustomerID, c.CustomerID).Str(logging.FResource, c.Resource).Msg("release lease")
	}
}
