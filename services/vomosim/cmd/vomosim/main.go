// Command vomosim serves the VOMO API simulator (/v1/...) and its control
// surface (/admin/...) over HTTP. Wiring only; the simulator is package sim.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/vomosync/vomosync/pkg/config"
	"github.com/vomosync/vomosync/pkg/logging"
	"github.com/vomosync/vomosync/pkg/service"
	"github.com/vomosync/vomosync/pkg/telemetry"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

// Config is the simulator's environment.
type Config struct {
	Addr     string `env:"SIM_ADDR" envDefault:":8090"`
	Scenario string `env:"SIM_SCENARIO"`
	// Seed and BaseURL override the scenario's when set.
	Seed     int64  `env:"SIM_SEED"`
	BaseURL  string `env:"SIM_BASE_URL"`
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
	// AdminAddr serves /healthz, /readyz and /metrics like every service.
	AdminAddr string `env:"ADMIN_ADDR" envDefault:":8081"`
}

// Validate checks the log level the way every service does.
func (c Config) Validate() error {
	return config.Common{LogLevel: c.LogLevel}.Validate()
}

func main() { service.Main("vomosim", run) }

func run(ctx context.Context) error {
	cfg, err := config.Parse[Config]()
	if err != nil {
		return err
	}
	log := logging.New("vomosim", cfg.LogLevel, nil)

	var sc sim.Scenario
	if cfg.Scenario != "" {
		if sc, err = sim.LoadScenario(cfg.Scenario); err != nil {
			return err
		}
	}
	opts := sc.Options()
	if cfg.Seed != 0 {
		opts.Seed = cfg.Seed
	}
	if cfg.BaseURL != "" {
		opts.BaseURL = cfg.BaseURL
	}
	s := sim.New(opts)
	start := time.Now()
	if err := s.Apply(ctx, sc); err != nil {
		return err
	}
	log.Info().Str("scenario", cfg.Scenario).Int("customers", len(sc.Customers)).
		Int64(logging.FDurationMS, time.Since(start).Milliseconds()).Msg("scenario loaded")

	srv := &http.Server{Addr: cfg.Addr, Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.ListenAndServe() }()
	admin := &telemetry.Admin{Addr: cfg.AdminAddr, Registry: telemetry.NewRegistry()}
	go func() {
		if err := admin.Run(ctx); err != nil {
			errc <- err
		}
	}()
	log.Info().Str("addr", cfg.Addr).Msg("serving")
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", cfg.Addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info().Msg("stopped")
	return nil
}
