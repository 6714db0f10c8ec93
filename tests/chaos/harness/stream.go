package harness

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"

	"github.com/vomosync/vomosync/pkg/messaging"
)

// StoredMsg is one message of the change stream as stored.
type StoredMsg struct {
	Seq     uint64
	Subject string
	Data    []byte
	Header  nats.Header
	Event   *eventsv1.ChangeEvent // nil when the data is not a change event
}

// ReadChanges returns the messages of the change stream whose subject
// matches filter (e.g. vomosync.changes.c1.users), in stream order, up to
// the stream's end as the read reaches it. It does not wait for the stream
// to go quiet: a running poller stores its overlap re-reads again once the
// duplicate window has passed, and at the long size that never pauses for
// a second (a read until idle then never ended).
func ReadChanges(ctx context.Context, js jetstream.JetStream, filter string) ([]StoredMsg, error) {
	st, err := js.Stream(ctx, messaging.StreamChanges)
	if err != nil {
		return nil, fmt.Errorf("stream: %w", err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, err
	}
	var out []StoredMsg
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch, err := cons.Fetch(2000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, err
		}
		n, end := 0, false
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			sm := StoredMsg{Seq: meta.Sequence.Stream, Subject: m.Subject(), Data: append([]byte(nil), m.Data()...), Header: m.Headers()}
			if ev, err := messaging.Decode(m.Data()); err == nil {
				sm.Event = ev
			}
			out = append(out, sm)
			end = end || meta.NumPending == 0
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if n == 0 || end {
			return out, nil
		}
	}
}

// WaitConsumerIdle waits until the processor's durable consumer has nothing
// pending and nothing unacknowledged.
func (s *Stack) WaitConsumerIdle(ctx context.Context, timeout time.Duration) error {
	return Wait(ctx, timeout, 300*time.Millisecond, "processor consumer idle", func(ctx context.Context) (bool, string, error) {
		nc, js, err := s.Connect(ctx)
		if err != nil {
			return false, "", err
		}
		defer nc.Close()
		c, err := js.Consumer(ctx, messaging.StreamChanges, messaging.ConsumerName)
		if err != nil {
			return false, "", err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return false, "", err
		}
		return info.NumPending == 0 && info.NumAckPending == 0,
			fmt.Sprintf("pending %d, ack pending %d", info.NumPending, info.NumAckPending), nil
	})
}
