package messaging

import (
	"errors"
	"fmt"
)

// MaxEventBytes bounds a change event Decode accepts: the largest payload
// any of our NATS servers admits (the embedded one's 8 MiB; production's is
// 1 MiB), so a larger message was not published by vomosync.
const MaxEventBytes = 8 << 20

// ErrEventTooLarge marks an event over MaxEventBytes (with ErrInvalidEvent).
var ErrEventTooLarge = errors.New("change event too large")

func checkSize(data []byte) error {
	if len(data) > MaxEventBytes {
		return fmt.Errorf("%w: %w: %d bytes, over %d", ErrInvalidEvent, ErrEventTooLarge, len(data), MaxEventBytes)
	}
	return nil
}
