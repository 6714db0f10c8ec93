// Command reconciler runs the scheduled reconciliations (daily incremental
// and weekly full, per customer and resource) and serves the admin endpoint.
// Wiring only; the logic is in reconcile/ and internal/schedule.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vomosync/vomosync/pkg/config"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/faults"
	"github.com/vomosync/vomosync/pkg/logging"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/metrics"
	"github.com/vomosync/vomosync/pkg/postgres"
	"github.com/vomosync/vomosync/pkg/secrets"
	"github.com/vomosync/vomosync/pkg/service"
	"github.com/vomosync/vomosync/pkg/telemetry"
	"github.com/vomosync/vomosync/pkg/vomo"
	"github.com/vomosync/vomosync/services/reconciler/internal/schedule"
	"github.com/vomosync/vomosync/services/reconciler/reconcile"
)

var version = "dev"

// Config is the reconciler's environment.
type Config struct {
	config.Common
	DB          postgres.Settings
	NATS        messaging.Settings
	KEK         string        `env:"VOMOSYNC_KEK,required,notEmpty"`
	KEKPrevious []string      `env:"VOMOSYNC_KEK_PREVIOUS"`
	ID          string        `env:"RECONCILER_ID"`
	Concurrency int           `env:"RECONCILER_CONCURRENCY" envDefault:"2"`
	Lease       time.Duration `env:"RECONCILER_LEASE" envDefault:"2m"`
	Tick        time.Duration `env:"RECONCILER_TICK" envDefault:"10s"`
	RetryAfter  time.Duration `env:"RECONCILER_RETRY_AFTER" envDefault:"1h"`
	BatchSize   int           `env:"RECONCILER_BATCH_SIZE" envDefault:"1000"`
	// BudgetReserve is the share of each customer's burst left to the poller.
	BudgetReserve  float64       `env:"RECONCILER_BUDGET_RESERVE" envDefault:"0.5"`
	ConfirmDeletes int           `env:"RECONCILER_CONFIRM_DELETES" envDefault:"100"`
	PersistRuns    int           `env:"RECONCILER_PERSIST_RUNS" envDefault:"3"`
	SettleTimeout  time.Duration `env:"RECONCILER_SETTLE_TIMEOUT" envDefault:"2m"`
	// StallTimeout cancels (and fails) a run that shows no progress for this
	// long: no page walked, no comparison step, no repair window acked. 0: off.
	StallTimeout time.Duration `env:"RECONCILER_STALL_TIMEOUT" envDefault:"30m"`
	Faults       faults.Settings
}

// Validate checks cross-field rules.
func (c Config) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if err := c.NATS.Validate(); err != nil {
		return err
	}
	switch {
	case c.Concurrency < 1:
		return fmt.Errorf("RECONCILER_CONCURRENCY=%d: want at least 1", c.Concurrency)
	case c.Lease < 10*time.Second:
		return fmt.Errorf("RECONCILER_LEASE=%s: want at least 10s", c.Lease)
	case c.BatchSize < 1 || c.BatchSize > 50000:
		return fmt.Errorf("RECONCILER_BATCH_SIZE=%d: want 1..50000", c.BatchSize)
	case c.BudgetReserve < 0 || c.BudgetReserve >= 1:
		return fmt.Errorf("RECONCILER_BUDGET_RESERVE=%g: want a share in [0, 1)", c.BudgetReserve)
	case c.ConfirmDeletes < 1:
		return fmt.Errorf("RECONCILER_CONFIRM_DELETES=%d: want at least 1", c.ConfirmDeletes)
	case c.PersistRuns == 1 || c.PersistRuns == 0:
		return fmt.Errorf("RECONCILER_PERSIST_RUNS=%d: want 2 or more, or -1 to disable", c.PersistRuns)
	case c.StallTimeout != 0 && (c.StallTimeout < time.Minute || c.StallTimeout <= c.SettleTimeout):
		// The settle wait before the walk reports no progress.
		return fmt.Errorf("RECONCILER_STALL_TIMEOUT=%s: want 0 (off), or at least 1m and longer than RECONCILER_SETTLE_TIMEOUT (%s)", c.StallTimeout, c.SettleTimeout)
	}
	return nil
}

