package destination_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/services/processor/destination"
)

// state is what a destination holds for one record, read back by each
// implementation's harness.
type state struct {
	updated time.Time
	deleted bool
	name    string
}

// harness adapts one implementation to the contract suite.
type harness struct {
	dest destination.Destination
	// apply runs Apply as the processor would (inside a transaction where
	// the implementation needs one).
	apply func(ctx context.Context, ops []destination.Op) ([]error, error)
	// read returns the record's state; ok is false when it holds nothing.
	read func(ctx context.Context, customer, resource, externalID string) (state, bool)
}

var base = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func up(cust, res, id string, at time.Duration, name string) destination.Op {
	rec, _ := json.Marshal(map[string]any{"id": id, "first_name": name, "name": name})
	return destination.Op{CustomerID: cust, Resource: res, RecordID: id, ExternalID: destination.ExternalID(id),
		SourceUpdatedAt: base.Add(at), Record: rec, TraceID: "trace-" + id}
}

func del(cust, res, id string, at time.Duration) destination.Op {
	return destination.Op{CustomerID: cust, Resource: res, RecordID: id, ExternalID: destination.ExternalID(id),
		SourceUpdatedAt: base.Add(at), Delete: true}
}

// runContract is the behaviour every destination promises the processor.
func runContract(t *testing.T, newHarness func(t *testing.T) harness) {
	ctx := context.Background()
	t.Run("applies new records and keys them by external id", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		ops := []destination.Op{up("a", "users", "1", 0, "one"), up("a", "users", "2", 0, "two"), up("b", "users", "1", 0, "b-one")}
		res, err := h.apply(ctx, ops)
		require.NoError(t, err)
		require.Equal(t, []error{nil, nil, nil}, res)
		s, ok := h.read(ctx, "a", "users", "vomo-1")
		require.True(t, ok)
		require.Equal(t, "one", s.name)
		require.True(t, s.updated.Equal(base))
		s, ok = h.read(ctx, "b", "users", "vomo-1")
		require.True(t, ok)
		require.Equal(t, "b-one", s.name, "customers never share rows")
	})
	t.Run("same version again is stale and changes nothing", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		ops := []destination.Op{up("a", "users", "1", time.Minute, "one")}
		_, err := h.apply(ctx, ops)
		require.NoError(t, err)
		res, err := h.apply(ctx, ops)
		require.NoError(t, err)
		require.ErrorIs(t, res[0], destination.ErrStale)
	})
	t.Run("newest version wins whatever the order", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		res, err := h.apply(ctx, []destination.Op{up("a", "users", "1", 2*time.Minute, "new")})
		require.NoError(t, err)
		require.NoError(t, res[0])
		res, err = h.apply(ctx, []destination.Op{up("a", "users", "1", time.Minute, "old")})
		require.NoError(t, err)
		require.ErrorIs(t, res[0], destination.ErrStale)
		s, _ := h.read(ctx, "a", "users", "vomo-1")
		require.Equal(t, "new", s.name)
		res, err = h.apply(ctx, []destination.Op{up("a", "users", "1", 3*time.Minute, "newer")})
		require.NoError(t, err)
		require.NoError(t, res[0])
		s, _ = h.read(ctx, "a", "users", "vomo-1")
		require.Equal(t, "newer", s.name)
	})
	t.Run("delete hides the record and an older upsert cannot bring it back", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		_, err := h.apply(ctx, []destination.Op{up("a", "users", "1", 0, "one"), up("a", "users", "2", 0, "two")})
		require.NoError(t, err)
		res, err := h.apply(ctx, []destination.Op{del("a", "users", "1", time.Hour)})
		require.NoError(t, err)
		require.NoError(t, res[0])
		s, ok := h.read(ctx, "a", "users", "vomo-1")
		require.True(t, !ok || s.deleted)
		res, err = h.apply(ctx, []destination.Op{up("a", "users", "1", time.Minute, "zombie")})
		require.NoError(t, err)
		if res[0] == nil {
			// Only a hard delete may forget the record; then the
			// processor's sync state is what keeps the zombie out.
			s, ok = h.read(ctx, "a", "users", "vomo-1")
			require.True(t, ok)
			require.Equal(t, "zombie", s.name)
		} else {
			require.ErrorIs(t, res[0], destination.ErrStale)
			s, ok = h.read(ctx, "a", "users", "vomo-1")
			require.True(t, !ok || s.deleted)
		}
		s, ok = h.read(ctx, "a", "users", "vomo-2")
		require.True(t, ok && !s.deleted, "other records untouched")
	})
	t.Run("several resources in one call answer per op", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		_, err := h.apply(ctx, []destination.Op{up("a", "groups", "5", time.Hour, "g")})
		require.NoError(t, err)
		ops := []destination.Op{up("a", "groups", "5", time.Minute, "old"), up("a", "projects", "5", 0, "p"), up("a", "users", "5", 0, "u")}
		res, err := h.apply(ctx, ops)
		require.NoError(t, err)
		require.Len(t, res, 3)
		require.ErrorIs(t, res[0], destination.ErrStale)
		require.NoError(t, res[1])
		require.NoError(t, res[2])
	})
}

