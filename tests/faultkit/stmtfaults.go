package faultkit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATEs a statement fault can raise: what PostgreSQL reports when a
// serializable transaction conflicts, and when it breaks a deadlock.
const (
	SerializationFailure = "40001"
	DeadlockDetected     = "40P01"
)

//go:embed stmtfaults.sql
var stmtFaultsSQL string

// DB is what the installers need of a connection or pool. It must connect
// as a role allowed to create schemas and triggers on the chosen tables
// (the tables' owner or a superuser).
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// StatementFault makes a share of the statements writing one table fail.
type StatementFault struct {
	// Table is the table, schema-qualified ("vomosync.sync_state"). For a
	// partitioned table, statements on the parent are affected.
	Table string
	// SQLState is SerializationFailure or DeadlockDetected.
	SQLState string
	// Share of INSERT, UPDATE and DELETE statements (an upsert draws twice)
	// that fail, in [0, 1].
	Share float64
}

// InstallStatementFaults installs the fault trigger into the database db is
// connected to and sets the given faults (replacing the share of a fault
// already set for the same table and SQLSTATE). Install again to change
// shares while the application runs; RemoveStatementFaults undoes all.
func InstallStatementFaults(ctx context.Context, db DB, faults ...StatementFault) error {
	for _, f := range faults {
		if f.SQLState != SerializationFailure && f.SQLState != DeadlockDetected {
			return fmt.Errorf("faultkit: SQLSTATE %q: want %s or %s", f.SQLState, SerializationFailure, DeadlockDetected)
		}
		if f.Share < 0 || f.Share > 1 {
			return fmt.Errorf("faultkit: share %g of %s: want [0, 1]", f.Share, f.Table)
		}
	}
	if _, err := db.Exec(ctx, stmtFaultsSQL); err != nil {
		return fmt.Errorf("faultkit: install statement faults: %w", err)
	}
	for _, f := range faults {
		var reg string
		if err := db.QueryRow(ctx, `SELECT $1::regclass::text`, f.Table).Scan(&reg); err != nil {
			return fmt.Errorf("faultkit: table %s: %w", f.Table, err)
		}
		if _, err := db.Exec(ctx, `INSERT INTO faultkit.rules (tbl, sqlstate, share) VALUES ($1::regclass, $2, $3)
			ON CONFLICT (tbl, sqlstate) DO UPDATE SET share = EXCLUDED.share`, f.Table, f.SQLState, f.Share); err != nil {
			return fmt.Errorf("faultkit: set fault on %s: %w", f.Table, err)
		}
		// One trigger per table, whatever its faults; reg is quoted by regclass.
		if _, err := db.Exec(ctx, `DROP TRIGGER IF EXISTS faultkit_stmt ON `+reg+`;
			CREATE TRIGGER faultkit_stmt BEFORE INSERT OR UPDATE OR DELETE ON `+reg+`
			FOR EACH STATEMENT EXECUTE FUNCTION faultkit.maybe_fail()`); err != nil {
			return fmt.Errorf("faultkit: trigger on %s: %w", f.Table, err)
		}
	}
	return nil
}

// PauseStatementFaults sets every share to 0 (triggers stay; cheap to resume
// with InstallStatementFaults).
func PauseStatementFaults(ctx context.Context, db DB) error {
	if _, err := db.Exec(ctx, `UPDATE faultkit.rules SET share = 0`); err != nil {
		return fmt.Errorf("faultkit: pause statement faults: %w", err)
	}
	return nil
}

// FiredStatementFaults returns how many statements each SQLSTATE failed
// since installation (sequences: failed transactions roll back rows).
func FiredStatementFaults(ctx context.Context, db DB) (map[string]int64, error) {
	out := map[string]int64{}
	for _, st := range []string{SerializationFailure, DeadlockDetected} {
		var n int64
		err := db.QueryRow(ctx, `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM faultkit.fired_`+strings.ToLower(st)).Scan(&n)
		if err != nil {
			return nil, fmt.Errorf("faultkit: read fired faults: %w", err)
		}
		out[st] = n
	}
	return out, nil
}

// RemoveStatementFaults drops every fault trigger and the faultkit schema.
// Removing from a database without them is not an error.
func RemoveStatementFaults(ctx context.Context, db DB) error {
	_, err := db.Exec(ctx, `DO $$
	DECLARE t record;
	BEGIN
		IF to_regnamespace('faultkit') IS NULL THEN RETURN; END IF;
		FOR t IN SELECT tgrelid::regclass::text AS tbl FROM pg_trigger WHERE tgname = 'faultkit_stmt' LOOP
			EXECUTE format('DROP TRIGGER IF EXISTS faultkit_stmt ON %s', t.tbl);
		END LOOP;
		DROP SCHEMA faultkit CASCADE;
	END $$`)
	if err != nil {
		return fmt.Errorf("faultkit: remove statement faults: %w", err)
	}
	return nil
}

// IsInjected reports whether err is a statement fault of this package.
func IsInjected(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && strings.HasPrefix(pe.Message, "faultkit: injected")
}

// Terminator resets a share of an application's PostgreSQL connections, as
// a failover or a network cut would: pg_terminate_backend on backends of
// one database and application_name, optionally only those in a statement
// or a transaction.
type Terminator struct {
	// DB is a connection or pool allowed to terminate the backends (a
	// superuser, or a member of pg_signal_backend); its own backend is spared.
	DB DB
	// Database whose backends are chosen.
	Database string
	// ApplicationName whose backends are chosen ("vomosync" for every
	// service; empty chooses every client backend of the database).
	ApplicationName string
	// Share of the matching backends terminated each round, in [0, 1].
	Share float64
	// BusyOnly spares idle backends: only those running a statement or
	// inside a transaction are cut, so the cut lands mid-statement.
	BusyOnly bool
	// Every is the pause between rounds of Run.
	Every time.Duration
}

// Once terminates one round's share of backends and returns how many.
func (t *Terminator) Once(ctx context.Context) (int, error) {
	states := []string{"active", "idle", "idle in transaction", "idle in transaction (aborted)", "fastpath function call"}
	if t.BusyOnly {
		states = []string{"active", "idle in transaction", "idle in transaction (aborted)"}
	}
	var n int
	err := t.DB.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity
		WHERE datname = $1 AND ($2 = '' OR application_name = $2) AND pid <> pg_backend_pid()
		  AND backend_type = 'client backend' AND state = ANY($3) AND random() < $4`,
		t.Database, t.ApplicationName, states, t.Share).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("faultkit: terminate backends: %w", err)
	}
	return n, nil
}

// Run terminates backends every Every until ctx ends; it returns the total
// terminated. Errors of one round (the database restarting) are skipped.
func (t *Terminator) Run(ctx context.Context) int {
	every := t.Every
	if every <= 0 {
		every = time.Second
	}
	total := 0
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return total
		case <-tick.C:
		}
		if n, err := t.Once(ctx); err == nil {
			total += n
		}
	}
}