func main() { service.Main("reconciler", run) }

func run(ctx context.Context) error {
	cfg, err := config.Parse[Config]()
	if err != nil {
		return err
	}
	log := logging.New("reconciler", cfg.LogLevel, nil).With().Str("version", version).Logger()
	if cfg.ID == "" {
		cfg.ID, _ = os.Hostname()
	}
	inj, now, err := cfg.Faults.Setup(log)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	shutdownTracing, err := telemetry.SetupTracing(ctx, "reconciler", cfg.OTLPEndpoint)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx)
	}()
	keys, err := secrets.NewKeyring(cfg.KEK, cfg.KEKPrevious...)
	if err != nil {
		return err
	}
	pool, err := postgres.Connect(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := postgres.CheckSchema(ctx, pool); err != nil {
		return err
	}
	nc, js, err := messaging.Connect(ctx, cfg.NATS.URL, "reconciler-"+cfg.ID, cfg.NATS.ConnectTimeout)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := messaging.EnsureStreams(ctx, js, cfg.NATS); err != nil {
		return err
	}

	reg := telemetry.NewRegistry()
	customers := customer.NewStore(pool, keys)
	rec := &reconcile.Reconciler{DB: pool, JS: js, Customers: customers, Metrics: metrics.NewReconciler(reg),
		API: metrics.NewAPI(reg), Log: logging.Component(log, "reconcile"),
		BatchSize: cfg.BatchSize, BudgetReserve: cfg.BudgetReserve, ConfirmDeletes: cfg.ConfirmDeletes,
		PersistRuns: cfg.PersistRuns, SettleTimeout: cfg.SettleTimeout, Faults: inj, Now: now}
	actor := "scheduler:" + cfg.ID
	if n, err := reconcile.AbandonRuns(ctx, pool, actor); err != nil {
		return err
	} else if n > 0 {
		log.Warn().Int64("runs", n).Msg("runs of a previous life of this reconciler closed as interrupted")
	}
	sched := &schedule.Scheduler{DB: pool, Owner: cfg.ID, Lease: cfg.Lease, Tick: cfg.Tick,
		Concurrency: cfg.Concurrency, RetryAfter: cfg.RetryAfter, StallTimeout: cfg.StallTimeout,
		Log: logging.Component(log, "schedule"),
		Do: func(ctx context.Context, c schedule.Claim, alive func()) schedule.Outcome {
			res, err := rec.Run(ctx, reconcile.Request{Customer: c.CustomerID, Resource: c.Resource,
				Full: c.Kind == schedule.KindFull, Actor: actor, Alive: alive})
			if res == nil {
				log.Error().Err(err).Str(logging.FCustomerID, c.CustomerID).Str(logging.FResource, c.Resource).Msg("run not started")
				return schedule.Outcome{Outcome: reconcile.OutcomeFailed, Retry: true}
			}
			if errors.Is(err, vomo.ErrUnauthorized) || errors.Is(err, vomo.ErrForbidden) {
				// The poller pauses the customer on the same answer; retrying
				// sooner would only spend requests on a dead token.
				return schedule.Outcome{Outcome: res.Outcome}
			}
			return schedule.Outcome{Outcome: res.Outcome,
				Retry: res.Outcome == reconcile.OutcomeUntrusted || res.Outcome == reconcile.OutcomeFailed}
		}}
	admin := &telemetry.Admin{Addr: cfg.AdminAddr, Registry: reg, Ready: func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if !nc.IsConnected() {
			return fmt.Errorf("nats: %s", nc.Status())
		}
		return nil
	}}
	log.Info().Str("reconciler_id", cfg.ID).Int("concurrency", cfg.Concurrency).Msg("reconciler starting")
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Run(gctx) })
	g.Go(func() error { return sched.Run(gctx) })
	err = g.Wait()
	// Drain publishes still in flight, on a fresh context.
	if derr := nc.Drain(); derr != nil {
		log.Warn().Err(derr).Msg("nats drain")
	}
	log.Info().Msg("reconciler stopped")
	return err
}
