package faultkit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/tests/faultkit"
)

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestStatementFaults(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db := pgtest.NewEmpty(t)
	_, err := db.Pool.Exec(ctx, `CREATE SCHEMA app; CREATE TABLE app.t (x int); CREATE TABLE app.other (x int);
		CREATE TABLE app.parted (d date, x int) PARTITION BY RANGE (d);
		CREATE TABLE app.parted_1 PARTITION OF app.parted FOR VALUES FROM ('2000-01-01') TO ('3000-01-01')`)
	require.NoError(t, err)
	insert := func(table string) error {
		_, err := db.Pool.Exec(ctx, `INSERT INTO `+table+` (x) VALUES (1)`)
		return err
	}

	require.NoError(t, faultkit.InstallStatementFaults(ctx, db.Pool,
		faultkit.StatementFault{Table: "app.t", SQLState: faultkit.SerializationFailure, Share: 1},
		faultkit.StatementFault{Table: "app.parted", SQLState: faultkit.DeadlockDetected, Share: 1}))
	err = insert("app.t")
	require.Equal(t, "40001", sqlState(err), "%v", err)
	require.True(t, faultkit.IsInjected(err))
	_, err = db.Pool.Exec(ctx, `UPDATE app.t SET x = 2`)
	require.Equal(t, "40001", sqlState(err))
	_, err = db.Pool.Exec(ctx, `INSERT INTO app.parted (d, x) VALUES ('2026-01-01', 1)`)
	require.Equal(t, "40P01", sqlState(err), "a partitioned table, through its parent")
	require.NoError(t, insert("app.other"), "other tables are untouched")
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM app.t`).Scan(&n), "reads are untouched")

	// The failure aborts the whole transaction, as a real one does.
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO app.other (x) VALUES (2)`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO app.t (x) VALUES (2)`)
		return err
	})
	require.Equal(t, "40001", sqlState(err))
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM app.other WHERE x = 2`).Scan(&n))
	require.Zero(t, n)

	// A share: about that many statements fail, and each one is counted.
	require.NoError(t, faultkit.InstallStatementFaults(ctx, db.Pool,
		faultkit.StatementFault{Table: "app.t", SQLState: faultkit.SerializationFailure, Share: 0.3}))
	before, err := faultkit.FiredStatementFaults(ctx, db.Pool)
	require.NoError(t, err)
	failed := 0
	const tries = 500
	for range tries {
		if err := insert("app.t"); err != nil {
			require.Equal(t, "40001", sqlState(err))
			failed++
		}
	}
	require.InDelta(t, 0.3*tries, failed, 0.1*tries, "about 30%% of %d statements", tries)
	after, err := faultkit.FiredStatementFaults(ctx, db.Pool)
	require.NoError(t, err)
	require.EqualValues(t, failed, after[faultkit.SerializationFailure]-before[faultkit.SerializationFailure])
	require.EqualValues(t, 1, after[faultkit.DeadlockDetected])

	require.NoError(t, faultkit.PauseStatementFaults(ctx, db.Pool))
	require.NoError(t, insert("app.t"))

	require.NoError(t, faultkit.RemoveStatementFaults(ctx, db.Pool))
	require.NoError(t, faultkit.RemoveStatementFaults(ctx, db.Pool), "removing twice is fine")
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgname = 'faultkit_stmt'`).Scan(&n))
	require.Zero(t, n)
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'faultkit'`).Scan(&n))
	require.Zero(t, n)
	require.NoError(t, faultkit.InstallStatementFaults(ctx, db.Pool,
		faultkit.StatementFault{Table: "app.t", SQLState: faultkit.SerializationFailure, Share: 1}), "install again after removal")

	require.Error(t, faultkit.InstallStatementFaults(ctx, db.Pool, faultkit.StatementFault{Table: "app.t", SQLState: "23505", Share: 1}))
	require.Error(t, faultkit.InstallStatementFaults(ctx, db.Pool, faultkit.StatementFault{Table: "app.t", SQLState: "40001", Share: 2}))
	require.Error(t, faultkit.InstallStatementFaults(ctx, db.Pool, faultkit.StatementFault{Table: "app.missing", SQLState: "40001", Share: 1}))
}

func TestTerminatorCutsTheApplicationsBackends(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db := pgtest.NewEmpty(t)
	open := func(app string) *pgxpool.Pool {
		cfg, err := pgxpool.ParseConfig(db.URL)
		require.NoError(t, err)
		cfg.ConnConfig.RuntimeParams["application_name"] = app
		cfg.MaxConns = 2
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		return pool
	}
	victim, bystander := open("vomosync-test-victim"), open("vomosync-test-bystander")
	require.NoError(t, bystander.Ping(ctx))

	busy := make(chan error, 1)
	go func() {
		_, err := victim.Exec(ctx, `SELECT pg_sleep(30)`)
		busy <- err
	}()
	term := &faultkit.Terminator{DB: db.Pool, Database: db.Name, ApplicationName: "vomosync-test-victim", Share: 1, BusyOnly: true}
	require.Eventually(t, func() bool {
		n, err := term.Once(ctx)
		require.NoError(t, err)
		return n == 1
	}, 10*time.Second, 20*time.Millisecond)
	err := <-busy
	require.Error(t, err, "the statement in flight is cut")
	require.Equal(t, "57P01", sqlState(err), "admin shutdown, as a failover reports it")

	var one int
	require.NoError(t, victim.QueryRow(ctx, `SELECT 1`).Scan(&one), "the pool reconnects")
	require.NoError(t, bystander.QueryRow(ctx, `SELECT 1`).Scan(&one), "other applications are spared")
	// Share 0 terminates nothing.
	term.Share, term.BusyOnly = 0, false
	n, err := term.Once(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
}
