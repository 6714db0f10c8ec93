// Command poller polls VOMO for every due (customer, resource) pair and
// publishes change events to JetStream. Wiring only; logic is in poll/.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/vomosync/vomosync/pkg/checkpoint"
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
	"github.com/vomosync/vomosync/services/poller/internal/runner"
	"github.com/vomosync/vomosync/services/poller/internal/schedule"
	"github.com/vomosync/vomosync/services/poller/poll"
	"github.com/vomosync/vomosync/services/poller/webhook"
)

var version = "dev"

// Config is the poller's environment.
type Config struct {
	config.Common
	DB          postgres.Settings
	NATS        messaging.Settings
	KEK         string        `env:"VOMOSYNC_KEK,required,notEmpty"`
	KEKPrevious []string      `env:"VOMOSYNC_KEK_PREVIOUS"`
	ID          string        `env:"POLLER_ID"`
	Concurrency int           `env:"POLLER_CONCURRENCY" envDefault:"16"`
	Lease       time.Duration `env:"POLLER_LEASE" envDefault:"2m"`
	Tick        time.Duration `env:"POLLER_TICK" envDefault:"1s"`
	Faults      faults.Settings
	Webhook     webhook.Settings
}

// Validate checks cross-field rules.
func (c Config) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if err := c.NATS.Validate(); err != nil {
		return err
	}
	if c.Concurrency < 1 {
		return fmt.Errorf("POLLER_CONCURRENCY=%d: want at least 1", c.Concurrency)
	}
	if c.Lease < 10*time.Second {
		return fmt.Errorf("POLLER_LEASE=%s: want at least 10s", c.Lease)
	}
	return c.Webhook.Validate()
}

func main() { service.Main("poller", run) }

func run(ctx context.Context) error {
	cfg, err := config.Parse[Config]()
	if err != nil {
		return err
	}
	log := logging.New("poller", cfg.LogLevel, nil).With().Str("version", version).Logger()
	if cfg.ID == "" {
		cfg.ID, _ = os.Hostname()
	}
	inj, now, err := cfg.Faults.Setup(log)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	shutdownTracing, err := telemetry.SetupTracing(ctx, "poller", cfg.OTLPEndpoint)
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
	nc, js, err := messaging.Connect(ctx, cfg.NATS.URL, "poller-"+cfg.ID, cfg.NATS.ConnectTimeout)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := messaging.EnsureStreams(ctx, js, cfg.NATS); err != nil {
		return err
	}
	warnDurability(ctx, log, pool, cfg.NATS)
	kv, err := messaging.EnsureCheckpointBucket(ctx, js, cfg.NATS.Replicas)
	if err != nil {
		return err
	}

	reg := telemetry.NewRegistry()
	pm := metrics.NewPoller(reg)
	am := metrics.NewAPI(reg)
	cycler := &poll.Cycler{DB: pool, Backup: &checkpoint.Backup{KV: kv}, Metrics: pm,
		Log: logging.Component(log, "cycle"), Owner: cfg.ID, Faults: inj, Now: now}
	run := &runner.Runner{DB: pool, JS: js, Customers: customer.NewStore(pool, keys), Cycler: cycler,
		API: am, Poller: pm, Log: logging.Component(log, "runner")}
	sched := &schedule.Scheduler{DB: pool, Owner: cfg.ID, Lease: cfg.Lease, Tick: cfg.Tick,
		Concurrency: cfg.Concurrency, Cycle: run.Run, Metrics: pm, Log: logging.Component(log, "schedule")}
	admin := &telemetry.Admin{Addr: cfg.AdminAddr, Registry: reg, Ready: func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if !nc.IsConnected() {
			return fmt.Errorf("nats: %s", nc.Status())
		}
		return nil
	}}
	log.Info().Str("poller_id", cfg.ID).Int("concurrency", cfg.Concurrency).Msg("poller starting")
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Run(gctx) })
	g.Go(func() error { return sched.Run(gctx) })
	gauges := &runner.Gauges{DB: pool, Metrics: pm, Every: 15 * time.Second, Log: logging.Component(log, "gauges")}
	g.Go(func() error { return gauges.Run(gctx) })
	if cfg.Webhook.Addr != "" {
		wh := &webhook.Server{Addr: cfg.Webhook.Addr, Handler: &webhook.Handler{DB: pool, Keys: keys,
			MaxBody: cfg.Webhook.MaxBody, ReplayWindow: cfg.Webhook.ReplayWindow, Log: logging.Component(log, "webhook")}}
		log.Info().Str("addr", cfg.Webhook.Addr).Msg("webhook intake on")
		g.Go(func() error { return wh.Run(gctx) })
	}
	err = g.Wait()
	log.Info().Msg("poller stopped")
	return err
}

// warnDurability logs every setting weaker than the production profile.
func warnDurability(ctx context.Context, log zerolog.Logger, pool *pgxpool.Pool, s messaging.Settings) {
	ws := messaging.DurabilityWarnings(s)
	pws, err := postgres.DurabilityWarnings(ctx, pool)
	if err != nil {
		log.Warn().Err(err).Msg("durability check")
	}
	for _, w := range append(ws, pws...) {
		log.Warn().Str("check", "durability").Msg(w)
	}
}
