package sim

import (
	"context"
	"time"
)

// Rates drive background changes of one resource, in events per second.
type Rates struct {
	// Resource the changes apply to; default users.
	Resource string  `json:"resource" yaml:"resource"`
	Creates  float64 `json:"creates" yaml:"creates"`
	Updates  float64 `json:"updates" yaml:"updates"`
	Deletes  float64 `json:"deletes" yaml:"deletes"`
	// Silent changes alter fields without advancing updated_at.
	Silent float64 `json:"silent" yaml:"silent"`
}

const changeTick = 50 * time.Millisecond

// StartChanges generates changes for the customer until ctx ends or
// StopChanges is called. Several generators (one per resource) may run.
func (s *Sim) StartChanges(ctx context.Context, customerID string, r Rates) error {
	c, err := s.customer(customerID)
	if err != nil {
		return err
	}
	if r.Resource == "" {
		r.Resource = Users
	}
	c.mu.Lock()
	if _, err := c.table(r.Resource); err != nil {
		c.mu.Unlock()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	h := len(c.changes) + 1
	for c.changes[h] != nil {
		h++
	}
	c.changes[h] = cancel
	c.mu.Unlock()
	go func() {
		defer func() {
			c.mu.Lock()
			delete(c.changes, h)
			c.mu.Unlock()
		}()
		s.runChanges(ctx, c, r)
	}()
	return nil
}

// StopChanges stops every change generator of the customer.
func (s *Sim) StopChanges(customerID string) error {
	c, err := s.customer(customerID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, cancel := range c.changes {
		cancel()
		delete(c.changes, h)
	}
	return nil
}

func (s *Sim) runChanges(ctx context.Context, c *customer, r Rates) {
	tick := time.NewTicker(changeTick)
	defer tick.Stop()
	var acc [4]float64
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			dt := now.Sub(last).Seconds()
			last = now
			for i, rate := range [4]float64{r.Creates, r.Updates, r.Deletes, r.Silent} {
				acc[i] += rate * dt
			}
			c.mu.Lock()
			t := c.tables[r.Resource]
			at := s.clock(c).Unix()
			for ; acc[0] >= 1; acc[0]-- {
				t.insert(row{created: at, updated: at})
			}
			for ; acc[1] >= 1; acc[1]-- {
				if t.live() > 0 {
					idx := t.byID[c.rng.IntN(t.live())]
					t.rows[idx].version++
					t.setUpdated(idx, at)
				}
			}
			for ; acc[2] >= 1; acc[2]-- {
				if t.live() > 0 {
					t.remove(t.byID[c.rng.IntN(t.live())])
				}
			}
			for ; acc[3] >= 1; acc[3]-- {
				if t.live() > 0 {
					t.rows[t.byID[c.rng.IntN(t.live())]].version++
					t.gen++
				}
			}
			c.mu.Unlock()
		}
	}
}
