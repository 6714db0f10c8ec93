// Package processor runs the processor service: workers pulling change
// events from the durable JetStream consumer, applying them in batches (see
// package apply), acking after commit, retrying and dead-lettering what
// fails; plus the outbox sender and the audit-log maintenance. Other modules'
// tests start one in-process with Open and Run.
package processor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/vomosync/vomosync/pkg/config"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/metrics"
	"github.com/vomosync/vomosync/pkg/postgres"
	"github.com/vomosync/vomosync/services/processor/apply"
	"github.com/vomosync/vomosync/services/processor/destination"
	"github.com/vomosync/vomosync/services/processor/internal/maintain"
	"github.com/vomosync/vomosync/services/processor/internal/outbox"
)

// Config is the processor block of the service configuration.
type Config struct {
	BatchSize int `env:"PROCESSOR_BATCH_SIZE" envDefault:"500"`
	// MaxWait is how long an idle worker's pull waits for a first message.
	// A busy stream never waits: workers take whatever is pending.
	MaxWait time.Duration `env:"PROCESSOR_MAX_WAIT" envDefault:"500ms"`
	// TargetBatchLatency: a worker halves its batch size when a batch takes
	// longer, and grows it back while batches stay well under it.
	TargetBatchLatency time.Duration `env:"PROCESSOR_TARGET_BATCH_LATENCY" envDefault:"2s"`
	Workers            int           `env:"PROCESSOR_WORKERS" envDefault:"2"`
	MaxDeliver         int           `env:"PROCESSOR_MAX_DELIVER" envDefault:"5"`
	DrainTimeout       time.Duration `env:"PROCESSOR_DRAIN_TIMEOUT" envDefault:"20s"`
	AckWait            time.Duration `env:"PROCESSOR_ACK_WAIT" envDefault:"30s"`
	// MaxAckPending of the shared consumer; 0 sizes it to workers × batch × 4
	// (in-flight and prefetched batches of two replicas).
	MaxAckPending int           `env:"PROCESSOR_MAX_ACK_PENDING" envDefault:"0"`
	RetryBase     time.Duration `env:"PROCESSOR_RETRY_BASE" envDefault:"2s"`
	RetryMax      time.Duration `env:"PROCESSOR_RETRY_MAX" envDefault:"2m"`
	SettingsTTL   time.Duration `env:"PROCESSOR_SETTINGS_TTL" envDefault:"15s"`
	HTTPTimeout   time.Duration `env:"PROCESSOR_HTTP_TIMEOUT" envDefault:"10s"`
	// SigningKeys maps signing-key references to keys: "ref1:key1,ref2:key2".
	SigningKeys map[string]string `env:"PROCESSOR_SIGNING_KEYS"`
	// SecretsDir holds one file per signing-key reference (a mounted secret).
	SecretsDir          string        `env:"PROCESSOR_SECRETS_DIR"`
	AuditRetention      time.Duration `env:"PROCESSOR_AUDIT_RETENTION" envDefault:"2160h"`
	AuditDaysAhead      int           `env:"PROCESSOR_AUDIT_DAYS_AHEAD" envDefault:"3"`
	MaintenanceInterval time.Duration `env:"PROCESSOR_MAINTENANCE_INTERVAL" envDefault:"15s"`
	OutboxMaxAttempts   int           `env:"PROCESSOR_OUTBOX_MAX_ATTEMPTS" envDefault:"10"`
	OutboxConcurrency   int           `env:"PROCESSOR_OUTBOX_CONCURRENCY" envDefault:"8"`
	OutboxPollInterval  time.Duration `env:"PROCESSOR_OUTBOX_POLL_INTERVAL" envDefault:"1s"`
	OutboxRetryBase     time.Duration `env:"PROCESSOR_OUTBOX_RETRY_BASE" envDefault:"5s"`
	OutboxRetention     time.Duration `env:"PROCESSOR_OUTBOX_RETENTION" envDefault:"720h"`
	DisableOutboxSender bool          `env:"PROCESSOR_DISABLE_OUTBOX_SENDER"`
	DisableMaintenance  bool          `env:"PROCESSOR_DISABLE_MAINTENANCE"`
}

