package messaging

import (
	"context"
	"errors"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Reasons a publish was not stored, the label of publish_failures_total.
const (
	FailStorageFull = "storage_full" // the store or its limits are full: free space, then restart the server if JetStream disabled itself
	FailUnavailable = "unavailable"  // no JetStream answered: server down, JetStream disabled, connection closed
	FailTimeout     = "timeout"      // no ack in time
	FailOther       = "other"
)

// PublishError is a publish JetStream did not store, with its reason.
type PublishError struct {
	Reason string
	Err    error
}

func (e *PublishError) Error() string { return e.Err.Error() }
func (e *PublishError) Unwrap() error { return e.Err }

// JetStream error codes of a full store (nats-server's JSInsufficientResourcesErr,
// JSStorageResourcesExceededErr and JSStreamStoreFailedF, which carries the
// write error such as "no space left on device").
const (
	codeInsufficientResources = 10023
	codeStorageExceeded       = 10047
	codeStoreFailed           = 10077
)

// failureReason classifies a publish error.
func failureReason(err error) string {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode {
		case codeInsufficientResources, codeStorageExceeded, codeStoreFailed:
			return FailStorageFull
		}
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "no space left"), strings.Contains(msg, "insufficient"), strings.Contains(msg, "maximum bytes"),
		strings.Contains(msg, "maximum messages"), strings.Contains(msg, "resources exceeded"):
		return FailStorageFull
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionDraining), errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return FailUnavailable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, jetstream.ErrAsyncPublishTimeout):
		return FailTimeout
	}
	return FailOther
}

// FailureReason returns the reason of a publish failure in err's chain, or ""
// when err is not one.
func FailureReason(err error) string {
	var pe *PublishError
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return ""
}
