// Package pgtest gives each test its own freshly migrated PostgreSQL
// database, dropped at cleanup, so tests run in parallel and leave nothing.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vomosync/vomosync/pkg/postgres"
)

// AdminURL is the server tests create databases on (PGTEST_URL overrides).
func AdminURL() string {
	if u := os.Getenv("PGTEST_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// DB is one test database.
type DB struct {
	Pool *pgxpool.Pool
	URL  string
	Name string
}

// New creates, migrates and returns a database for t. A missing server fails
// the test with a message saying what to start; it is never skipped.
func New(t testing.TB) *DB {
	t.Helper()
	db := NewEmpty(t)
	if _, err := postgres.Migrate(context.Background(), db.Pool); err != nil {
		t.Fatalf("pgtest: migrate %s: %v", db.Name, err)
	}
	// AppURL works at once (a test may hand it to a binary).
	if err := EnsureAppLogin(context.Background(), db.Pool); err != nil {
		t.Fatalf("pgtest: application login role: %v", err)
	}
	return db
}

// AppLogin is the login role tests connect as to run with the application
// role's rights (a member of vomosync_app, as a service's login is in
// production). It is cluster-wide and shared by every test database.
const AppLogin = "vomosync_test_app"

// EnsureAppLogin creates AppLogin once per cluster (New and AppPool call
// it); pool needs CREATEROLE. Parallel tests may race to create it
// (advisory locks are per database), so a duplicate is fine.
func EnsureAppLogin(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `DO $$
	BEGIN
		IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '`+AppLogin+`') THEN
			BEGIN
				CREATE ROLE `+AppLogin+` LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS IN ROLE vomosync_app;
			EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
			END;
		END IF;
	END $$`)
	return err
}

// AppURL is db's URL as AppLogin (trust authentication, as the test
// server); for a database made by New.
func (db *DB) AppURL() string {
	u, _ := url.Parse(db.URL)
	u.User = url.User(AppLogin)
	return u.String()
}

// AppPool connects to db (migrated with New) as the application role, the
// way services connect: with the all-tenants service scope, or without it
// (tenantOnly) to see only what a transaction's tenant allows. Closed at
// cleanup.
func (db *DB) AppPool(t testing.TB, tenantOnly bool) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := EnsureAppLogin(ctx, db.Pool); err != nil {
		t.Fatalf("pgtest: application login role: %v", err)
	}
	pool, err := postgres.Connect(ctx, postgres.Settings{URL: db.AppURL(), MaxConns: 4, ConnectTimeout: 10 * time.Second, TenantOnly: tenantOnly})
	if err != nil {
		t.Fatalf("pgtest: connect as %s: %v", AppLogin, err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// NewEmpty creates a database without running migrations.
func NewEmpty(t testing.TB) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		t.Fatalf("pgtest: PostgreSQL is not reachable at %s (start it: pg_ctlcluster --skip-systemctl-redirect 15 main start): %v", AdminURL(), err)
	}
	defer admin.Close(context.Background())
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "vstest_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	u, _ := url.Parse(AdminURL())
	u.Path = "/" + name
	dbURL := u.String()
	pool, err := postgres.Connect(ctx, postgres.Settings{URL: dbURL, MaxConns: 8, ConnectTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(cctx, AdminURL())
		if err != nil {
			t.Logf("pgtest: cleanup connect: %v", err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(cctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
		}
	})
	return &DB{Pool: pool, URL: dbURL, Name: name}
}
