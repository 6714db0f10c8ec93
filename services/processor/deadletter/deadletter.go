// Package deadletter is the operator's and the reconciler's side of the
// dead-letter table the processor fills: list, show, retry (republish the
// event through the normal path, origin redrive) and discard with a reason.
// syncctl dlq and the reconciler's re-drive use it, so both record their
// decisions the same way.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vomosync/vomosync/pkg/messaging"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
)

// Sentinel errors.
var (
	ErrNotFound = errors.New("dead letter not found")
	// ErrResolved: the dead letter was already retried, redriven or discarded.
	ErrResolved = errors.New("dead letter already resolved")
	// ErrUndecodable: the payload is not a change event; it can only be discarded.
	ErrUndecodable = errors.New("dead letter payload is not a change event")
	// ErrNoReason: discarding needs a reason for the record.
	ErrNoReason = errors.New("a reason is required")
)

// Letter is one dead letter.
type Letter struct {
	ID              int64
	CustomerID      string
	Resource        string
	RecordID        string
	RecordUpdatedAt *time.Time
	MsgID           string
	Subject         string
	Payload         []byte
	Headers         map[string][]string
	Error           string
	ErrorClass      string
	Attempts        int
	TraceID         string
	FirstFailedAt   time.Time
	LastFailedAt    time.Time
	Status          string
	ResolvedBy      string
	ResolvedReason  string
	ResolvedAt      *time.Time
}

// Filter narrows List. Empty fields match everything; Status defaults to open.
type Filter struct {
	CustomerID string
	Resource   string
	Status     string // open | retried | redriven | discarded | all
	ErrorClass string
	Limit      int
}

// Store reads and resolves dead letters.
type Store struct {
	DB *pgxpool.Pool
	// JS republishes retried events.
	JS jetstream.Publisher
}

const columns = `id, customer_id, resource, record_id, record_updated_at, msg_id, subject, payload, headers, error,
	error_class, attempts, trace_id, first_failed_at, last_failed_at, status, resolved_by, resolved_reason, resolved_at`

func scan(row pgx.Row) (Letter, error) {
	var l Letter
	var hdr []byte
	err := row.Scan(&l.ID, &l.CustomerID, &l.Resource, &l.RecordID, &l.RecordUpdatedAt, &l.MsgID, &l.Subject, &l.Payload,
		&hdr, &l.Error, &l.ErrorClass, &l.Attempts, &l.TraceID, &l.FirstFailedAt, &l.LastFailedAt, &l.Status,
		&l.ResolvedBy, &l.ResolvedReason, &l.ResolvedAt)
	if err != nil {
		return l, err
	}
	_ = json.Unmarshal(hdr, &l.Headers)
	return l, nil
}

// List returns dead letters newest first.
func (s *Store) List(ctx context.Context, f Filter) ([]Letter, error) {
	if f.Status == "" {
		f.Status = "open"
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := s.DB.Query(ctx, `SELECT `+columns+` FROM vomosync.dead_letters
		WHERE ($1 = '' OR customer_id = $1) AND ($2 = '' OR resource = $2) AND ($3 = 'all' OR status = $3)
		  AND ($4 = '' OR error_class = $4)
		ORDER BY last_failed_at DESC, id DESC LIMIT $5`, f.CustomerID, f.Resource, f.Status, f.ErrorClass, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	defer rows.Close()
	var out []Letter
	for rows.Next() {
		l, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// Get returns one dead letter.
func (s *Store) Get(ctx context.Context, id int64) (Letter, error) {
	l, err := scan(s.DB.QueryRow(ctx, `SELECT `+columns+` FROM vomosync.dead_letters WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return l, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	if err != nil {
		return l, fmt.Errorf("get dead letter %d: %w", id, err)
	}
	return l, nil
}

// Retry republishes the event of an open dead letter with origin redrive
// and marks it retried by actor. The processor applies it like any event:
// if its version is no longer the newest it is skipped as stale.
func (s *Store) Retry(ctx context.Context, id int64, actor string) error {
	return s.resolve(ctx, id, "retried", actor, "")
}

// Redrive is Retry for the reconciler, once the cause has cleared.
func (s *Store) Redrive(ctx context.Context, id int64, reason string) error {
	return s.resolve(ctx, id, "redriven", "reconciler", reason)
}

// Discard closes an open dead letter without retrying it; reason is kept.
func (s *Store) Discard(ctx context.Context, id int64, actor, reason string) error {
	if reason == "" {
		return ErrNoReason
	}
	return s.resolve(ctx, id, "discarded", actor, reason)
}

func (s *Store) resolve(ctx context.Context, id int64, status, actor, reason string) error {
	return pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		l, err := scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM vomosync.dead_letters WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %d", ErrNotFound, id)
		}
		if err != nil {
			return fmt.Errorf("dead letter %d: %w", id, err)
		}
		if l.Status != "open" {
			return fmt.Errorf("%w: %d is %s", ErrResolved, id, l.Status)
		}
		if status != "discarded" {
			if err := s.republish(ctx, l); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE vomosync.dead_letters SET status = $2, resolved_by = $3, resolved_reason = $4,
			resolved_at = now() WHERE id = $1`, id, status, actor, reason)
		if err != nil {
			return fmt.Errorf("resolve dead letter %d: %w", id, err)
		}
		return nil
	})
}

// republish sends the event again, in the trace it failed in, with a
// message id of its own so JetStream's duplicate window keeps it.
func (s *Store) republish(ctx context.Context, l Letter) error {
	ev, err := messaging.Decode(l.Payload)
	if err != nil {
		return fmt.Errorf("%w: %d: %v", ErrUndecodable, l.ID, err)
	}
	ev.Origin = eventsv1.Origin_ORIGIN_REDRIVE
	tctx := messaging.Extract(ctx, nats.Header(l.Headers))
	msg, err := messaging.NewMsg(tctx, ev, messaging.MsgID(ev, "redrive-"+strconv.FormatInt(l.ID, 10)+"-"+strconv.FormatInt(time.Now().UnixNano(), 36)))
	if err != nil {
		return err
	}
	if _, err := s.JS.PublishMsg(ctx, msg, jetstream.WithExpectStream(messaging.StreamChanges)); err != nil {
		return fmt.Errorf("republish dead letter %d: %w", l.ID, err)
	}
	return nil
}
