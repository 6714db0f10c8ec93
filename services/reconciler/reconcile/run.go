package reconcile

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/vomosync/vomosync/pkg/checkpoint"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/vomo"
)

// run does the work of Run; res is filled as it goes.
func (r *Reconciler) run(ctx context.Context, req Request, cust customer.Customer, res *RunResult) error {
	eff := cust.Settings.Effective()
	src, err := r.source(ctx, cust)
	if err != nil {
		return err
	}
	cp, err := checkpoint.Get(ctx, r.DB, cust.ID, req.Resource)
	switch {
	case errors.Is(err, checkpoint.ErrNotFound):
		cp.Position = checkpoint.Epoch
		res.note("no checkpoint: nothing has been handed on, so every source record is pending")
	case err != nil:
		return err
	}
	res.Horizon = cp.Position
	if r.JS != nil {
		if n := r.settle(ctx, cust.ID, req.Resource); n != "" {
			res.note("%s", n)
		}
	}

	conn, err := r.DB.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	s, err := newSession(ctx, conn.Conn(), cust.ID, req.Resource, res, r.batchSize(), eff.Reconcile.SampleSize)
	if err != nil {
		return err
	}
	defer s.close()

	q := url.Values{}
	if !req.Full {
		window := req.Window
		if window <= 0 {
			window = eff.Reconcile.DailyWindow.D()
		}
		now, err := serverNow(ctx, src)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			res.Trusted, res.Untrusted = false, "the API's clock could not be read: "+err.Error()
			return fmt.Errorf("%w: %w", ErrUntrustedWalk, err)
		}
		res.WindowFrom = now.Add(-window).UTC().Truncate(time.Second)
		q.Set("updated_after", res.WindowFrom.Format(time.RFC3339))
	}
	walked, total := 0, 0
	stats, walkErr := src.Walk(ctx, "/"+req.Resource, q, func(ctx context.Context, p vomo.Page) error {
		if res.WindowTo.IsZero() {
			res.WindowTo = p.ServerTime.UTC()
		}
		total = p.Meta.Total
		for _, rec := range p.Records {
			if err := s.add(ctx, rec); err != nil {
				return localError{err}
			}
		}
		walked += len(p.Records)
		alive(ctx)
		if req.Progress != nil {
			req.Progress(walked, max(total, walked))
		}
		return nil
	})
	res.Requests += stats.Requests
	if walkErr == nil {
		walkErr = localErr(s.flush(ctx))
	}
	var local localError
	if walkErr != nil && (ctx.Err() != nil || errors.As(walkErr, &local)) {
		// Our own failure (database, cancellation), not the source's.
		return walkErr
	}
	if res.WindowTo.IsZero() {
		res.WindowTo = src.ServerNow().UTC()
	}
	if walkErr != nil {
		// Keep what was compared (those records exist at the source), infer
		// nothing from what was not seen.
		if ferr := s.flush(ctx); ferr != nil {
			return ferr
		}
		res.Trusted, res.Untrusted = false, walkErr.Error()
		walkErr = fmt.Errorf("%w: %w", ErrUntrustedWalk, walkErr)
	} else if !stats.Trusted {
		res.Trusted, res.Untrusted = false, "the list changed under the walk: "+stats.Reason
	}
	if res.SourceRecords, err = s.sourceRecords(ctx); err != nil {
		return err
	}
	alive(ctx)

	if req.Full && res.Trusted {
		if err := s.deletions(ctx, src, res.WindowTo, r.confirmDeletes()); err != nil {
			return err
		}
	}
	if !res.Trusted {
		if err := s.addUntrusted(ctx, res.Untrusted); err != nil {
			return err
		}
	}
	alive(ctx)
	if n, err := s.reverify(ctx); err != nil {
		return err
	} else if n > 0 {
		res.note("%d candidate gaps reached the destination during the run", n)
	}
	if err := r.checkDrift(ctx, src, s); err != nil {
		return err
	}
	alive(ctx)
	if req.Full {
		// After every other comparison: a record with another gap is
		// repaired by that gap's event, which overwrites its row too.
		if err := s.destinationDrift(ctx, eff); err != nil {
			return err
		}
	}
	alive(ctx)
	if err := s.record(ctx); err != nil {
		return err
	}
	if err := r.expected(ctx, req.Full, res); err != nil {
		return err
	}
	if res.Expected > 0 {
		res.GapRate = float64(res.Actionable()) / float64(res.Expected)
	}
	if res.Mode == ModeRepair {
		if res.Actionable() > 0 {
			if err := r.decideHold(ctx, req, eff, res); err != nil {
				return err
			}
		}
		// Without gaps a repair still re-drives dead letters whose cause cleared.
		if !res.Held {
			if err := r.repair(ctx, s, res); err != nil {
				return err
			}
		}
	}
	return walkErr
}

// serverNow is the API's clock: before its first response a client knows
// only the local one, which may be skewed, and the window is compared with
// the API's updated_at values.
func serverNow(ctx context.Context, src Source) (time.Time, error) {
	if s, ok := src.(interface {
		SyncClock(ctx context.Context) error
	}); ok {
		if err := s.SyncClock(ctx); err != nil {
			return time.Time{}, err
		}
	}
	return src.ServerNow(), nil
}

// localError marks a failure of the comparison itself inside the walk
// callback, so it is not mistaken for a source walk problem.
type localError struct{ error }

func (e localError) Unwrap() error { return e.error }

func localErr(err error) error {
	if err == nil {
		return nil
	}
	return localError{err}
}

// expected sets the gap-rate denominator: what the source lists on a full
// run; on an incremental run the records the destination holds, so a quiet
// day with one late write does not look like a 50% gap rate.
func (r *Reconciler) expected(ctx context.Context, full bool, res *RunResult) error {
	if full {
		res.Expected = res.SourceRecords
		return nil
	}
	var live int
	err := r.DB.QueryRow(ctx, `SELECT count(*) FROM vomosync.sync_state WHERE customer_id = $1 AND resource = $2 AND NOT deleted`,
		res.CustomerID, res.Resource).Scan(&live)
	if err != nil {
		return fmt.Errorf("count destination records: %w", err)
	}
	res.Expected = max(live, res.Compared)
	return nil
}

type aliveKey struct{}

// withAlive carries the run's liveness callback (Request.Alive) to the
// steps that report progress.
func withAlive(ctx context.Context, f func()) context.Context {
	if f == nil {
		return ctx
	}
	return context.WithValue(ctx, aliveKey{}, f)
}

// alive tells the stall watchdog, if any, that the run has moved on.
func alive(ctx context.Context) {
	if f, _ := ctx.Value(aliveKey{}).(func()); f != nil {
		f()
	}
}
