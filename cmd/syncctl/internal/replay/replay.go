// Package replay re-runs the polling logic over a past window without
// changing anything: the poll cycle runs dry (poll.Cycler.DryRun into a
// poll.CollectSink: no checkpoint, no cycle row) and the processor's applier
// runs each batch against the dry-run destination in a transaction that is
// rolled back (no destination row, no sync state, no audit, no outbox). The
// plan says what would run: writes, deletes, skips, dead letters, one-time
// side effects, and where the checkpoint would move.
//
// Nothing is committed; two things are not rows of data and do move: the
// customer's shared API budget (replay spends real requests, like any
// caller) and identity counters of the rolled-back inserts (ids skip).
package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/vomosync/vomosync/pkg/checkpoint"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/messaging"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
	"github.com/vomosync/vomosync/services/poller/poll"
	"github.com/vomosync/vomosync/services/processor/apply"
	"github.com/vomosync/vomosync/services/processor/destination"
)

// Request is one window to replay.
type Request struct {
	Customer customer.Customer
	Resource string
	From, To time.Time
	Source   poll.Source
	// Walked, when set, is told how many records the walk has collected.
	Walked func(n int)
	// Planned, when set, is told how many events have been planned.
	Planned func(done, total int)
}

// Op is what the processor would do with one event.
type Op struct {
	RecordID      string    `json:"record_id"`
	ExternalID    string    `json:"external_id,omitempty"`
	Version       time.Time `json:"version"`
	Operation     string    `json:"operation"` // upsert | delete
	Outcome       string    `json:"outcome"`   // applied | skipped_stale | dead_lettered | failed
	Write         string    `json:"write"`     // insert | update | delete | none
	ChangedFields []string  `json:"changed_fields,omitempty"`
	SideEffects   []string  `json:"side_effects,omitempty"`
	Reason        string    `json:"reason,omitempty"`
}

// Plan is what replaying the window would do.
type Plan struct {
	CustomerID  string      `json:"customer_id"`
	Resource    string      `json:"resource"`
	Cycle       poll.Result `json:"cycle"`
	Ops         []Op        `json:"operations"`
	Inserts     int         `json:"inserts"`
	Updates     int         `json:"updates"`
	Deletes     int         `json:"deletes"`
	Skipped     int         `json:"skipped"`
	DeadLetters int         `json:"dead_letters"`
	SideEffects int         `json:"side_effects"`
	// CheckpointNow is the live checkpoint (nil: missing).
	CheckpointNow *time.Time `json:"checkpoint_now"`
	// CheckpointWould is where a successful cycle over the window would
	// leave it: checkpoints never move backwards.
	CheckpointWould *time.Time `json:"checkpoint_would"`
	// Events are the change events the walk produced (re-published by
	// --publish); not printed.
	Events []*eventsv1.ChangeEvent `json:"-"`
}

// Planner plans replays.
type Planner struct {
	DB        *pgxpool.Pool
	Customers apply.Customers
	Log       zerolog.Logger
	// BatchSize events are planned per rolled-back transaction (default 500).
	BatchSize int
}

type countingSink struct {
	poll.CollectSink
	walked func(int)
}

func (s *countingSink) Add(ctx context.Context, ev *eventsv1.ChangeEvent) error {
	if err := s.CollectSink.Add(ctx, ev); err != nil {
		return err
	}
	if s.walked != nil {
		s.walked(len(s.Events))
	}
	return nil
}

// Plan walks the window and plans every event.
func (p *Planner) Plan(ctx context.Context, req Request) (*Plan, error) {
	if req.From.IsZero() {
		return nil, errors.New("replay needs --from")
	}
	if !req.To.IsZero() && !req.To.After(req.From) {
		return nil, errors.New("--to must be after --from")
	}
	sink := &countingSink{walked: req.Walked}
	cycler := &poll.Cycler{DB: p.DB, DryRun: true, Log: p.Log}
	res, err := cycler.Run(ctx, poll.Request{Customer: req.Customer, Resource: req.Resource, Source: req.Source,
		Sink: sink, From: req.From, To: req.To})
	plan := &Plan{CustomerID: req.Customer.ID, Resource: req.Resource, Events: sink.Events}
	if res != nil {
		plan.Cycle = *res
	}
	if err != nil {
		return plan, fmt.Errorf("replay walk: %w", err)
	}
	cp, err := checkpoint.Get(ctx, p.DB, req.Customer.ID, req.Resource)
	switch {
	case err == nil:
		plan.CheckpointNow = &cp.Position
		would := cp.Position
		if res.Outcome == poll.OutcomeSuccess && res.CheckpointAfter.After(would) {
			would = res.CheckpointAfter
		}
		plan.CheckpointWould = &would
	case errors.Is(err, checkpoint.ErrNotFound):
		if res.Outcome == poll.OutcomeSuccess {
			plan.CheckpointWould = &res.CheckpointAfter
		}
	default:
		return plan, err
	}
	if err := p.apply(ctx, req, plan); err != nil {
		return plan, err
	}
	return plan, nil
}

// apply runs the processor's applier over the events in rolled-back
// transactions against the dry-run destination.
func (p *Planner) apply(ctx context.Context, req Request, plan *Plan) error {
	size := p.BatchSize
	if size <= 0 {
		size = 500
	}
	ap := &apply.Applier{DB: p.DB, Customers: p.Customers, DryRun: true,
		Destinations: &destination.Resolver{DryRun: &destination.DryRun{}, ForceDryRun: true}}
	var actions []string
	for _, a := range req.Customer.Settings.Actions {
		if a.On == "first_seen" && a.Resource == req.Resource {
			actions = append(actions, a.Name)
		}
	}
	evs := plan.Events
	for start := 0; start < len(evs); start += size {
		batch := evs[start:min(start+size, len(evs))]
		msgs := make([]apply.Message, len(batch))
		for i, ev := range batch {
			msgs[i] = apply.Message{Ctx: ctx, Event: ev, Subject: messaging.ChangeSubject(ev.GetCustomerId(), ev.GetResource()), Attempt: 1}
		}
		results, err := ap.Apply(ctx, msgs)
		if err != nil {
			return fmt.Errorf("plan replay: %w", err)
		}
		for i, r := range results {
			plan.add(batch[i], r, actions)
		}
		if req.Planned != nil {
			req.Planned(min(start+size, len(evs)), len(evs))
		}
	}
	return nil
}

func (plan *Plan) add(ev *eventsv1.ChangeEvent, r apply.Result, actions []string) {
	op := Op{RecordID: ev.GetRecordId(), ExternalID: destination.ExternalID(ev.GetRecordId()),
		Version: ev.GetSourceUpdatedAt().AsTime(), Operation: "upsert", Outcome: string(r.Outcome), Write: "none",
		ChangedFields: r.ChangedFields}
	del := ev.GetOperation() == eventsv1.Operation_OPERATION_DELETE
	if del {
		op.Operation = "delete"
	}
	if r.Err != nil {
		op.Reason = r.Err.Error()
	}
	switch r.Outcome {
	case apply.Applied:
		switch {
		case del:
			op.Write = "delete"
			plan.Deletes++
		case r.FirstSeen:
			op.Write = "insert"
			op.SideEffects = actions
			plan.Inserts++
			plan.SideEffects += len(actions)
		default:
			op.Write = "update"
			plan.Updates++
		}
	case apply.SkippedStale:
		plan.Skipped++
	case apply.DeadLettered, apply.Failed:
		plan.DeadLetters++
	}
	plan.Ops = append(plan.Ops, op)
}
