// Package destination owns the port the processor writes customer records
// through, and its implementations: Postgres tables, an HTTP endpoint, and a
// dry run that only records what it would have done (syncctl replay).
package destination

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Sentinel errors of every destination. Per-op results are nil (applied),
// ErrStale, or an error wrapping ErrRejected; a batch error wraps
// ErrUnavailable (retry later) or ErrRejected (permanent, cause unknown).
var (
	// ErrStale: the destination already holds this version or a newer one.
	// The processor accepts it as done (audit outcome skipped_stale).
	ErrStale = errors.New("destination holds the same or a newer version")
	// ErrRejected: the destination refuses the record for good (validation,
	// 4xx). The record is dead-lettered with the reason.
	ErrRejected = errors.New("destination rejected the record")
	// ErrUnavailable: the destination cannot be written now (5xx, timeout,
	// connection refused). The batch is retried with backoff.
	ErrUnavailable = errors.New("destination unavailable")
)

// Op is one record version to write. External ids, never VOMO ids, key the
// destination's rows.
type Op struct {
	CustomerID      string
	Resource        string
	RecordID        string
	ExternalID      string
	Delete          bool
	SourceUpdatedAt time.Time
	// Record is the raw JSON object (nil for deletes).
	Record  json.RawMessage
	TraceID string
}

// IdempotencyKey names this version of this record: the same event applied
// twice carries the same key, so a receiver can drop the repeat.
func (o Op) IdempotencyKey() string {
	kind := "u"
	if o.Delete {
		kind = "d"
	}
	return o.CustomerID + ":" + o.Resource + ":" + o.ExternalID + ":" + kind + ":" +
		strconv.FormatInt(o.SourceUpdatedAt.UnixNano(), 10)
}

// ExternalID maps a VOMO record id to the id destinations key on.
func ExternalID(recordID string) string { return "vomo-" + recordID }

// Destination writes ops. Ops come sorted by (customer, resource, record) with
// at most one op per record. tx is the processor's batch transaction:
// destinations in the same database write through it, so the write commits
// with the sync state and audit rows; others ignore it. Apply returns one
// result per op (nil, ErrStale or a wrapped ErrRejected) or a batch error.
type Destination interface {
	Apply(ctx context.Context, tx pgx.Tx, ops []Op) ([]error, error)
}

// Permanent reports whether err means "never retry": the record goes to the
// dead-letter queue.
func Permanent(err error) bool { return errors.Is(err, ErrRejected) }