// DefaultConfig is Config with every default, for in-process use.
func DefaultConfig() Config {
	c, err := config.ParseFrom[Config](map[string]string{})
	if err != nil {
		panic(err) // the defaults are valid; a test covers it
	}
	return c
}

// Validate checks the block.
func (c Config) Validate() error {
	switch {
	case c.BatchSize < 1 || c.BatchSize > 10000:
		return fmt.Errorf("PROCESSOR_BATCH_SIZE=%d: want 1 to 10000", c.BatchSize)
	case c.Workers < 1 || c.Workers > 64:
		return fmt.Errorf("PROCESSOR_WORKERS=%d: want 1 to 64", c.Workers)
	case c.MaxDeliver < 1:
		return fmt.Errorf("PROCESSOR_MAX_DELIVER=%d: want at least 1", c.MaxDeliver)
	case c.MaxWait < time.Millisecond:
		return fmt.Errorf("PROCESSOR_MAX_WAIT=%s: want at least 1ms", c.MaxWait)
	case c.TargetBatchLatency <= 0 || c.TargetBatchLatency >= c.AckWait:
		return fmt.Errorf("PROCESSOR_TARGET_BATCH_LATENCY=%s: want a positive duration below PROCESSOR_ACK_WAIT (%s)", c.TargetBatchLatency, c.AckWait)
	case c.AckWait < time.Second:
		return fmt.Errorf("PROCESSOR_ACK_WAIT=%s: want at least 1s", c.AckWait)
	case c.DrainTimeout <= 0:
		return fmt.Errorf("PROCESSOR_DRAIN_TIMEOUT=%s: want a positive duration", c.DrainTimeout)
	case c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("PROCESSOR_RETRY_BASE=%s, PROCESSOR_RETRY_MAX=%s: want 0 < base <= max", c.RetryBase, c.RetryMax)
	case c.MaxAckPending < 0:
		return fmt.Errorf("PROCESSOR_MAX_ACK_PENDING=%d: want 0 (auto) or more", c.MaxAckPending)
	case c.AuditDaysAhead < 1 || c.AuditRetention < 24*time.Hour:
		return fmt.Errorf("PROCESSOR_AUDIT_DAYS_AHEAD=%d, PROCESSOR_AUDIT_RETENTION=%s: want at least 1 day each", c.AuditDaysAhead, c.AuditRetention)
	case c.OutboxMaxAttempts < 1 || c.OutboxConcurrency < 1:
		return fmt.Errorf("PROCESSOR_OUTBOX_MAX_ATTEMPTS=%d, PROCESSOR_OUTBOX_CONCURRENCY=%d: want at least 1", c.OutboxMaxAttempts, c.OutboxConcurrency)
	case c.SettingsTTL < 0 || c.HTTPTimeout <= 0 || c.MaintenanceInterval <= 0 || c.OutboxPollInterval <= 0 || c.OutboxRetryBase <= 0:
		return errors.New("PROCESSOR_SETTINGS_TTL, PROCESSOR_HTTP_TIMEOUT, PROCESSOR_MAINTENANCE_INTERVAL, PROCESSOR_OUTBOX_POLL_INTERVAL, PROCESSOR_OUTBOX_RETRY_BASE: want positive durations")
	}
	return nil
}

// Hooks are fault points for tests. Production code leaves them nil.
type Hooks struct {
	// AfterCommit runs after a batch committed and before it is acked. An
	// error stands for a crash at that point: the batch is left unacked and
	// Run returns the error.
	AfterCommit func(ctx context.Context, batch int) error
}

// Deps are the processor's collaborators.
type Deps struct {
	Pool *pgxpool.Pool
	JS   jetstream.JetStream
	Log  zerolog.Logger
	// Metrics defaults to a set registered on a private registry.
	Metrics *metrics.Processor
	// Customers defaults to the customer store on Pool.
	Customers apply.Customers
	// Secrets defaults to Config.SigningKeys and Config.SecretsDir.
	Secrets destination.Secrets
	Hooks   Hooks
}

