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
	// Deletes are hard deletes (organizations: deleted_at is set instead).
	Deletes float64 `json:"deletes" yaml:"deletes"`
	// Silent changes alter fields without advancing updated_at.
	Silent float64 `json:"silent" yaml:"silent"`
	// BulkImports create BulkSize records (default 50) sharing one
	// created_at and updated_at.
	BulkImports float64 `json:"bulk_imports" yaml:"bulk_imports"`
	BulkSize    int     `json:"bulk_size" yaml:"bulk_size"`
	// Details change what detail reads show without advancing updated_at:
	// participations and certificates of users, dates of projects (unless
	// DatesBumpProject), members of groups.
	Details          float64 `json:"details" yaml:"details"`
	DatesBumpProject bool    `json:"dates_bump_project" yaml:"dates_bump_project"`
	// Leaves are users leaving the org: membership_status REMOVED (or a
	// hard delete with LeavesDelete).
	Leaves       float64 `json:"leaves" yaml:"leaves"`
	LeavesDelete bool    `json:"leaves_delete" yaml:"leaves_delete"`
	// Late updates get an updated_at LateLag (default 2m) behind the clock.
	Late    float64  `json:"late" yaml:"late"`
	LateLag Duration `json:"late_lag" yaml:"late_lag"`
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
	rates := [...]float64{r.Creates, r.Updates, r.Deletes, r.Silent, r.BulkImports, r.Details, r.Leaves, r.Late}
	var acc [len(rates)]float64
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			dt := now.Sub(last).Seconds()
			last = now
			c.mu.Lock()
			for kind, rate := range rates {
				for acc[kind] += rate * dt; acc[kind] >= 1; acc[kind]-- {
					s.change(c, r, kind)
				}
			}
			c.mu.Unlock()
		}
	}
}

// change applies one change of a kind (the index into runChanges' rates).
// Callers hold c.mu for writing.
func (s *Sim) change(c *customer, r Rates, kind int) {
	t := c.tables[r.Resource]
	now := s.clock(c).Unix()
	random := func() (uint32, bool) {
		if t.live() == 0 {
			return 0, false
		}
		return t.byID[c.rng.IntN(t.live())], true
	}
	switch kind {
	case 0:
		c.emit(r.Resource, "created", c.insert(r.Resource, now))
	case 4:
		n := r.BulkSize
		if n <= 0 {
			n = 50
		}
		for range n {
			idx := c.insert(r.Resource, now)
			t.setUpdated(idx, now) // one shared second, whatever the tie groups
			c.emit(r.Resource, "created", idx)
		}
	}
	idx, ok := random()
	if !ok || kind == 0 || kind == 4 {
		return
	}
	row := &t.rows[idx]
	switch kind {
	case 1:
		row.version++
		t.setUpdated(idx, c.stamp(r.Resource, now))
		c.emit(r.Resource, "updated", idx)
	case 2:
		if r.Resource == Organizations {
			if idx != 0 && row.flags&flagOrgDeleted == 0 {
				row.flags |= flagOrgDeleted
				t.setUpdated(idx, now)
				c.emit(r.Resource, "updated", idx)
			}
			return
		}
		c.emitDeleted(r.Resource, idx, now)
		t.remove(idx)
	case 3:
		row.version++
		t.gen++
	case 5:
		row.aux++
		t.gen++
		if r.Resource == Projects && r.DatesBumpProject {
			t.setUpdated(idx, c.stamp(r.Resource, now))
		}
	case 6:
		if r.Resource != Users {
			return
		}
		if r.LeavesDelete {
			c.emitDeleted(r.Resource, idx, now)
			t.remove(idx)
			return
		}
		if row.flags&flagLeft == 0 {
			row.flags |= flagLeft
			t.setUpdated(idx, c.stamp(r.Resource, now))
			c.emit(r.Resource, "updated", idx)
		}
	case 7:
		lag := durationOr(r.LateLag, 2*time.Minute)
		row.version++
		t.setUpdated(idx, now-int64(lag/time.Second))
		c.emit(r.Resource, "updated", idx)
	}
}
