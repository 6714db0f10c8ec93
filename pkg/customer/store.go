package customer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/secrets"
)

// Sentinel errors of the customer store.
var (
	ErrNotFound = errors.New("customer not found")
	ErrExists   = errors.New("customer already exists")
)

// DBTX is what the store needs of a pool or a transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Customer is a customer without its token.
type Customer struct {
	ID           string
	Name         string
	APIBaseURL   string
	Resources    []string
	Status       string
	StatusReason string
	Settings     Settings // as stored; call Settings.Effective() for defaults
	CreatedAt    time.Time
}

// New is what `syncctl customers add` collects.
type New struct {
	ID         string
	Name       string
	APIBaseURL string
	Token      string
	Resources  []string
	Settings   Settings
}

// Store reads and writes customers.
type Store struct {
	db   DBTX
	keys *secrets.Keyring
}

// NewStore returns a store; keys may be nil for read-only users (console),
// which then cannot read tokens.
func NewStore(db DBTX, keys *secrets.Keyring) *Store { return &Store{db: db, keys: keys} }

// Add creates the customer, its encrypted token, its schedules and budget.
func (s *Store) Add(ctx context.Context, n New) error {
	if !messaging.ValidToken(n.ID) {
		return fmt.Errorf("customer id %q: use 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit", n.ID)
	}
	if n.Token == "" {
		return errors.New("token is required")
	}
	if len(n.Resources) == 0 {
		n.Resources = []string{Users}
	}
	for _, r := range n.Resources {
		if !KnownResource(r) {
			return fmt.Errorf("resource %q is not one of %v", r, AllResources)
		}
	}
	if err := n.Settings.Validate(); err != nil {
		return err
	}
	if n.APIBaseURL == "" {
		n.APIBaseURL = "https://api.vomo.org/v1"
	}
	if s.keys == nil {
		return errors.New("adding a customer needs VOMOSYNC_KEK")
	}
	sealed, err := s.keys.Seal(n.ID, []byte(n.Token))
	if err != nil {
		return fmt.Errorf("seal token: %w", err)
	}
	settings, err := json.Marshal(n.Settings)
	if err != nil {
		return fmt.Errorf("encode settings: %w", err)
	}
	_, err = s.db.Exec(ctx, `INSERT INTO vomosync.customers
		(id, name, api_base_url, token_ciphertext, token_wrapped_key, kek_id, resources, settings)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		n.ID, n.Name, n.APIBaseURL, sealed.Ciphertext, sealed.WrappedKey, sealed.KEKID, n.Resources, settings)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("%w: %s", ErrExists, n.ID)
	}
	if err != nil {
		return fmt.Errorf("insert customer %s: %w", n.ID, err)
	}
	if err := s.initCheckpoints(ctx, n.ID, n.Resources); err != nil {
		return err
	}
	return s.syncSchedules(ctx, n.ID, n.Resources, n.Settings.Effective())
}

// initCheckpoints starts newly enabled resources at epoch (an initial
// backfill). A checkpoint row that disappears later is a lost checkpoint,
// which the poller handles by the customer's recovery strategy, never by
// silently starting over.
func (s *Store) initCheckpoints(ctx context.Context, id string, resources []string) error {
	_, err := s.db.Exec(ctx, `INSERT INTO vomosync.checkpoints (customer_id, resource, position)
		SELECT $1, r, 'epoch' FROM unnest($2::text[]) AS r ON CONFLICT DO NOTHING`, id, resources)
	if err != nil {
		return fmt.Errorf("init checkpoints of %s: %w", id, err)
	}
	_, err = s.db.Exec(ctx, `INSERT INTO vomosync.api_budgets (customer_id, tokens) VALUES ($1, 1e9) ON CONFLICT DO NOTHING`, id)
	if err != nil {
		return fmt.Errorf("init budget of %s: %w", id, err)
	}
	return nil
}

// syncSchedules makes sure every enabled resource has its poll and
// reconciliation schedules. Full reconciliations are spread across the week
// by a hash of the customer and resource, so they never all run at once.
func (s *Store) syncSchedules(ctx context.Context, id string, resources []string, eff Settings) error {
	for _, r := range resources {
		h := fnv.New32a()
		_, _ = h.Write([]byte(id + "/" + r))
		spread := time.Duration(h.Sum32()%uint32(max(eff.Reconcile.FullEvery.D()/time.Minute, 1))) * time.Minute
		daily := time.Duration(h.Sum32()%(24*60)) * time.Minute
		_, err := s.db.Exec(ctx, `INSERT INTO vomosync.schedules (customer_id, resource, kind, cadence, next_run_at) VALUES
			($1, $2, 'poll', $3, now()),
			($1, $2, 'reconcile_daily', interval '24 hours', now() + $4::interval),
			($1, $2, 'reconcile_full', $5, now() + $6::interval)
			ON CONFLICT (customer_id, resource, kind) DO UPDATE SET cadence = EXCLUDED.cadence`,
			id, r, eff.Cadences[r].D(), daily, eff.Reconcile.FullEvery.D(), spread)
		if err != nil {
			return fmt.Errorf("schedule %s/%s: %w", id, r, err)
		}
	}
	return nil
}

const selectCustomer = `SELECT id, name, api_base_url, resources, status, status_reason, settings, created_at FROM vomosync.customers`

func scanCustomer(row pgx.Row) (Customer, error) {
	var c Customer
	var settings []byte
	err := row.Scan(&c.ID, &c.Name, &c.APIBaseURL, &c.Resources, &c.Status, &c.StatusReason, &settings, &c.CreatedAt)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(settings, &c.Settings); err != nil {
		return c, fmt.Errorf("customer %s settings: %w", c.ID, err)
	}
	return c, nil
}

// Get returns one customer.
func (s *Store) Get(ctx context.Context, id string) (Customer, error) {
	c, err := scanCustomer(s.db.QueryRow(ctx, selectCustomer+" WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return c, fmt.Errorf("get customer %s: %w", id, err)
	}
	return c, nil
}

// List returns every customer ordered by id.
func (s *Store) List(ctx context.Context) ([]Customer, error) {
	rows, err := s.db.Query(ctx, selectCustomer+" ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list customers: %w", err)
	}
	defer rows.Close()
	var out []Customer
	for rows.Next() {
		c, err := scanCustomer(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Token decrypts the customer's API token. Never log the result.
func (s *Store) Token(ctx context.Context, id string) (string, error) {
	if s.keys == nil {
		return "", errors.New("reading tokens needs VOMOSYNC_KEK")
	}
	var sealed secrets.Sealed
	err := s.db.QueryRow(ctx, `SELECT token_ciphertext, token_wrapped_key, kek_id FROM vomosync.customers WHERE id = $1`, id).
		Scan(&sealed.Ciphertext, &sealed.WrappedKey, &sealed.KEKID)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return "", fmt.Errorf("read token of %s: %w", id, err)
	}
	pt, err := s.keys.Open(id, sealed)
	if err != nil {
		return "", fmt.Errorf("token of %s: %w", id, err)
	}
	return string(pt), nil
}

// SetStatus pauses, resumes or disables a customer with a reason in words.
func (s *Store) SetStatus(ctx context.Context, id, status, reason string) error {
	tag, err := s.db.Exec(ctx, `UPDATE vomosync.customers SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1`, id, status, reason)
	if err != nil {
		return fmt.Errorf("set status of %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return nil
}

// SetToken replaces the customer's token (rotation by the customer's admin).
func (s *Store) SetToken(ctx context.Context, id, token string) error {
	sealed, err := s.keys.Seal(id, []byte(token))
	if err != nil {
		return fmt.Errorf("seal token: %w", err)
	}
	tag, err := s.db.Exec(ctx, `UPDATE vomosync.customers SET token_ciphertext = $2, token_wrapped_key = $3, kek_id = $4, updated_at = now() WHERE id = $1`,
		id, sealed.Ciphertext, sealed.WrappedKey, sealed.KEKID)
	if err != nil {
		return fmt.Errorf("set token of %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return nil
}

// SetSettings replaces the customer's settings and resources and re-syncs schedules.
func (s *Store) SetSettings(ctx context.Context, id string, resources []string, st Settings) error {
	if err := st.Validate(); err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode settings: %w", err)
	}
	prev, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	var added []string
	for _, r := range resources {
		if !slices.Contains(prev.Resources, r) {
			added = append(added, r)
		}
	}
	if err := s.initCheckpoints(ctx, id, added); err != nil {
		return err
	}
	tag, err := s.db.Exec(ctx, `UPDATE vomosync.customers SET settings = $2, resources = $3, updated_at = now() WHERE id = $1`, id, b, resources)
	if err != nil {
		return fmt.Errorf("set settings of %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return s.syncSchedules(ctx, id, resources, st.Effective())
}

// Rewrap moves every token sealed under an older key-encryption key to the
// current one (KEK rotation), without decrypting the tokens themselves. It
// returns how many were re-wrapped.
func (s *Store) Rewrap(ctx context.Context) (int, error) {
	if s.keys == nil {
		return 0, errors.New("re-wrapping needs VOMOSYNC_KEK (new) and VOMOSYNC_KEK_PREVIOUS (old)")
	}
	rows, err := s.db.Query(ctx, `SELECT id, token_ciphertext, token_wrapped_key, kek_id FROM vomosync.customers WHERE kek_id <> $1 ORDER BY id`, s.keys.CurrentID())
	if err != nil {
		return 0, fmt.Errorf("rewrap: %w", err)
	}
	type item struct {
		id     string
		sealed secrets.Sealed
	}
	var items []item
	for rows.Next() {
		var it item
		if err := rows.Scan(&it.id, &it.sealed.Ciphertext, &it.sealed.WrappedKey, &it.sealed.KEKID); err != nil {
			rows.Close()
			return 0, fmt.Errorf("rewrap: %w", err)
		}
		items = append(items, it)
	}
	rows.Close()
	for i, it := range items {
		r, err := s.keys.Rewrap(it.id, it.sealed)
		if err != nil {
			return i, fmt.Errorf("rewrap token of %s: %w", it.id, err)
		}
		if _, err := s.db.Exec(ctx, `UPDATE vomosync.customers SET token_wrapped_key = $2, kek_id = $3, updated_at = now() WHERE id = $1 AND kek_id = $4`,
			it.id, r.WrappedKey, r.KEKID, it.sealed.KEKID); err != nil {
			return i, fmt.Errorf("rewrap token of %s: %w", it.id, err)
		}
	}
	return len(items), nil
}
