// Package messaging owns vomosync's JetStream contract: connection, streams,
// subjects, message ids, and ChangeEvent encoding with trace context in headers.
package messaging

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names shared by every service and the deployment manifests.
const (
	StreamChanges    = "VOMOSYNC_CHANGES"
	StreamDLQ        = "VOMOSYNC_DLQ"
	ChangesPrefix    = "vomosync.changes"
	DLQPrefix        = "vomosync.dlq"
	CheckpointBucket = "vomosync_checkpoints"
	ConsumerName     = "processor"

	HeaderOrigin   = "Vomosync-Origin"
	HeaderError    = "Vomosync-Error"
	HeaderAttempts = "Vomosync-Attempts"
)

// Settings is the NATS block of every service's configuration.
type Settings struct {
	URL             string        `env:"NATS_URL"`
	Replicas        int           `env:"JS_REPLICAS" envDefault:"1"`
	DuplicateWindow time.Duration `env:"JS_DUPLICATE_WINDOW" envDefault:"2m"`
	MaxAge          time.Duration `env:"JS_MAX_AGE" envDefault:"72h"`
	MaxBytes        int64         `env:"JS_MAX_BYTES" envDefault:"-1"`
	ConnectTimeout  time.Duration `env:"NATS_CONNECT_TIMEOUT" envDefault:"30s"`
}

// Validate checks the block.
func (s Settings) Validate() error {
	if s.URL == "" {
		return errors.New("NATS_URL is required (e.g. nats://127.0.0.1:4222)")
	}
	if s.Replicas != 1 && s.Replicas != 3 && s.Replicas != 5 {
		return fmt.Errorf("JS_REPLICAS=%d: want 1, 3 or 5", s.Replicas)
	}
	if s.DuplicateWindow < time.Second {
		return fmt.Errorf("JS_DUPLICATE_WINDOW=%s: want at least 1s", s.DuplicateWindow)
	}
	return nil
}

// ValidToken reports whether s is safe as one NATS subject token and as a
// customer id (no '.', '*', '>', spaces or upper case): ^[a-z0-9][a-z0-9_-]{0,62}$.
// A loop, not a regexp: the processor checks every message with it.
func ValidToken(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ChangeSubject is the subject of a customer's resource change events.
func ChangeSubject(customer, resource string) string {
	return ChangesPrefix + "." + customer + "." + resource
}

// DLQSubject is the dead-letter subject of a customer's resource.
func DLQSubject(customer, resource string) string {
	return DLQPrefix + "." + customer + "." + resource
}

// Connect dials NATS, retrying until timeout, then fails with a clear error.
// The connection reconnects forever once established.
func Connect(ctx context.Context, url, name string, timeout time.Duration) (*nats.Conn, jetstream.JetStream, error) {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for attempt := 1; ; attempt++ {
		nc, err := nats.Connect(url, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond))
		if err == nil {
			js, err := jetstream.New(nc)
			if err != nil {
				nc.Close()
				return nil, nil, fmt.Errorf("jetstream: %w", err)
			}
			return nc, js, nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("nats unreachable at %s after %d attempts over %s: %w", url, attempt, timeout, lastErr)
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("nats connect %s: %w (last error: %v)", url, ctx.Err(), lastErr)
		case <-time.After(min(time.Duration(attempt)*200*time.Millisecond, 2*time.Second)):
		}
	}
}

// EnsureStreams creates or updates the change and dead-letter streams.
func EnsureStreams(ctx context.Context, js jetstream.StreamManager, s Settings) error {
	replicas := max(s.Replicas, 1)
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamChanges,
		Description: "vomosync change events, one per observed record version",
		Subjects:    []string{ChangesPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    replicas,
		Duplicates:  s.DuplicateWindow,
		MaxAge:      s.MaxAge,
		MaxBytes:    s.MaxBytes,
		// A full stream refuses new publishes (the poller's checkpoint holds
		// and VomosyncPublishFailing fires) rather than dropping the oldest
		// events, which may not have been processed yet.
		Discard: jetstream.DiscardNew,
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", StreamChanges, err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamDLQ,
		Description: "vomosync dead letters: events that could not be applied, with the reason in headers",
		Subjects:    []string{DLQPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    replicas,
		MaxAge:      30 * 24 * time.Hour,
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", StreamDLQ, err)
	}
	return nil
}

// EnsureCheckpointBucket creates the KV bucket holding checkpoint backups.
func EnsureCheckpointBucket(ctx context.Context, js jetstream.KeyValueManager, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      CheckpointBucket,
		Description: "backup copy of the Postgres checkpoints, written after the primary",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("ensure kv %s: %w", CheckpointBucket, err)
	}
	return kv, nil
}
