// Command pollbench measures the poller against the simulator, on real
// PostgreSQL and an embedded JetStream server:
//
//	scheduler: N customers × 7 resources of small data, unthrottled:
//	           due-to-start delay percentiles, polls per second, CPU per 1,000 polls;
//	backfill:  one customer of M users, unthrottled: pages/s and records/s
//	           through to JetStream acks;
//	budget:    the same backfill under a 60-request-a-minute budget for D:
//	           the share of the budget used.
//
// It creates a scratch database on PGBENCH_URL (default: local postgres) and
// drops it afterwards.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/vomosync/vomosync/pkg/checkpoint"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/metrics"
	"github.com/vomosync/vomosync/pkg/natsserver"
	"github.com/vomosync/vomosync/pkg/postgres"
	"github.com/vomosync/vomosync/pkg/secrets"
	"github.com/vomosync/vomosync/pkg/telemetry"
	"github.com/vomosync/vomosync/services/poller/internal/runner"
	"github.com/vomosync/vomosync/services/poller/internal/schedule"
	"github.com/vomosync/vomosync/services/poller/poll"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

func main() {
	customers := flag.Int("customers", 1000, "scheduler: customers (×7 resources)")
	users := flag.Int("users", 1_000_000, "backfill: users of the one customer")
	budgetFor := flag.Duration("budget-for", 2*time.Minute, "budget: how long to run under 60 requests a minute (0 skips)")
	only := flag.String("only", "", "run one of: scheduler, backfill, budget")
	flag.Parse()
	if err := run(*customers, *users, *budgetFor, *only); err != nil {
		fmt.Fprintln(os.Stderr, "pollbench:", err)
		os.Exit(1)
	}
}

type env struct {
	ctx   context.Context
	pool  *pgxpool.Pool
	js    jetstream.JetStream
	store *customer.Store
	sim   *sim.Sim
	url   string
}

