package messaging

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// AsyncPublisher is the part of jetstream.JetStream a Batch needs.
type AsyncPublisher interface {
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// Batch publishes asynchronously and waits for every acknowledgement, so a
// caller can advance a checkpoint only over what JetStream durably stored.
type Batch struct {
	js      AsyncPublisher
	futures []jetstream.PubAckFuture
	// Duplicates counts acks JetStream flagged as duplicates (already stored).
	Duplicates int
}

// NewBatch returns an empty batch on js.
func NewBatch(js AsyncPublisher) *Batch { return &Batch{js: js} }

// Add starts publishing msg; the publish window of the JetStream context
// bounds how many are in flight.
func (b *Batch) Add(msg *nats.Msg) error {
	f, err := b.js.PublishMsgAsync(msg, jetstream.WithExpectStream(StreamChanges))
	if err != nil {
		return &PublishError{Reason: failureReason(err), Err: fmt.Errorf("publish %s: %w", msg.Header.Get(nats.MsgIdHdr), err)}
	}
	b.futures = append(b.futures, f)
	return nil
}

// Len is the number of messages added since the last Wait.
func (b *Batch) Len() int { return len(b.futures) }

// Wait blocks until every added message is acknowledged or failed. It returns
// how many messages, counted from the first, were acknowledged without a gap,
// and the first failure. The batch is empty afterwards.
func (b *Batch) Wait(ctx context.Context) (int, error) {
	defer func() { b.futures = b.futures[:0] }()
	acked := 0
	var firstErr error
	for i, f := range b.futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				b.Duplicates++
			}
			if firstErr == nil {
				acked = i + 1
			}
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = &PublishError{Reason: failureReason(err), Err: fmt.Errorf("publish %s: %w", f.Msg().Header.Get(nats.MsgIdHdr), err)}
			}
		case <-ctx.Done():
			if firstErr == nil {
				firstErr = &PublishError{Reason: FailTimeout, Err: fmt.Errorf("waiting for publish acks: %w", ctx.Err())}
			}
			return acked, firstErr
		}
	}
	return acked, firstErr
}
