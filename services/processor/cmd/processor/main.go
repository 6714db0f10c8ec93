// Command processor consumes change events from JetStream and applies them to
// each customer's destination. Wiring only; the logic is in package processor.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vomosync/vomosync/pkg/config"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/logging"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/metrics"
	"github.com/vomosync/vomosync/pkg/postgres"
	"github.com/vomosync/vomosync/pkg/service"
	"github.com/vomosync/vomosync/pkg/telemetry"
	"github.com/vomosync/vomosync/services/processor"
)

var version = "dev"

// Config is the processor's environment.
type Config struct {
	config.Common
	DB        postgres.Settings
	NATS      messaging.Settings
	Processor processor.Config
}

// Validate checks cross-field rules.
func (c Config) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if err := c.NATS.Validate(); err != nil {
		return err
	}
	if int(c.DB.MaxConns) < c.Processor.Workers+2 {
		return fmt.Errorf("DATABASE_MAX_CONNS=%d: want at least PROCESSOR_WORKERS+2 (%d)", c.DB.MaxConns, c.Processor.Workers+2)
	}
	return c.Processor.Validate()
}

func main() { service.Main("processor", run) }

func run(ctx context.Context) error {
	cfg, err := config.Parse[Config]()
	if err != nil {
		return err
	}
	log := logging.New("processor", cfg.LogLevel, nil).With().Str("version", version).Logger()
	processor.TuneGC()
	shutdownTracing, err := telemetry.SetupTracing(ctx, "processor", cfg.OTLPEndpoint)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx)
	}()
	pool, err := postgres.Connect(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := postgres.CheckSchema(ctx, pool); err != nil {
		return err
	}
	host, _ := os.Hostname()
	nc, js, err := messaging.Connect(ctx, cfg.NATS.URL, "processor-"+host, cfg.NATS.ConnectTimeout)
	if err != nil {
		return err
	}
	defer func() {
		// Flush the last acks before closing.
		_ = nc.Drain()
		for i := 0; i < 50 && !nc.IsClosed(); i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}()
	if err := processor.EnsureStreams(ctx, js, cfg.NATS); err != nil {
		return err
	}

	reg := telemetry.NewRegistry()
	proc, err := processor.New(cfg.Processor, processor.Deps{
		Pool: pool, JS: js, Log: log, Metrics: metrics.NewProcessor(reg),
		Customers: customer.NewStore(pool, nil),
	})
	if err != nil {
		return err
	}
	admin := &telemetry.Admin{Addr: cfg.AdminAddr, Registry: reg, Ready: func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if !nc.IsConnected() {
			return fmt.Errorf("nats: %s", nc.Status())
		}
		return nil
	}}
	log.Info().Int("workers", cfg.Processor.Workers).Int("batch_size", cfg.Processor.BatchSize).Msg("processor starting")
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Run(gctx) })
	g.Go(func() error { return proc.Run(gctx) })
	return g.Wait()
}
