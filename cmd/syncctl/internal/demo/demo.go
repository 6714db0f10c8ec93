// Package demo runs the whole system on one machine without Docker: a fresh
// database, an embedded JetStream server, the simulator with the demo
// scenario, and every service as its own process.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/natsserver"
	"github.com/vomosync/vomosync/pkg/postgres"
	"github.com/vomosync/vomosync/pkg/secrets"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

// Config is the demo's environment.
type Config struct {
	AdminDatabaseURL string        `env:"DEMO_DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"`
	Database         string        `env:"DEMO_DATABASE" envDefault:"vomosync_demo"`
	NATSURL          string        `env:"NATS_URL"`
	For              time.Duration `env:"DEMO_FOR"`
	Dir              string        `env:"DEMO_DIR" envDefault:".demo"`
	Scenario         string        `env:"DEMO_SCENARIO" envDefault:"services/vomosim/scenarios/demo.yaml"`
	BinDir           string        `env:"DEMO_BIN"`
	NATSPort         int           `env:"DEMO_NATS_PORT" envDefault:"14222"`
	SimPort          int           `env:"DEMO_SIM_PORT" envDefault:"18090"`
}

// Demo is one run.
type Demo struct {
	Cfg   Config
	Out   io.Writer
	procs []*exec.Cmd
}

// Run runs the demo until ctx ends or Cfg.For passes.
func (d *Demo) Run(ctx context.Context) error {
	if d.Cfg.BinDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		d.Cfg.BinDir = filepath.Dir(exe)
	}
	dbURL, err := d.freshDatabase(ctx)
	if err != nil {
		return err
	}
	pool, err := postgres.Connect(ctx, postgres.Settings{URL: dbURL, MaxConns: 4, ConnectTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		return err
	}
	d.say("database %s migrated", d.Cfg.Database)

	natsURL := d.Cfg.NATSURL
	if natsURL == "" {
		dir := filepath.Join(d.Cfg.Dir, "nats")
		_ = os.RemoveAll(dir)
		srv, err := natsserver.Start(natsserver.Options{Port: d.Cfg.NATSPort, StoreDir: dir})
		if err != nil {
			return fmt.Errorf("embedded NATS on port %d: %w", d.Cfg.NATSPort, err)
		}
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
		natsURL = srv.ClientURL()
		d.say("embedded JetStream at %s (store %s)", natsURL, dir)
	}

	kb := make([]byte, 32)
	_, _ = rand.Read(kb)
	kek := base64.StdEncoding.EncodeToString(kb)
	simURL := fmt.Sprintf("http://127.0.0.1:%d", d.Cfg.SimPort)
	defer d.stopAll()
	if err := d.start("vomosim", map[string]string{"SIM_ADDR": fmt.Sprintf("127.0.0.1:%d", d.Cfg.SimPort),
		"SIM_SCENARIO": d.Cfg.Scenario, "ADMIN_ADDR": "127.0.0.1:18084"}); err != nil {
		return err
	}
	if err := waitHTTP(ctx, simURL+"/admin/customers", 60*time.Second); err != nil {
		return fmt.Errorf("vomosim did not come up: %w", err)
	}
	sc, err := sim.LoadScenario(d.Cfg.Scenario)
	if err != nil {
		return err
	}
	keys, err := secrets.NewKeyring(kek)
	if err != nil {
		return err
	}
	store := customer.NewStore(pool, keys)
	for _, c := range sc.Customers {
		err := store.Add(ctx, customer.New{ID: c.ID, Name: c.ID, APIBaseURL: simURL + "/v1", Token: c.Token, Resources: []string{"users"},
			Settings: customer.Settings{
				Cadences:        map[string]customer.Duration{"users": customer.Duration(5 * time.Second)},
				Settle:          customer.Duration(2 * time.Second),
				BudgetPerMinute: 6000, BudgetBurst: 50,
				Reconcile: customer.Reconcile{FullEvery: customer.Duration(time.Minute)},
			}})
		if err != nil {
			return err
		}
		d.say("customer %s added (%d users in vomosim)", c.ID, c.Users)
	}
	common := map[string]string{"DATABASE_URL": dbURL, "NATS_URL": natsURL, "VOMOSYNC_KEK": kek, "LOG_LEVEL": "info"}
	services := []struct {
		name  string
		admin int
		extra map[string]string
	}{
		{"processor", 18081, nil},
		{"poller", 18082, map[string]string{"POLLER_TICK": "500ms"}},
		{"reconciler", 18083, nil},
	}
	for _, s := range services {
		env := map[string]string{"ADMIN_ADDR": fmt.Sprintf("127.0.0.1:%d", s.admin)}
		for k, v := range common {
			env[k] = v
		}
		for k, v := range s.extra {
			env[k] = v
		}
		if err := d.start(s.name, env); err != nil {
			return err
		}
	}
	d.say(`
vomosync demo is running. Where to look:
  metrics     http://127.0.0.1:18081/metrics (processor), :18082 (poller), :18083 (reconciler)
  simulator   %s/admin/customers, %s/admin/customers/acme/truth/users
  status      DATABASE_URL=%q ./bin/syncctl status
  destination psql %q -c 'SELECT customer_id, count(*) FROM vomosync.sync_state WHERE NOT deleted GROUP BY 1'
  logs        %s/*.log
Ctrl-C stops everything.`, simURL, simURL, dbURL, dbURL, d.Cfg.Dir)

	wait := ctx
	if d.Cfg.For > 0 {
		var cancel context.CancelFunc
		wait, cancel = context.WithTimeout(ctx, d.Cfg.For)
		defer cancel()
	}
	<-wait.Done()
	// Stop the source's changes, give the pipeline a few cycles to drain,
	// then compare what the destination holds with the simulator's truth.
	rctx := context.WithoutCancel(ctx)
	for _, c := range sc.Customers {
		if err := httpDo(rctx, http.MethodDelete, simURL+"/admin/customers/"+c.ID+"/changes"); err != nil {
			d.say("stop changes of %s: %v", c.ID, err)
		}
	}
	d.say("changes stopped; letting the pipeline drain (up to 60s)")
	deadline := time.Now().Add(60 * time.Second)
	var rep []reportRow
	for {
		rep, err = d.compare(rctx, pool, simURL, sc)
		if err != nil {
			return err
		}
		if allMatch(rep) || time.Now().After(deadline) || ctx.Err() != nil && d.Cfg.For == 0 {
			break
		}
		time.Sleep(2 * time.Second)
	}
	d.say("stopping services")
	d.stopAll()
	return d.print(rep)
}