// Processor is one processor replica.
type Processor struct {
	cfg     Config
	deps    Deps
	applier *apply.Applier
	sender  *outbox.Sender
	maint   *maintain.Loop
	lag     lagTracker

	closers []func()
}

// New builds a processor; Run starts it.
func New(cfg Config, deps Deps) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Pool == nil || deps.JS == nil {
		return nil, errors.New("processor needs a Postgres pool and a JetStream context")
	}
	if deps.Metrics == nil {
		deps.Metrics = metrics.NewProcessor(prometheus.NewRegistry())
	}
	if deps.Customers == nil {
		deps.Customers = customer.NewStore(deps.Pool, nil)
	}
	if deps.Secrets == nil {
		deps.Secrets = destination.StaticSecrets{Keys: cfg.SigningKeys, Dir: cfg.SecretsDir}
	}
	p := &Processor{cfg: cfg, deps: deps}
	p.applier = &apply.Applier{
		DB:           deps.Pool,
		Customers:    &apply.CustomerCache{Source: deps.Customers, TTL: cfg.SettingsTTL},
		Destinations: &destination.Resolver{DB: deps.Pool, Secrets: deps.Secrets, HTTPTimeout: cfg.HTTPTimeout},
		MaxAttempts:  cfg.MaxDeliver,
	}
	p.sender = &outbox.Sender{DB: deps.Pool, Secrets: deps.Secrets, Metrics: deps.Metrics,
		Log: deps.Log.With().Str("component", "outbox").Logger(), MaxAttempts: cfg.OutboxMaxAttempts,
		Concurrency: cfg.OutboxConcurrency, PollInterval: cfg.OutboxPollInterval, RetryBase: cfg.OutboxRetryBase,
		Timeout: cfg.HTTPTimeout}
	p.maint = &maintain.Loop{DB: deps.Pool, Metrics: deps.Metrics, Log: deps.Log.With().Str("component", "maintenance").Logger(),
		Interval: cfg.MaintenanceInterval, DaysAhead: cfg.AuditDaysAhead, Retention: cfg.AuditRetention,
		OutboxRetention: cfg.OutboxRetention}
	return p, nil
}

// Applier is the batch applier the workers use (tests read its stats).
func (p *Processor) Applier() *apply.Applier { return p.applier }