func TestPostgresContract(t *testing.T) {
	t.Parallel()
	for _, hard := range []bool{false, true} {
		t.Run(fmt.Sprintf("hard=%v", hard), func(t *testing.T) {
			t.Parallel()
			runContract(t, func(t *testing.T) harness { return postgresHarness(t, "vomo_dest", hard) })
		})
	}
	t.Run("custom schema", func(t *testing.T) {
		t.Parallel()
		runContract(t, func(t *testing.T) harness { return postgresHarness(t, "acme_sync", false) })
	})
}

func postgresHarness(t *testing.T, schema string, hard bool) harness {
	db := pgtest.New(t)
	ctx := context.Background()
	require.NoError(t, destination.EnsureSchema(ctx, db.Pool, schema))
	p, err := destination.NewPostgres(schema, hard)
	require.NoError(t, err)
	return harness{
		dest: p,
		apply: func(ctx context.Context, ops []destination.Op) ([]error, error) {
			var res []error
			err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
				var err error
				res, err = p.Apply(ctx, tx, ops)
				return err
			})
			return res, err
		},
		read: func(ctx context.Context, c, r, e string) (state, bool) {
			var s state
			var name *string
			err := db.Pool.QueryRow(ctx, `SELECT source_updated_at, deleted, record->>'name' FROM `+
				pgx.Identifier{schema, r}.Sanitize()+` WHERE customer_id = $1 AND external_id = $2`, c, e).Scan(&s.updated, &s.deleted, &name)
			if errors.Is(err, pgx.ErrNoRows) {
				return s, false
			}
			require.NoError(t, err)
			if name != nil {
				s.name = *name
			}
			return s, true
		},
	}
}

func TestDryRunContract(t *testing.T) {
	t.Parallel()
	runContract(t, func(t *testing.T) harness {
		d := &destination.DryRun{}
		return harness{
			dest:  d,
			apply: func(ctx context.Context, ops []destination.Op) ([]error, error) { return d.Apply(ctx, nil, ops) },
			read: func(_ context.Context, c, r, e string) (state, bool) {
				var s state
				found := false
				for _, op := range d.Ops() {
					if op.CustomerID == c && op.Resource == r && op.ExternalID == e {
						found = true
						s = state{updated: op.SourceUpdatedAt, deleted: op.Delete, name: s.name}
						if !op.Delete {
							var rec map[string]any
							_ = json.Unmarshal(op.Record, &rec)
							s.name, _ = rec["name"].(string)
						}
					}
				}
				return s, found
			},
		}
	})
}

func TestHTTPContract(t *testing.T) {
	t.Parallel()
	runContract(t, func(t *testing.T) harness {
		rcv := newReceiver(t, []byte("k3y"))
		h, err := destination.NewHTTP(rcv.srv.URL, []byte("k3y"), true, 2*time.Second)
		require.NoError(t, err)
		return harness{
			dest:  h,
			apply: func(ctx context.Context, ops []destination.Op) ([]error, error) { return h.Apply(ctx, nil, ops) },
			read:  rcv.read,
		}
	})
}

// receiver is a reference implementation of the endpoint a customer runs:
// it checks the signature, keeps the newest version per record and answers
// stale per op. A nil key accepts unsigned requests.
type receiver struct {
	t   *testing.T
	key []byte
	srv *httptest.Server

	mu       sync.Mutex
	rows     map[[3]string]state
	keys     map[string]int // Idempotency-Key -> requests
	requests int
	// fail, when set, answers the request instead (status, body).
	fail func(body wireBatch) (int, string)
}

type wireBatch struct {
	CustomerID string `json:"customer_id"`
	Resource   string `json:"resource"`
	Operations []struct {
		Op              string          `json:"op"`
		ExternalID      string          `json:"external_id"`
		SourceUpdatedAt time.Time       `json:"source_updated_at"`
		IdempotencyKey  string          `json:"idempotency_key"`
		Record          json.RawMessage `json:"record"`
	} `json:"operations"`
}

func newReceiver(t *testing.T, key []byte) *receiver {
	r := &receiver{t: t, key: key, rows: map[[3]string]state{}, keys: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if r.key != nil && !verify(r.key, body, req.Header.Get(destination.HeaderSignature)) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var b wireBatch
	if err := json.Unmarshal(body, &b); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.keys[req.Header.Get(destination.HeaderIdempotencyKey)]++
	if r.fail != nil {
		if code, msg := r.fail(b); code != 0 {
			w.WriteHeader(code)
			_, _ = io.WriteString(w, msg)
			return
		}
	}
	type result struct {
		IdempotencyKey string `json:"idempotency_key"`
		Status         string `json:"status"`
	}
	var out struct {
		Results []result `json:"results"`
	}
	for _, op := range b.Operations {
		k := [3]string{b.CustomerID, b.Resource, op.ExternalID}
		cur, ok := r.rows[k]
		if ok && !cur.updated.Before(op.SourceUpdatedAt) {
			out.Results = append(out.Results, result{op.IdempotencyKey, "stale"})
			continue
		}
		s := state{updated: op.SourceUpdatedAt, deleted: op.Op == "delete", name: cur.name}
		if op.Op == "upsert" {
			var rec map[string]any
			_ = json.Unmarshal(op.Record, &rec)
			s.name, _ = rec["name"].(string)
		}
		r.rows[k] = s
		out.Results = append(out.Results, result{op.IdempotencyKey, "applied"})
	}
	_ = json.NewEncoder(w).Encode(out)
}

func (r *receiver) read(_ context.Context, c, res, e string) (state, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.rows[[3]string{c, res, e}]
	return s, ok
}
