package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultAdminURL is the machine's PostgreSQL (PGTEST_URL overrides, as in
// pkg/pgtest).
func DefaultAdminURL() string {
	if u := os.Getenv("PGTEST_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// PGBinDir holds initdb and pg_ctl.
const PGBinDir = "/usr/lib/postgresql/15/bin"

// Cluster is a PostgreSQL cluster of the run's own (initdb + pg_ctl in a
// temporary directory, random port), so a scenario can stop it with
// `pg_ctl stop -m immediate` or put its data directory on a small
// filesystem. PostgreSQL refuses to run as root, so its commands run as the
// postgres OS user.
type Cluster struct {
	Dir     string // owned by postgres; holds data/, the socket and the log
	DataDir string
	Port    int
	cred    *syscall.Credential
}

// ErrNoPostgresUser means the machine has no postgres OS user to run a
// cluster as.
var ErrNoPostgresUser = errors.New("no postgres OS user to run an own cluster")

// InitCluster creates a cluster in dir (created if needed; its data
// directory may be a mount point prepared by the caller) and starts it.
func InitCluster(ctx context.Context, dir string) (*Cluster, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoPostgresUser, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	c := &Cluster{Dir: dir, DataDir: filepath.Join(dir, "data"),
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, err
	}
	for _, d := range []string{dir, c.DataDir} {
		if err := os.Chown(d, int(uid), int(gid)); err != nil {
			return nil, fmt.Errorf("chown %s: %w", d, err)
		}
	}
	if err := os.Chmod(c.DataDir, 0o700); err != nil { // #nosec G302 -- a directory needs x, and PostgreSQL requires exactly 0700
		return nil, err
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	_, p, _ := net.SplitHostPort(addr)
	c.Port, _ = strconv.Atoi(p)
	if out, err := c.pg(ctx, "initdb", "-D", c.DataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	conf := fmt.Sprintf("\n# chaos harness\nport = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nfsync = on\nsynchronous_commit = on\nmax_connections = 60\n", c.Port, c.Dir)
	f, err := os.OpenFile(filepath.Join(c.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString(conf)
	_ = f.Close()
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) pg(ctx context.Context, prog string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(PGBinDir, prog), args...) // #nosec G204 -- fixed PostgreSQL binaries
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
	cmd.Dir = c.Dir
	return cmd.CombinedOutput()
}

// AdminURL connects to the cluster's postgres database.
func (c *Cluster) AdminURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
}

// Start starts the cluster and waits until it accepts connections (crash
// recovery after an immediate stop included).
func (c *Cluster) Start(ctx context.Context) error {
	out, err := c.pg(ctx, "pg_ctl", "-D", c.DataDir, "-l", filepath.Join(c.Dir, "postgres.log"), "-w", "-t", "120", "start")
	if err != nil {
		return fmt.Errorf("pg_ctl start: %w: %s", err, out)
	}
	return nil
}

// StopImmediate stops the cluster the way a power cut would look to the
// database: no checkpoint, crash recovery at the next start.
func (c *Cluster) StopImmediate(ctx context.Context) error {
	out, err := c.pg(ctx, "pg_ctl", "-D", c.DataDir, "-m", "immediate", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m immediate: %w: %s", err, out)
	}
	return nil
}

// Stop stops the cluster (fast mode).
func (c *Cluster) Stop(ctx context.Context) error {
	out, err := c.pg(ctx, "pg_ctl", "-D", c.DataDir, "-m", "fast", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w: %s", err, out)
	}
	return nil
}

// LogTail returns the end of the server log.
func (c *Cluster) LogTail() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "postgres.log")) // #nosec G304 -- harness path
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Database is one run's database, created fresh and dropped by Drop.
type Database struct {
	AdminURL string
	URL      string
	Name     string
}

// CreateDatabase creates a database with a random name on the server at
// adminURL.
func CreateDatabase(ctx context.Context, adminURL string) (*Database, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL is not reachable at %s (start it: pg_ctlcluster --skip-systemctl-redirect 15 main start): %w", adminURL, err)
	}
	defer conn.Close(context.Background())
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "vschaos_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return nil, err
	}
	u.Path = "/" + name
	return &Database{AdminURL: adminURL, URL: u.String(), Name: name}, nil
}

// Drop removes the database, whoever is still connected.
func (d *Database) Drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.AdminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+d.Name+" WITH (FORCE)")
	return err
}
