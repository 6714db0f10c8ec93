// Package webhook takes VOMO webhooks in. A webhook only makes the
// customer's poll of the resource it names due now: the poll reads the
// record through the API like any other, so a forged, replayed, dropped or
// reordered webhook can cost an early poll at most, never wrong data.
//
// Each delivery is checked before it has any effect: the body is capped
// before it is read, its HMAC-SHA256 under the customer's secret is
// compared in constant time over the raw bytes, and a body seen within the
// replay window (VOMO sends neither a delivery id nor a timestamp, and the
// body carries the record's updated_at) is acknowledged without effect.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/postgres"
	"github.com/vomosync/vomosync/pkg/secrets"
)

// SignatureHeader carries the hex HMAC-SHA256 of the raw body, as VOMO sends it.
const SignatureHeader = "vomo-signature"

// Defaults.
const (
	DefaultMaxBody      = 1 << 20
	DefaultReplayWindow = 24 * time.Hour
)

// ErrNoSecret: the customer has no webhook secret (or does not exist).
var ErrNoSecret = errors.New("no webhook secret for this customer")

// DB is what the handler needs of the pool.
type DB interface {
	postgres.Beginner
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Handler serves POST /webhooks/vomo/{customer}.
type Handler struct {
	DB   DB
	Keys *secrets.Keyring
	// MaxBody caps a delivery; larger ones are refused unread (413).
	MaxBody int64
	// ReplayWindow is how long a body is remembered (and its repeats ignored).
	ReplayWindow time.Duration
	Log          zerolog.Logger
}

// Outcome of one delivery, for the response and the log.
type Outcome string

// Outcomes.
const (
	Triggered Outcome = "triggered" // the poll of the resource was made due
	Replayed  Outcome = "replayed"  // same body within the window: no effect
	Ignored   Outcome = "ignored"   // valid, but names no polled resource
)

// Routes registers the handler on mux.
func (h *Handler) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /webhooks/vomo/{customer}", h.ServeHTTP)
}

// ServeHTTP checks and applies one delivery. Any failed check answers 401
// (no hint of which), an oversized body 413, a database failure 503 (VOMO
// retries).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	cust := r.PathValue("customer")
	maxBody := h.MaxBody
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	log := h.Log.With().Str("customer_id", cust).Logger()
	if !messaging.ValidToken(cust) {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	out, err := h.Deliver(ctx, cust, body, r.Header.Get(SignatureHeader))
	switch {
	case errors.Is(err, ErrUnauthorized):
		log.Warn().Msg("webhook refused: bad signature or no secret")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
	case err != nil:
		log.Error().Err(err).Msg("webhook")
		http.Error(w, "try again", http.StatusServiceUnavailable)
	default:
		log.Debug().Str("outcome", string(out)).Msg("webhook")
		w.WriteHeader(http.StatusNoContent)
	}
}

// ErrUnauthorized: the signature does not verify (or the customer has no secret).
var ErrUnauthorized = errors.New("webhook signature does not verify")

// resources maps a webhook event type's subject to the resource polled.
var resources = map[string]string{
	"user": "users", "project": "projects", "group": "groups", "form_completion": "form_completions",
	"form": "form_completions", "certificate": "certificates", "campaign": "campaigns",
	"participation": "participations",
}

// EventOf returns a delivery's event type ("user.updated") and the
// resource whose poll it concerns ("" when none: another type, or a body
// that is not a JSON object with a type).
func EventOf(body []byte) (eventType, resource string) {
	var ev struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(body, &ev) != nil {
		return "", ""
	}
	subject, _, _ := strings.Cut(ev.Type, ".")
	return ev.Type, resources[subject]
}