func run(customers, users int, budgetFor time.Duration, only string) error {
	ctx := context.Background()
	admin := os.Getenv("PGBENCH_URL")
	if admin == "" {
		admin = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("pollbench_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return err
	}
	defer func() {
		_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		_ = conn.Close(context.Background())
	}()
	u, _ := url.Parse(admin)
	u.Path = "/" + name
	pool, err := postgres.Connect(ctx, postgres.Settings{URL: u.String(), MaxConns: 32, ConnectTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		return err
	}
	dir, _ := os.MkdirTemp("", "pollbench-nats")
	defer os.RemoveAll(dir)
	ns, err := natsserver.Start(natsserver.Options{Port: -1, StoreDir: dir})
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	nc, js, err := messaging.Connect(ctx, ns.ClientURL(), "pollbench", 5*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := messaging.EnsureStreams(ctx, js, messaging.Settings{Replicas: 1, DuplicateWindow: 2 * time.Minute, MaxAge: time.Hour, MaxBytes: -1}); err != nil {
		return err
	}
	kb := make([]byte, 32)
	_, _ = rand.Read(kb)
	keys, _ := secrets.NewKeyring(base64.StdEncoding.EncodeToString(kb))
	s := sim.New(sim.Options{Seed: 1})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	e := &env{ctx: ctx, pool: pool, js: js, store: customer.NewStore(pool, keys), sim: s, url: srv.URL + "/v1"}
	if only == "" || only == "scheduler" {
		if err := e.scheduler(customers); err != nil {
			return err
		}
	}
	if only == "" || only == "backfill" {
		if err := e.backfill(users); err != nil {
			return err
		}
	}
	if (only == "" || only == "budget") && budgetFor > 0 {
		return e.budget(budgetFor)
	}
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var allResources = []string{"users", "projects", "groups", "form_completions", "certificates", "campaigns", "participations"}

func (e *env) scheduler(n int) error {
	fmt.Printf("scheduler: %d customers × %d resources, small data, unthrottled\n", n, len(allResources))
	for i := range n {
		id := fmt.Sprintf("s%05d", i)
		if err := e.sim.AddCustomer(sim.CustomerSpec{ID: id, Token: "tok-" + id, Users: 5, Projects: 2, Groups: 2,
			Forms: 1, Completions: 3, Campaigns: 1, Certificates: 1}); err != nil {
			return err
		}
		if err := e.store.Add(e.ctx, customer.New{ID: id, APIBaseURL: e.url, Token: "tok-" + id, Resources: allResources,
			Settings: customer.Settings{BudgetPerMinute: -1, Settle: customer.Duration(time.Second)}}); err != nil {
			return err
		}
	}
	// Everything due at the same instant: the worst case for the scheduler.
	if _, err := e.pool.Exec(e.ctx, `UPDATE vomosync.schedules SET next_run_at = now() WHERE kind = 'poll'`); err != nil {
		return err
	}
	// Fresh statistics, as autovacuum would have them after a bulk load.
	if _, err := e.pool.Exec(e.ctx, `ANALYZE`); err != nil {
		return err
	}
	reg := telemetry.NewRegistry()
	pm := metrics.NewPoller(reg)
	cyc := &poll.Cycler{DB: e.pool, Log: zerolog.Nop(), Owner: "bench", Metrics: pm}
	r := &runner.Runner{DB: e.pool, JS: e.js, Customers: e.store, Cycler: cyc, Log: zerolog.Nop()}
	var mu sync.Mutex
	var delays []time.Duration
	total := n * len(allResources)
	done := make(chan struct{})
	count := 0
	sched := &schedule.Scheduler{DB: e.pool, Owner: "bench", Lease: time.Minute, Tick: 50 * time.Millisecond, Concurrency: 32,
		Log: zerolog.Nop(), Cycle: func(ctx context.Context, c schedule.Claim) string {
			d := time.Since(c.DueAt)
			out := r.Run(ctx, c)
			mu.Lock()
			delays = append(delays, d)
			count++
			if count == total {
				close(done)
			}
			mu.Unlock()
			return out
		}}
	ctx, cancel := context.WithCancel(e.ctx)
	cpu0, t0 := cpuTime(), time.Now()
	go func() { _ = sched.Run(ctx) }()
	<-done
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	cancel()
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	pct := func(p float64) time.Duration { return delays[int(p*float64(len(delays)-1))] }
	fmt.Printf("  %d polls in %s: %.0f polls/s; CPU %.2fs per 1,000 polls (whole process: simulator, Postgres client, NATS)\n",
		total, wall.Round(time.Millisecond), float64(total)/wall.Seconds(), cpu.Seconds()/float64(total)*1000)
	fmt.Printf("  due-to-start delay, all %d pairs due at once: p50 %s p99 %s max %s\n", total,
		pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), delays[len(delays)-1].Round(time.Millisecond))
	// Steady state: with the default cadences 10,000 customers make about 23
	// polls a second. Offer 200 a second (2,000 pairs due over 10 s) while
	// every pair stays in the table, and measure how late each one starts.
	if _, err := e.pool.Exec(e.ctx, `UPDATE vomosync.schedules SET next_run_at = now() + interval '1 year' WHERE kind = 'poll'`); err != nil {
		return err
	}
	steady := min(2000, total)
	if _, err := e.pool.Exec(e.ctx, `UPDATE vomosync.schedules SET next_run_at = now() + interval '2 seconds' + random() * interval '10 seconds'
		WHERE (customer_id, resource, kind) IN (SELECT customer_id, resource, kind FROM vomosync.schedules WHERE kind = 'poll' ORDER BY random() LIMIT $1)`, steady); err != nil {
		return err
	}
	mu.Lock()
	delays, count, done, total = nil, 0, make(chan struct{}), steady
	mu.Unlock()
	ctx, cancel = context.WithCancel(e.ctx)
	go func() { _ = sched.Run(ctx) }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
	}
	cancel()
	mu.Lock()
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	if len(delays) > 0 {
		fmt.Printf("  steady state, 200 polls/s offered among all pairs: due-to-start delay p50 %s p99 %s (%d polls)\n",
			pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), len(delays))
	}
	mu.Unlock()
	return nil
}

func (e *env) addBig(id string, users int, perMinute int) (customer.Customer, string, error) {
	if err := e.sim.AddCustomer(sim.CustomerSpec{ID: id, Token: "tok-" + id, Users: users}); err != nil {
		return customer.Customer{}, "", err
	}
	if err := e.store.Add(e.ctx, customer.New{ID: id, APIBaseURL: e.url, Token: "tok-" + id,
		Settings: customer.Settings{BudgetPerMinute: perMinute, BudgetBurst: 1, Settle: customer.Duration(time.Second)}}); err != nil {
		return customer.Customer{}, "", err
	}
	c, err := e.store.Get(e.ctx, id)
	return c, "tok-" + id, err
}

func (e *env) backfill(users int) error {
	fmt.Printf("backfill: one customer of %d users, unthrottled, through to JetStream acks\n", users)
	c, tok, err := e.addBig("big", users, -1)
	if err != nil {
		return err
	}
	cyc := &poll.Cycler{DB: e.pool, Log: zerolog.Nop(), FlushEvery: 200}
	cl, err := runnerClient(e, c, tok)
	if err != nil {
		return err
	}
	cpu0, t0 := cpuTime(), time.Now()
	res, err := cyc.Run(e.ctx, poll.Request{Customer: c, Resource: "users", Source: cl, Sink: poll.NewJetStreamSink(e.js)})
	if err != nil {
		return err
	}
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	fmt.Printf("  %s: %d pages, %d records published in %s: %.0f pages/s, %.0f records/s; CPU %.1fs\n", res.Outcome,
		res.Pages, res.RecordsPublished, wall.Round(time.Millisecond), float64(res.Pages)/wall.Seconds(),
		float64(res.RecordsPublished)/wall.Seconds(), cpu.Seconds())
	return nil
}

func (e *env) budget(d time.Duration) error {
	fmt.Printf("budget: backfill under 60 requests a minute for %s\n", d)
	c, tok, err := e.addBig("slow", 200_000, 60)
	if err != nil {
		return err
	}
	if _, err := e.pool.Exec(e.ctx, `UPDATE vomosync.api_budgets SET tokens = 0, refilled_at = clock_timestamp() WHERE customer_id = 'slow'`); err != nil {
		return err
	}
	cl, err := runnerClient(e, c, tok)
	if err != nil {
		return err
	}
	cyc := &poll.Cycler{DB: e.pool, Log: zerolog.Nop(), FlushEvery: 5}
	ctx, cancel := context.WithTimeout(e.ctx, d)
	defer cancel()
	t0 := time.Now()
	res, _ := cyc.Run(ctx, poll.Request{Customer: c, Resource: "users", Source: cl, Sink: poll.NewJetStreamSink(e.js)})
	elapsed := time.Since(t0)
	offered := elapsed.Minutes() * 60
	fmt.Printf("  %d requests in %s against %.1f offered: %.1f%% of the budget used (outcome %s)\n",
		res.Requests, elapsed.Round(time.Second), offered, 100*float64(res.Requests)/offered, res.Outcome)
	cp, _ := checkpoint.Get(e.ctx, e.pool, "slow", "users")
	if cp.Backfill != nil {
		fmt.Printf("  backfill resumes at page %d\n", cp.Backfill.NextPage)
	}
	return nil
}

func runnerClient(e *env, c customer.Customer, tok string) (poll.Source, error) {
	return runnerNewClient(e.pool, c, tok)
}
