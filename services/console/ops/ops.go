// Package ops is the operator's read model of vomosync and the audit of
// operator actions: customer and pair health (one definition of
// "anomalous", the pair_health view), poll cycles, a record's audit trail,
// reconciliation gaps, API errors, and pause/resume with their reason. The
// console renders it and syncctl prints it, so both answer the same way.
package ops

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DBTX is what the queries need of a pool or a transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Sentinel errors.
var (
	// ErrNotFound: no such customer, pair or record.
	ErrNotFound = errors.New("not found")
	// ErrNeedsReason: pausing and resuming record why.
	ErrNeedsReason = errors.New("a reason is required")
)
