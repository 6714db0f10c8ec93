// Package outbox delivers the one-time side effects the applier queued in
// vomosync.outbox: POST the payload with the dedup key as Idempotency-Key,
// retry with backoff, dead-letter after the attempt limit. Replicas share the
// table; row claims with SKIP LOCKED keep them apart.
package outbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/vomosync/vomosync/pkg/logging"
	"github.com/vomosync/vomosync/pkg/metrics"
	"github.com/vomosync/vomosync/services/processor/destination"
)

// Sender delivers due outbox rows.
type Sender struct {
	DB           *pgxpool.Pool
	Secrets      destination.Secrets
	Metrics      *metrics.Processor
	Log          zerolog.Logger
	MaxAttempts  int
	Concurrency  int
	PollInterval time.Duration
	RetryBase    time.Duration
	Timeout      time.Duration

	once    sync.Once
	clients map[bool]*http.Client
}

type row struct {
	id           int64
	key          string
	customer     string
	url          string
	ref          string
	allowPrivate bool
	payload      []byte
	attempts     int
	trace        string
}

// Run delivers until ctx is cancelled. A full claim is followed at once by
// the next; otherwise it waits PollInterval.
func (s *Sender) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		n, err := s.Once(ctx)
		if err != nil && ctx.Err() == nil {
			s.Log.Warn().Err(err).Msg("outbox round failed")
		}
		if err != nil || n < s.batch() {
			t := time.NewTimer(s.PollInterval)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
	return nil
}

func (s *Sender) batch() int { return max(s.Concurrency, 1) * 4 }

// Once claims due rows, delivers them and records the answers. It returns
// how many rows it claimed.
func (s *Sender) Once(ctx context.Context) (int, error) {
	s.once.Do(func() {
		s.clients = map[bool]*http.Client{
			false: destination.NewClient(s.Timeout, false),
			true:  destination.NewClient(s.Timeout, true),
		}
	})
	// The claim pushes next_attempt_at past the delivery time, so a
	// replica that dies mid-delivery leaves the row to be retried.
	lease := s.Timeout*2 + 5*time.Second
	rows, err := s.DB.Query(ctx, `UPDATE vomosync.outbox o SET attempts = o.attempts + 1, next_attempt_at = now() + $2::interval
		WHERE o.id IN (SELECT id FROM vomosync.outbox WHERE status = 'pending' AND next_attempt_at <= now()
			ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING o.id, o.dedup_key, o.customer_id, o.url, o.signing_key_ref, o.allow_private, o.payload, o.attempts, o.trace_id`,
		s.batch(), lease)
	if err != nil {
		return 0, fmt.Errorf("claim outbox rows: %w", err)
	}
	claimed, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.id, &x.key, &x.customer, &x.url, &x.ref, &x.allowPrivate, &x.payload, &x.attempts, &x.trace)
		return x, err
	})
	if err != nil {
		return 0, fmt.Errorf("claim outbox rows: %w", err)
	}
	sem := make(chan struct{}, max(s.Concurrency, 1))
	var wg sync.WaitGroup
	for _, r := range claimed {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.deliver(context.WithoutCancel(ctx), r)
		}()
	}
	wg.Wait()
	return len(claimed), nil
}

func (s *Sender) deliver(ctx context.Context, r row) {
	status, err := s.post(ctx, r)
	outcome := "delivered"
	var q string
	args := []any{r.id, status, errText(err)}
	switch {
	case err == nil:
		q = `UPDATE vomosync.outbox SET status = 'delivered', delivered_at = now(), last_status = $2, last_error = $3 WHERE id = $1`
	case destination.Permanent(err) || r.attempts >= s.MaxAttempts:
		outcome = "dead_lettered"
		q = `UPDATE vomosync.outbox SET status = 'dead_lettered', last_status = $2, last_error = $3 WHERE id = $1`
	default:
		outcome = "retry"
		delay := s.RetryBase
		for i := 1; i < r.attempts && delay < time.Hour; i++ {
			delay *= 2
		}
		q = `UPDATE vomosync.outbox SET next_attempt_at = now() + $4::interval, last_status = $2, last_error = $3 WHERE id = $1`
		args = append(args, min(delay, time.Hour))
	}
	if s.Metrics != nil {
		s.Metrics.OutboxDeliveries.WithLabelValues(outcome).Inc()
	}
	if _, uerr := s.DB.Exec(ctx, q, args...); uerr != nil {
		// The lease expires and the row is delivered again with the
		// same Idempotency-Key.
		s.Log.Warn().Err(uerr).Str("dedup_key", r.key).Msg("record outbox delivery")
	}
	ev := s.Log.Debug()
	if outcome != "delivered" {
		ev = s.Log.Warn()
	}
	ev.Str(logging.FCustomerID, r.customer).Str(logging.FOperation, "outbox").Str(logging.FTraceID, r.trace).
		Str("dedup_key", r.key).Int("attempt", r.attempts).Str(logging.FOutcome, outcome).Err(err).Msg("outbox delivery")
}

// post sends one payload. Errors wrap destination.ErrRejected (4xx,
// forbidden target: dead-letter now) or ErrUnavailable (retry).
func (s *Sender) post(ctx context.Context, r row) (int, error) {
	u, err := destination.ValidateURL(r.url, r.allowPrivate)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", destination.ErrRejected, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(r.payload))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", destination.ErrRejected, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vomosync-processor")
	req.Header.Set(destination.HeaderIdempotencyKey, r.key)
	if r.ref != "" && s.Secrets != nil {
		key, err := s.Secrets.Secret(r.ref)
		if err != nil {
			return 0, fmt.Errorf("%w: signing key: %v", destination.ErrUnavailable, err)
		}
		req.Header.Set(destination.HeaderSignature, destination.Sign(key, r.payload, time.Now()))
	}
	resp, err := s.clients[r.allowPrivate].Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", destination.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300, c == http.StatusConflict: // 409: already done
		return c, nil
	case c == http.StatusRequestTimeout, c == http.StatusTooEarly, c == http.StatusTooManyRequests, c >= 500:
		return c, fmt.Errorf("%w: HTTP %d: %s", destination.ErrUnavailable, c, bytes.TrimSpace(body))
	default:
		return c, fmt.Errorf("%w: HTTP %d: %s", destination.ErrRejected, c, bytes.TrimSpace(body))
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 1000 {
		s = s[:1000]
	}
	return s
}
