package messaging

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
)

const tracerName = "github.com/vomosync/vomosync/pkg/messaging"

// ErrInvalidEvent marks a message that can never be applied (undecodable or
// missing required fields). Consumers dead-letter it at once.
var ErrInvalidEvent = errors.New("invalid change event")

// MsgID is the stable JetStream dedup id of one record version: a poll that
// sees the same version twice inside the duplicate window publishes once.
// Repairs and replays pass a non-empty suffix so the window never swallows them.
func MsgID(ev *eventsv1.ChangeEvent, suffix string) string {
	id := ev.GetCustomerId() + ":" + ev.GetResource() + ":" + ev.GetRecordId() + ":" +
		strconv.Itoa(int(ev.GetOperation())) + ":" + strconv.FormatInt(ev.GetSourceUpdatedAt().AsTime().UnixNano(), 10)
	if suffix != "" {
		id += ":" + suffix
	}
	return id
}

// NewMsg encodes ev for publishing with its dedup id and the trace context of
// ctx in the headers.
func NewMsg(ctx context.Context, ev *eventsv1.ChangeEvent, msgID string) (*nats.Msg, error) {
	data, err := proto.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("marshal event %s: %w", msgID, err)
	}
	m := nats.NewMsg(ChangeSubject(ev.GetCustomerId(), ev.GetResource()))
	m.Data = data
	m.Header.Set(nats.MsgIdHdr, msgID)
	m.Header.Set(HeaderOrigin, ev.GetOrigin().String())
	otel.GetTextMapPropagator().Inject(ctx, HeaderCarrier(m.Header))
	return m, nil
}

// StartPublishSpan starts the producer span of one event; its context goes
// into the message headers so the consumer's span joins the same trace.
func StartPublishSpan(ctx context.Context, ev *eventsv1.ChangeEvent) (context.Context, trace.Span) {
	return otel.Tracer(tracerName).Start(ctx, "publish "+ev.GetResource(),
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("vomosync.customer_id", ev.GetCustomerId()),
			attribute.String("vomosync.resource", ev.GetResource()),
			attribute.String("vomosync.record_id", ev.GetRecordId()),
			attribute.String("messaging.system", "nats"),
		))
}

// Decode parses and validates a change event. Errors wrap ErrInvalidEvent;
// an event over MaxEventBytes also wraps ErrEventTooLarge.
func Decode(data []byte) (*eventsv1.ChangeEvent, error) {
	if err := checkSize(data); err != nil {
		return nil, err
	}
	ev := &eventsv1.ChangeEvent{}
	if err := proto.Unmarshal(data, ev); err != nil {
		return nil, fmt.Errorf("%w: undecodable protobuf: %v", ErrInvalidEvent, err)
	}
	switch {
	case !ValidToken(ev.GetCustomerId()):
		return nil, fmt.Errorf("%w: bad customer_id %q", ErrInvalidEvent, ev.GetCustomerId())
	case !ValidToken(ev.GetResource()):
		return nil, fmt.Errorf("%w: bad resource %q", ErrInvalidEvent, ev.GetResource())
	case ev.GetRecordId() == "":
		return nil, fmt.Errorf("%w: empty record_id", ErrInvalidEvent)
	case ev.GetOperation() == eventsv1.Operation_OPERATION_UNSPECIFIED:
		return nil, fmt.Errorf("%w: operation unspecified", ErrInvalidEvent)
	case ev.GetSourceUpdatedAt() == nil:
		return nil, fmt.Errorf("%w: source_updated_at missing", ErrInvalidEvent)
	}
	return ev, nil
}

// Extract returns ctx with the remote span context found in h.
func Extract(ctx context.Context, h nats.Header) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, HeaderCarrier(h))
}

// HeaderCarrier adapts NATS headers to the OTel propagator.
type HeaderCarrier nats.Header

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string { return nats.Header(c).Get(key) }

// Set replaces key.
func (c HeaderCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
