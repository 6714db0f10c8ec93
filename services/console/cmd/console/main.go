// Command console serves the vomosync web console: the operators' pages and
// the customers' own health page. Wiring only; the pages are in web/.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vomosync/vomosync/pkg/config"
	"github.com/vomosync/vomosync/pkg/httpserve"
	"github.com/vomosync/vomosync/pkg/logging"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/postgres"
	"github.com/vomosync/vomosync/pkg/service"
	"github.com/vomosync/vomosync/pkg/telemetry"
	"github.com/vomosync/vomosync/services/console/auth"
	"github.com/vomosync/vomosync/services/console/web"
	"github.com/vomosync/vomosync/services/processor/deadletter"
)

var version = "dev"

// Config is the console's environment.
type Config struct {
	config.Common
	DB   postgres.Settings
	Addr string `env:"CONSOLE_ADDR" envDefault:":8080"`
	// SessionKey signs sessions and forms; at least 32 bytes.
	SessionKey    string        `env:"CONSOLE_SESSION_KEY,required,notEmpty"`
	SessionTTL    time.Duration `env:"CONSOLE_SESSION_TTL" envDefault:"12h"`
	SecureCookies bool          `env:"CONSOLE_SECURE_COOKIES" envDefault:"true"`
	JaegerUIURL   string        `env:"JAEGER_UI_URL"`
	SummaryTTL    time.Duration `env:"CONSOLE_SUMMARY_TTL" envDefault:"15s"`
	// NATSURL enables retrying dead letters from the console; its NATS user
	// must be allowed to publish vomosync.changes.> (the default deployment
	// ACL keeps the console read-only, so retry stays with syncctl).
	NATSURL string `env:"NATS_URL"`
	// RetryFromConsole turns the retry buttons on (needs NATS_URL).
	RetryFromConsole bool `env:"CONSOLE_DLQ_RETRY" envDefault:"false"`
}

// Validate checks cross-field rules.
func (c Config) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if len(c.SessionKey) < 32 {
		return fmt.Errorf("CONSOLE_SESSION_KEY: want at least 32 characters of random data, got %d", len(c.SessionKey))
	}
	if c.RetryFromConsole && c.NATSURL == "" {
		return errors.New("CONSOLE_DLQ_RETRY=true needs NATS_URL")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("CONSOLE_ADDR=%q: want host:port, e.g. :8080", c.Addr)
	}
	return nil
}

func main() { service.Main("console", run) }

func run(ctx context.Context) error {
	cfg, err := config.Parse[Config]()
	if err != nil {
		return err
	}
	log := logging.New("console", cfg.LogLevel, nil).With().Str("version", version).Logger()
	shutdownTracing, err := telemetry.SetupTracing(ctx, "console", cfg.OTLPEndpoint)
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
	dlq := &deadletter.Store{DB: pool}
	if cfg.RetryFromConsole {
		nc, js, err := messaging.Connect(ctx, cfg.NATSURL, "console", 30*time.Second)
		if err != nil {
			return err
		}
		defer nc.Close()
		dlq.JS = js
	}
	srv := &web.Server{DB: pool, Sessions: auth.Sessions{DB: pool, Key: []byte(cfg.SessionKey), TTL: cfg.SessionTTL},
		UserLimit: auth.Limiter{DB: pool, Max: 5, Window: 15 * time.Minute},
		AddrLimit: auth.Limiter{DB: pool, Max: 50, Window: 15 * time.Minute},
		DLQ:       dlq, CanRetry: cfg.RetryFromConsole, JaegerURL: cfg.JaegerUIURL, SecureCookies: cfg.SecureCookies, SummaryTTL: cfg.SummaryTTL,
		Log: logging.Component(log, "web")}
	h, err := srv.Handler()
	if err != nil {
		return err
	}
	if !cfg.SecureCookies {
		log.Warn().Msg("CONSOLE_SECURE_COOKIES=false: session cookies travel over plain http; only for local use")
	}
	admin := &telemetry.Admin{Addr: cfg.AdminAddr, Registry: telemetry.NewRegistry(), Ready: func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		return nil
	}}
	hs := &http.Server{Addr: cfg.Addr, Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	log.Info().Str("addr", cfg.Addr).Msg("console starting")
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Run(gctx) })
	g.Go(func() error {
		if err := httpserve.Run(gctx, hs, nil, 20*time.Second); err != nil {
			return fmt.Errorf("console server: %w", err)
		}
		return nil
	})
	err = g.Wait()
	log.Info().Msg("console stopped")
	return err
}
