package destination

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"
)

// DryRun applies nothing and remembers the ops it was given. With Limit 0
// (replay of a bounded window) it keeps them all and answers ErrStale for a
// version not newer than one it already saw, as a real destination would;
// with a Limit (a customer configured dry_run, running for ever) it keeps
// only the newest Limit ops and answers every op as applied.
type DryRun struct {
	Limit int
	// OnOp, when set, is called for every op (replay prints them).
	OnOp func(Op)

	mu     sync.Mutex
	ops    []Op
	newest map[[3]string]Op
}

// Apply implements Destination.
func (d *DryRun) Apply(_ context.Context, _ pgx.Tx, ops []Op) ([]error, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.newest == nil {
		d.newest = map[[3]string]Op{}
	}
	res := make([]error, len(ops))
	for i, op := range ops {
		k := [3]string{op.CustomerID, op.Resource, op.ExternalID}
		if prev, ok := d.newest[k]; ok && !prev.SourceUpdatedAt.Before(op.SourceUpdatedAt) {
			res[i] = ErrStale
			continue
		}
		if d.Limit == 0 {
			d.newest[k] = op
		}
		d.ops = append(d.ops, op)
		if d.Limit > 0 && len(d.ops) > d.Limit {
			d.ops = d.ops[len(d.ops)-d.Limit:]
		}
		if d.OnOp != nil {
			d.OnOp(op)
		}
	}
	return res, nil
}

// Ops returns a copy of the ops applied so far, in order.
func (d *DryRun) Ops() []Op {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Op(nil), d.ops...)
}