// Run consumes until ctx is cancelled, then stops pulling, finishes the
// batches in flight within DrainTimeout, and returns nil. It returns an
// error when the consumer cannot be set up or a worker fails for good.
func (p *Processor) Run(ctx context.Context) error {
	cons, err := EnsureConsumer(ctx, p.deps.JS, p.cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	p.maint.Consumer = cons
	p.maint.Lag = p.lag.age
	log := p.deps.Log
	log.Info().Int("workers", p.cfg.Workers).Int("batch_size", p.cfg.BatchSize).Msg("processor consuming")
	g, gctx := errgroup.WithContext(ctx)
	f := &fetcher{p: p, cons: cons, log: log.With().Str("component", "fetcher").Logger()}
	for i := range p.cfg.Workers {
		// One batch queued per worker beyond the one it applies: enough to
		// keep it busy, little held past its ack wait.
		q := make(chan []item, 1)
		f.queues = append(f.queues, q)
		w := &worker{p: p, id: i, queue: q, log: log.With().Str("component", "worker").Int("worker", i).Logger(),
			limit: batchLimit{max: p.cfg.BatchSize, n: p.cfg.BatchSize, target: p.cfg.TargetBatchLatency}}
		g.Go(func() error { return w.run(gctx) })
	}
	g.Go(func() error { return f.run(gctx) })
	if !p.cfg.DisableOutboxSender {
		g.Go(func() error { return p.sender.Run(gctx) })
	}
	if !p.cfg.DisableMaintenance {
		g.Go(func() error { return p.maint.Run(gctx) })
	}
	err = g.Wait()
	log.Info().Err(err).Msg("processor stopped")
	return err
}

// ConsumerConfig is the durable consumer every replica shares.
func ConsumerConfig(cfg Config) jetstream.ConsumerConfig {
	map_ := cfg.MaxAckPending
	if map_ == 0 {
		map_ = cfg.Workers * cfg.BatchSize * 4
	}
	// No BackOff: with one, JetStream measures a NakWithDelay on a message
	// already redelivered from the BackOff step instead of from now, so the
	// retry delay of a nak'd batch became AckWait (or more) plus the delay
	// asked for. A message that kills the process (no ack, no nak) is
	// redelivered once per AckWait, at most MaxDeliver times.
	return jetstream.ConsumerConfig{
		Durable:       messaging.ConsumerName,
		Description:   "vomosync processor: change events to destinations",
		FilterSubject: messaging.ChangesPrefix + ".>",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		// The processor dead-letters a record after PROCESSOR_MAX_DELIVER
		// failed attempts itself; the broker's larger limit only stops
		// redelivery of messages that never get an answer (a database down
		// for hours), which the reconciler then recovers.
		MaxDeliver:    cfg.MaxDeliver + 20,
		MaxAckPending: map_,
		MaxWaiting:    512,
	}
}

// EnsureConsumer creates or updates the durable consumer.
func EnsureConsumer(ctx context.Context, js jetstream.StreamConsumerManager, cfg Config) (jetstream.Consumer, error) {
	cons, err := js.CreateOrUpdateConsumer(ctx, messaging.StreamChanges, ConsumerConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s: %w", messaging.ConsumerName, err)
	}
	return cons, nil
}

// Open connects to Postgres and NATS, checks the schema, makes sure the
// streams exist, and returns a processor owning those connections (Close
// releases them). Other modules' tests start one with Open then Run.
func Open(ctx context.Context, cfg Config, databaseURL, natsURL string, log zerolog.Logger) (*Processor, error) {
	pool, err := postgres.Connect(ctx, postgres.Settings{URL: databaseURL, MaxConns: int32(cfg.Workers + 4), ConnectTimeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	if err := postgres.CheckSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	nc, js, err := messaging.Connect(ctx, natsURL, "processor", 10*time.Second)
	if err != nil {
		pool.Close()
		return nil, err
	}
	closeAll := func() { _ = nc.Drain(); pool.Close() }
	if err := EnsureStreams(ctx, js, messaging.Settings{Replicas: 1, DuplicateWindow: 2 * time.Minute, MaxAge: 72 * time.Hour, MaxBytes: -1}); err != nil {
		closeAll()
		return nil, err
	}
	p, err := New(cfg, Deps{Pool: pool, JS: js, Log: log})
	if err != nil {
		closeAll()
		return nil, err
	}
	p.closers = append(p.closers, closeAll)
	return p, nil
}

// Close releases what Open opened. Call it after Run returned.
func (p *Processor) Close() {
	for _, c := range p.closers {
		c()
	}
	p.closers = nil
}

// EnsureStreams creates or updates the streams; where the processor's NATS
// user may not manage streams (production accounts), it only checks that
// they exist.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, s messaging.Settings) error {
	err := messaging.EnsureStreams(ctx, js, s)
	if err == nil {
		return nil
	}
	for _, name := range []string{messaging.StreamChanges, messaging.StreamDLQ} {
		if _, serr := js.Stream(ctx, name); serr != nil {
			return fmt.Errorf("%w (and stream %s is not there: %v)", err, name, serr)
		}
	}
	return nil
}

// TuneGC collects garbage less often unless GOGC is set: the processor's
// live heap is small (~50 MiB at full rate) and its allocation rate high, so
// GOGC=400 saves about a fifth of its CPU for ~100 MiB more memory, which
// GOMEMLIMIT still bounds. main and the benchmark call it.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}
