package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ErrNoTenant is returned by WithTenant for an empty customer id: an empty
// tenant would fall back to the connection's service scope.
var ErrNoTenant = errors.New("postgres: no tenant named")

// Beginner starts a transaction (a *pgxpool.Pool, a *pgx.Conn).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// WithTenant runs fn in a transaction that row-level security limits to
// customer: it sees and writes that customer's rows only, whatever the
// connection's scope. Customer-scoped code paths (a customer's console
// session, a per-customer CLI view) use it so the database enforces the
// isolation their queries already intend. fn's error rolls back.
func WithTenant(ctx context.Context, db Beginner, customer string, fn func(pgx.Tx) error) error {
	if customer == "" {
		return ErrNoTenant
	}
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config($1, $2, true)`, TenantParam, customer); err != nil {
			return fmt.Errorf("set tenant %s: %w", customer, err)
		}
		return fn(tx)
	})
}
