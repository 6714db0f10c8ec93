package harness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/services/vomosim/sim"
	"github.com/vomosync/vomosync/tests/chaos/checker"
)

// Workload is what a scenario's source does: Customers customers of Users
// users each; during Duration, UpdateFrac of the users are updated,
// DeleteFrac hard-deleted and CreateFrac created, spread evenly.
type Workload struct {
	Customers  int
	Users      int
	UpdateFrac float64
	DeleteFrac float64
	CreateFrac float64
	Duration   time.Duration
}

// String describes the workload in one line.
func (w Workload) String() string {
	return fmt.Sprintf("%d customers × %d users, %.0f%% updated, %.0f%% deleted, %.0f%% created over %s",
		w.Customers, w.Users, 100*w.UpdateFrac, 100*w.DeleteFrac, 100*w.CreateFrac, w.Duration)
}

// ChurnStats counts the changes applied.
type ChurnStats struct {
	Updates, Deletes, Creates int
}

// Churn applies the workload's changes to one customer, evenly over
// Duration, choosing records with a generator seeded by seed. It returns
// when done or when ctx ends.
func Churn(ctx context.Context, s *sim.Sim, customerID string, w Workload, seed uint64) (ChurnStats, error) {
	var st ChurnStats
	rng := rand.New(rand.NewPCG(seed, uint64(len(customerID))+7))
	truth, err := s.Truth(customerID, customer.Users)
	if err != nil {
		return st, err
	}
	ids := make([]string, 0, len(truth))
	for _, r := range truth {
		ids = append(ids, r.ID)
	}
	nu := int(float64(w.Users) * w.UpdateFrac)
	nd := int(float64(w.Users) * w.DeleteFrac)
	nc := int(float64(w.Users) * w.CreateFrac)
	ops := make([]byte, 0, nu+nd+nc)
	ops = append(ops, []byte(strings.Repeat("u", nu)+strings.Repeat("d", nd)+strings.Repeat("c", nc))...)
	rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	if len(ops) == 0 {
		return st, nil
	}
	start := time.Now()
	step := w.Duration / time.Duration(len(ops))
	for i, op := range ops {
		if d := time.Until(start.Add(time.Duration(i) * step)); d > 0 {
			select {
			case <-ctx.Done():
				return st, ctx.Err()
			case <-time.After(d):
			}
		}
		switch op {
		case 'c':
			ids = append(ids, s.CreateUser(customerID))
			st.Creates++
		case 'u':
			if len(ids) == 0 {
				continue
			}
			if err := s.UpdateUser(customerID, ids[rng.IntN(len(ids))]); err == nil {
				st.Updates++
			}
		case 'd':
			if len(ids) == 0 {
				continue
			}
			k := rng.IntN(len(ids))
			if err := s.DeleteUser(customerID, ids[k]); err == nil {
				st.Deletes++
			}
			ids[k] = ids[len(ids)-1]
			ids = ids[:len(ids)-1]
		}
	}
	return st, nil
}

// Sampler records what the checkpoints claimed while the run went on: at
// each sample, every source version at or before a customer's users
// checkpoint must already be in the stream. It keeps each claimed version
// once (with the first time it was claimed), so memory is bounded by the
// versions, not by the samples.
type Sampler struct {
	stack    *Stack
	interval time.Duration

	mu      sync.Mutex
	claimed map[checker.Version]time.Time
	samples int
	errors  int
}

// NewSampler samples the stack's checkpoints every interval.
func NewSampler(s *Stack, interval time.Duration) *Sampler {
	return &Sampler{stack: s, interval: interval, claimed: map[checker.Version]time.Time{}}
}

// Run samples until ctx ends.
func (sp *Sampler) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(sp.interval):
		}
		sp.SampleOnce(ctx)
	}
}

// SampleOnce takes one sample of every customer. Errors (a database or the
// API stopped by the scenario) skip the sample and are counted.
func (sp *Sampler) SampleOnce(ctx context.Context) {
	for _, c := range sp.stack.CustomerIDs() {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var pos time.Time
		err := sp.stack.Pool.QueryRow(qctx, `SELECT position FROM vomosync.checkpoints WHERE customer_id = $1 AND resource = 'users'`, c).Scan(&pos)
		cancel()
		if err != nil {
			sp.mu.Lock()
			sp.errors++
			sp.mu.Unlock()
			continue
		}
		now := time.Now()
		var found []checker.Version
		err = sp.stack.Sim.EachTruth(c, customer.Users, false, func(r sim.TruthRecord) error {
			if !r.UpdatedAt.After(pos) {
				found = append(found, checker.Version{Customer: c, ID: r.ID, At: r.UpdatedAt.UnixMicro()})
			}
			return nil
		})
		sp.mu.Lock()
		if err != nil {
			sp.errors++
		} else {
			sp.samples++
			for _, v := range found {
				if _, ok := sp.claimed[v]; !ok {
					sp.claimed[v] = now
				}
			}
		}
		sp.mu.Unlock()
	}
}

// Claimed returns every version a checkpoint claimed, with when it was
// first claimed, and the number of samples taken.
func (sp *Sampler) Claimed() (map[checker.Version]time.Time, int) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	out := make(map[checker.Version]time.Time, len(sp.claimed))
	for v, t := range sp.claimed {
		out[v] = t
	}
	return out, sp.samples
}
