package destination

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/vomosync/vomosync/pkg/customer"
)

// Target is a resolved destination and the key of the group of customers
// that share it (one write per group and batch).
type Target struct {
	Key  string
	Dest Destination
}

// Secrets resolves a signing-key reference to the key. References are names;
// the keys themselves never live in customer settings.
type Secrets interface {
	Secret(ref string) ([]byte, error)
}

// ErrNoSecret: the reference names no configured secret.
var ErrNoSecret = errors.New("secret not configured")

// StaticSecrets serves secrets from a map (PROCESSOR_SIGNING_KEYS) and then
// from files named by the reference in Dir (a mounted Kubernetes secret).
type StaticSecrets struct {
	Keys map[string]string
	Dir  string
}

// Secret implements Secrets.
func (s StaticSecrets) Secret(ref string) ([]byte, error) {
	if v, ok := s.Keys[ref]; ok && v != "" {
		return []byte(v), nil
	}
	if s.Dir != "" && filepath.Base(ref) == ref && ref != "." && ref != ".." {
		b, err := os.ReadFile(filepath.Join(s.Dir, ref)) // #nosec G304 -- ref is a bare file name (checked above) in the mounted secrets directory
		if err == nil && len(b) > 0 {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrNoSecret, ref)
}

// Resolver builds each customer's destination from its effective settings
// and reuses it while the settings stay the same.
type Resolver struct {
	// DB creates custom destination schemas on first use.
	DB interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	}
	Secrets     Secrets
	HTTPTimeout time.Duration
	// DryRun is the destination of customers configured with kind dry_run
	// (and of every customer when ForceDryRun is set, as replay does).
	DryRun      *DryRun
	ForceDryRun bool

	mu       sync.Mutex
	ensureMu sync.Mutex
	schemas  map[string]bool
	cache    map[string]cached
}

type cached struct {
	conf customer.Destination
	t    Target
}

// For returns the customer's destination. Errors wrap ErrRejected when the
// configuration can never work as it is (bad schema name, forbidden URL,
// missing signing key) and are worth retrying otherwise.
func (r *Resolver) For(ctx context.Context, c customer.Customer) (Target, error) {
	d := c.Settings.Effective().Destination
	if r.ForceDryRun {
		d = customer.Destination{Kind: "dry_run"}
	}
	r.mu.Lock()
	if r.cache == nil {
		r.cache, r.schemas = map[string]cached{}, map[string]bool{}
	}
	if e, ok := r.cache[c.ID]; ok && e.conf == d {
		r.mu.Unlock()
		return e.t, nil
	}
	r.mu.Unlock()
	t, err := r.build(ctx, c.ID, d)
	if err != nil {
		return Target{}, err
	}
	r.mu.Lock()
	r.cache[c.ID] = cached{conf: d, t: t}
	r.mu.Unlock()
	return t, nil
}

func (r *Resolver) build(ctx context.Context, id string, d customer.Destination) (Target, error) {
	switch d.Kind {
	case "dry_run":
		if r.DryRun == nil {
			r.mu.Lock()
			if r.DryRun == nil {
				r.DryRun = &DryRun{Limit: 1000}
			}
			r.mu.Unlock()
		}
		return Target{Key: "dry_run", Dest: r.DryRun}, nil
	case "postgres":
		p, err := NewPostgres(d.Schema, d.DeleteMode == "hard")
		if err != nil {
			return Target{}, err
		}
		if err := r.ensureSchema(ctx, d.Schema); err != nil {
			return Target{}, err
		}
		return Target{Key: "postgres:" + d.Schema + ":" + d.DeleteMode, Dest: p}, nil
	case "http":
		var key []byte
		if d.SigningKey != "" {
			if r.Secrets == nil {
				return Target{}, fmt.Errorf("%w: signing key %q: no secrets configured", ErrRejected, d.SigningKey)
			}
			k, err := r.Secrets.Secret(d.SigningKey)
			if err != nil {
				return Target{}, fmt.Errorf("%w: signing key: %v", ErrRejected, err)
			}
			key = k
		}
		h, err := NewHTTP(d.URL, key, d.AllowPrivate, r.timeout())
		if err != nil {
			return Target{}, fmt.Errorf("%w: %v", ErrRejected, err)
		}
		return Target{Key: "http:" + id, Dest: h}, nil
	default:
		return Target{}, fmt.Errorf("%w: destination kind %q", ErrRejected, d.Kind)
	}
}

func (r *Resolver) timeout() time.Duration {
	if r.HTTPTimeout > 0 {
		return r.HTTPTimeout
	}
	return 10 * time.Second
}

func (r *Resolver) ensureSchema(ctx context.Context, schema string) error {
	r.ensureMu.Lock() // one creation at a time, the others wait for it
	defer r.ensureMu.Unlock()
	r.mu.Lock()
	done := r.schemas[schema]
	r.mu.Unlock()
	if done || r.DB == nil {
		return nil
	}
	if err := EnsureSchema(ctx, r.DB, schema); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	r.mu.Lock()
	r.schemas[schema] = true
	r.mu.Unlock()
	return nil
}
