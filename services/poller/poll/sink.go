package poll

import (
	"context"
	"time"

	"github.com/vomosync/vomosync/pkg/messaging"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
)

// Sink receives a cycle's events. Flush returns once every event added so far
// is durably handed on (or reports how many, from the first, were).
type Sink interface {
	Add(ctx context.Context, ev *eventsv1.ChangeEvent) error
	Flush(ctx context.Context) (int, error)
}

// JetStreamSink publishes to the change stream asynchronously and waits for
// every acknowledgement on Flush.
type JetStreamSink struct {
	batch *messaging.Batch
	// Suffix makes message ids unique to one replay or repair, so the
	// duplicate window never swallows them. Empty for normal polling.
	Suffix string
}

// NewJetStreamSink returns a sink on js.
func NewJetStreamSink(js messaging.AsyncPublisher) *JetStreamSink {
	return &JetStreamSink{batch: messaging.NewBatch(js)}
}

// Add publishes ev with a producer span whose context travels in headers.
func (s *JetStreamSink) Add(ctx context.Context, ev *eventsv1.ChangeEvent) error {
	pctx, span := messaging.StartPublishSpan(ctx, ev)
	defer span.End()
	msg, err := messaging.NewMsg(pctx, ev, messaging.MsgID(ev, s.Suffix))
	if err != nil {
		span.RecordError(err)
		return err
	}
	if err := s.batch.Add(msg); err != nil {
		span.RecordError(err)
		return err
	}
	return nil
}

// Flush waits for the acks of everything added since the last Flush.
func (s *JetStreamSink) Flush(ctx context.Context) (int, error) {
	// A store that hit a write error answers nothing; 30 s is far above any
	// healthy flush (a few hundred events) and surfaces it as a timeout.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return s.batch.Wait(ctx)
}

// Duplicates is how many publishes JetStream recognised as already stored.
func (s *JetStreamSink) Duplicates() int { return s.batch.Duplicates }

// CollectSink keeps events in memory: replay's dry run prints them.
type CollectSink struct {
	Events  []*eventsv1.ChangeEvent
	pending int
}

// Add records ev.
func (s *CollectSink) Add(_ context.Context, ev *eventsv1.ChangeEvent) error {
	s.Events = append(s.Events, ev)
	s.pending++
	return nil
}

// Flush reports everything added as handed on.
func (s *CollectSink) Flush(context.Context) (int, error) {
	n := s.pending
	s.pending = 0
	return n, nil
}