// Deliver verifies body against signature with the customer's secret and,
// unless it is a replay, makes the named resource's poll due now. Everything
// runs under the customer's tenant. It returns ErrUnauthorized for a bad
// signature or a customer without a secret.
func (h *Handler) Deliver(ctx context.Context, customer string, body []byte, signature string) (Outcome, error) {
	got, err := hex.DecodeString(strings.TrimSpace(signature))
	if err != nil || len(got) != sha256.Size {
		return "", ErrUnauthorized
	}
	window := h.ReplayWindow
	if window <= 0 {
		window = DefaultReplayWindow
	}
	var out Outcome
	err = postgres.WithTenant(ctx, h.DB, customer, func(tx pgx.Tx) error {
		secret, err := loadSecret(ctx, tx, h.Keys, customer)
		if errors.Is(err, ErrNoSecret) {
			return ErrUnauthorized
		}
		if err != nil {
			return err
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		if !hmac.Equal(mac.Sum(nil), got) {
			return ErrUnauthorized
		}
		typ, res := EventOf(body)
		sum := sha256.Sum256(body)
		// First sight (or older than the window) inserts or refreshes the row
		// and returns it; a repeat within the window returns nothing.
		var fresh bool
		err = tx.QueryRow(ctx, `INSERT INTO vomosync.webhook_deliveries (customer_id, body_sha256, event_type)
			VALUES ($1, $2, $3)
			ON CONFLICT (customer_id, body_sha256) DO UPDATE SET received_at = now()
				WHERE vomosync.webhook_deliveries.received_at < now() - $4::interval
			RETURNING true`, customer, sum[:], typ, window).Scan(&fresh)
		if errors.Is(err, pgx.ErrNoRows) {
			out = Replayed
			return nil
		}
		if err != nil {
			return fmt.Errorf("record delivery: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM vomosync.webhook_deliveries WHERE customer_id = $1 AND received_at < now() - $2::interval`,
			customer, 2*window); err != nil {
			return fmt.Errorf("forget old deliveries: %w", err)
		}
		if res == "" {
			out = Ignored
			return nil
		}
		// Only sooner: a pair already due or paused is left as it is.
		if _, err := tx.Exec(ctx, `UPDATE vomosync.schedules SET next_run_at = now()
			WHERE customer_id = $1 AND resource = $2 AND kind = 'poll' AND NOT paused AND next_run_at > now()`,
			customer, res); err != nil {
			return fmt.Errorf("make %s due: %w", res, err)
		}
		out = Triggered
		return nil
	})
	return out, err
}

// binding is what a webhook secret's encryption is bound to, so neither an
// API token nor another customer's secret decrypts as this one.
func binding(customer string) string { return "webhook:" + customer }

func loadSecret(ctx context.Context, tx pgx.Tx, keys *secrets.Keyring, customer string) ([]byte, error) {
	var s secrets.Sealed
	err := tx.QueryRow(ctx, `SELECT ciphertext, wrapped_key, kek_id FROM vomosync.webhook_secrets WHERE customer_id = $1`, customer).
		Scan(&s.Ciphertext, &s.WrappedKey, &s.KEKID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNoSecret
	}
	if err != nil {
		return nil, fmt.Errorf("webhook secret of %s: %w", customer, err)
	}
	secret, err := keys.Open(binding(customer), s)
	if err != nil {
		return nil, fmt.Errorf("webhook secret of %s: %w", customer, err)
	}
	return secret, nil
}

// SetSecret stores (or replaces) the customer's webhook secret, encrypted.
func SetSecret(ctx context.Context, db DB, keys *secrets.Keyring, customer, secret string) error {
	if secret == "" {
		return errors.New("webhook secret is empty")
	}
	sealed, err := keys.Seal(binding(customer), []byte(secret))
	if err != nil {
		return fmt.Errorf("seal webhook secret: %w", err)
	}
	_, err = db.Exec(ctx, `INSERT INTO vomosync.webhook_secrets (customer_id, ciphertext, wrapped_key, kek_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (customer_id) DO UPDATE SET ciphertext = EXCLUDED.ciphertext, wrapped_key = EXCLUDED.wrapped_key,
			kek_id = EXCLUDED.kek_id, updated_at = now()`, customer, sealed.Ciphertext, sealed.WrappedKey, sealed.KEKID)
	if err != nil {
		return fmt.Errorf("store webhook secret of %s: %w", customer, err)
	}
	return nil
}

// RewrapSecrets moves every webhook secret's data key to keys' current KEK
// (the rotation step `syncctl customers rewrap` runs for API tokens too).
// It returns how many it re-wrapped.
func RewrapSecrets(ctx context.Context, db interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}, keys *secrets.Keyring) (int, error) {
	rows, err := db.Query(ctx, `SELECT customer_id, ciphertext, wrapped_key, kek_id FROM vomosync.webhook_secrets
		WHERE kek_id <> $1 ORDER BY customer_id`, keys.CurrentID())
	if err != nil {
		return 0, fmt.Errorf("rewrap webhook secrets: %w", err)
	}
	type item struct {
		customer string
		sealed   secrets.Sealed
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (item, error) {
		var it item
		return it, r.Scan(&it.customer, &it.sealed.Ciphertext, &it.sealed.WrappedKey, &it.sealed.KEKID)
	})
	if err != nil {
		return 0, fmt.Errorf("rewrap webhook secrets: %w", err)
	}
	for i, it := range items {
		r, err := keys.Rewrap(binding(it.customer), it.sealed)
		if err != nil {
			return i, fmt.Errorf("rewrap webhook secret of %s: %w", it.customer, err)
		}
		if _, err := db.Exec(ctx, `UPDATE vomosync.webhook_secrets SET wrapped_key = $2, kek_id = $3, updated_at = now()
			WHERE customer_id = $1 AND kek_id = $4`, it.customer, r.WrappedKey, r.KEKID, it.sealed.KEKID); err != nil {
			return i, fmt.Errorf("rewrap webhook secret of %s: %w", it.customer, err)
		}
	}
	return len(items), nil
}
