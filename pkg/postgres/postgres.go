// Package postgres owns the connection pool and the one ordered set of
// embedded migrations for the vomosync schema.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Settings is the database block of every service's configuration.
type Settings struct {
	URL            string        `env:"DATABASE_URL,required,notEmpty"`
	MaxConns       int32         `env:"DATABASE_MAX_CONNS" envDefault:"8"`
	ConnectTimeout time.Duration `env:"DATABASE_CONNECT_TIMEOUT" envDefault:"30s"`
	// TenantOnly leaves out the all-tenants service scope: the connections
	// see only the customer a transaction names (WithTenant), nothing else.
	// Every service serves all customers, so only tests set it.
	TenantOnly bool
}

// Row-level security parameters (migration 0500, docs/security.md).
const (
	// ScopeParam = ScopeAll is the all-tenants service scope of a connection.
	ScopeParam = "vomosync.scope"
	ScopeAll   = "all"
	// TenantParam names the one customer a transaction may see and write.
	TenantParam = "vomosync.tenant"
)

// Connect opens a pool and pings it, retrying with backoff until timeout,
// then fails with an error that names the host (never the password).
func Connect(ctx context.Context, s Settings) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(s.URL)
	if err != nil {
		return nil, errors.New("DATABASE_URL is not a valid PostgreSQL URL or DSN")
	}
	if s.MaxConns > 0 {
		cfg.MaxConns = s.MaxConns
	}
	// JIT compiles large merge statements for ~400ms each (performance.md):
	// never worth it for our short OLTP statements.
	cfg.ConnConfig.RuntimeParams["jit"] = "off"
	cfg.ConnConfig.RuntimeParams["application_name"] = "vomosync"
	if !s.TenantOnly {
		cfg.ConnConfig.RuntimeParams[ScopeParam] = ScopeAll
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	timeout := s.ConnectTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	var lastErr error
	for attempt := 1; ; attempt++ {
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = pool.Ping(pctx)
			cancel()
			if err == nil {
				return pool, nil
			}
			pool.Close()
		}
		lastErr = err
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("postgres unreachable at %s after %d attempts over %s: %w", where, attempt, timeout, lastErr)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("postgres connect %s: %w (last error: %v)", where, ctx.Err(), lastErr)
		case <-time.After(min(time.Duration(attempt)*250*time.Millisecond, 3*time.Second)):
		}
	}
}