type reportRow struct {
	Customer              string
	Destination, Truth, M int
}

func allMatch(rep []reportRow) bool {
	for _, r := range rep {
		if r.Destination != r.Truth || r.M != r.Truth {
			return false
		}
	}
	return true
}

func (d *Demo) print(rep []reportRow) error {
	tw := tabwriter.NewWriter(d.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CUSTOMER\tDESTINATION\tVOMOSIM TRUTH\tSAME VERSION")
	for _, r := range rep {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", r.Customer, r.Destination, r.Truth, r.M)
	}
	return tw.Flush()
}

func httpDo(ctx context.Context, method, u string) error {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func (d *Demo) freshDatabase(ctx context.Context) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	admin, err := pgx.Connect(cctx, d.Cfg.AdminDatabaseURL)
	if err != nil {
		u, _ := url.Parse(d.Cfg.AdminDatabaseURL)
		host := "?"
		if u != nil {
			host = u.Host
		}
		return "", fmt.Errorf("PostgreSQL is not reachable at %s: start it (pg_ctlcluster --skip-systemctl-redirect 15 main start) or point DEMO_DATABASE_URL at one: %w", host, err)
	}
	defer admin.Close(context.Background())
	if d.Cfg.Database == "" || d.Cfg.Database == "postgres" {
		return "", errors.New("DEMO_DATABASE must name a scratch database (it is dropped and recreated)")
	}
	ident := pgx.Identifier{d.Cfg.Database}.Sanitize()
	if _, err := admin.Exec(cctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("drop demo database: %w", err)
	}
	if _, err := admin.Exec(cctx, "CREATE DATABASE "+ident); err != nil {
		return "", fmt.Errorf("create demo database: %w", err)
	}
	u, _ := url.Parse(d.Cfg.AdminDatabaseURL)
	u.Path = "/" + d.Cfg.Database
	return u.String(), nil
}

func (d *Demo) start(name string, env map[string]string) error {
	if err := os.MkdirAll(d.Cfg.Dir, 0o750); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(d.Cfg.Dir, name+".log")) // #nosec G304 -- the demo directory the operator chose
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(d.Cfg.BinDir, name)) // #nosec G204 -- our own service binaries beside syncctl
	cmd.Env = append(os.Environ(), envList(env)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: Ctrl-C reaches the demo, which stops children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s (run `make build` first): %w", name, err)
	}
	d.procs = append(d.procs, cmd)
	d.say("started %s (pid %d, log %s)", name, cmd.Process.Pid, logf.Name())
	return nil
}

// stopAll stops services in reverse start order (intake first), gracefully.
func (d *Demo) stopAll() {
	for i := len(d.procs) - 1; i >= 0; i-- {
		p := d.procs[i]
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = p.Process.Kill()
		}
	}
	d.procs = nil
}

// compare counts, per customer, the live destination records, the
// simulator's live records, and how many of those match in version.
func (d *Demo) compare(ctx context.Context, pool *pgxpool.Pool, simURL string, sc sim.Scenario) ([]reportRow, error) {
	var out []reportRow
	for _, c := range sc.Customers {
		truth, err := getTruth(ctx, simURL+"/admin/customers/"+c.ID+"/truth/users?fields=false")
		if err != nil {
			return nil, fmt.Errorf("truth of %s: %w", c.ID, err)
		}
		have := map[string]time.Time{}
		rows, err := pool.Query(ctx, `SELECT record_id, source_updated_at FROM vomosync.sync_state WHERE customer_id = $1 AND resource = 'users' AND NOT deleted`, c.ID)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			var at time.Time
			if err := rows.Scan(&id, &at); err != nil {
				return nil, err
			}
			have[id] = at
		}
		rows.Close()
		match := 0
		for _, r := range truth {
			if at, ok := have[r.ID]; ok && at.Equal(r.UpdatedAt) {
				match++
			}
		}
		out = append(out, reportRow{Customer: c.ID, Destination: len(have), Truth: len(truth), M: match})
	}
	return out, nil
}

func (d *Demo) say(format string, args ...any) {
	fmt.Fprintf(d.Out, format+"\n", args...)
}

func envList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

func waitHTTP(ctx context.Context, u string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(u) // #nosec G107 -- the demo simulator on loopback
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %v", u, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// getTruth reads the simulator's NDJSON truth export.
func getTruth(ctx context.Context, u string) ([]sim.TruthRecord, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var out []sim.TruthRecord
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		var r sim.TruthRecord
		if err := dec.Decode(&r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
