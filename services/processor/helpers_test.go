package processor_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/natstest"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/pkg/secrets"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
	"github.com/vomosync/vomosync/services/processor"
)

var setupTracing sync.Once

// bundle is one test's world: a database, a JetStream server, customers.
type bundle struct {
	t   *testing.T
	ctx context.Context
	db  *pgtest.DB
	nc  *nats.Conn
	js  jetstream.JetStream
	tp  *sdktrace.TracerProvider
	seq int
	mu  sync.Mutex
}

func setup(t *testing.T) *bundle {
	t.Helper()
	setupTracing.Do(func() {
		otel.SetTextMapPropagator(propagation.TraceContext{})
		otel.SetTracerProvider(sdktrace.NewTracerProvider())
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	db := pgtest.New(t)
	url, _ := natstest.Start(t)
	nc, js, err := messaging.Connect(ctx, url, "test", 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	require.NoError(t, messaging.EnsureStreams(ctx, js, messaging.Settings{Replicas: 1, DuplicateWindow: time.Minute, MaxAge: time.Hour, MaxBytes: -1}))
	return &bundle{t: t, ctx: ctx, db: db, nc: nc, js: js, tp: sdktrace.NewTracerProvider()}
}

// addCustomer creates a customer with settings.
func (b *bundle) addCustomer(id string, s customer.Settings) {
	b.t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keys, err := secrets.NewKeyring(base64.StdEncoding.EncodeToString(key))
	require.NoError(b.t, err)
	require.NoError(b.t, customer.NewStore(b.db.Pool, keys).Add(b.ctx, customer.New{ID: id, Token: "tok-" + id, Settings: s}))
}

// testConfig is a processor config with short waits for tests.
func testConfig() processor.Config {
	cfg := processor.DefaultConfig()
	cfg.BatchSize = 100
	cfg.MaxWait = 100 * time.Millisecond
	cfg.AckWait = time.Second
	cfg.TargetBatchLatency = 500 * time.Millisecond
	cfg.RetryBase = 50 * time.Millisecond
	cfg.RetryMax = 200 * time.Millisecond
	cfg.SettingsTTL = 0
	cfg.DrainTimeout = 5 * time.Second
	cfg.MaintenanceInterval = time.Second
	cfg.OutboxPollInterval = 50 * time.Millisecond
	cfg.OutboxRetryBase = 50 * time.Millisecond
	cfg.HTTPTimeout = 2 * time.Second
	return cfg
}

// running is a processor started in the background.
type running struct {
	p      *processor.Processor
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error
}

// start runs a processor until the test ends (or stop is called).
func (b *bundle) start(cfg processor.Config, hooks processor.Hooks) *running {
	b.t.Helper()
	log := zerolog.Nop()
	if os.Getenv("PROCESSOR_TEST_LOG") != "" {
		log = zerolog.New(zerolog.NewTestWriter(b.t)).Level(zerolog.InfoLevel)
	}
	p, err := processor.New(cfg, processor.Deps{Pool: b.db.Pool, JS: b.js, Log: log, Hooks: hooks})
	require.NoError(b.t, err)
	ctx, cancel := context.WithCancel(b.ctx)
	r := &running{p: p, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = p.Run(ctx)
		close(r.done)
	}()
	b.t.Cleanup(func() { _ = r.stop() })
	return r
}

// stop cancels the processor and returns what Run returned.
func (r *running) stop() error {
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("processor did not stop")
	}
}

type ev struct {
	customer, resource, id string
	at                     time.Time
	del                    bool
	record                 map[string]any
}

func user(cust, id string, at time.Time, fields ...string) ev {
	rec := map[string]any{"id": mustAtoi(id), "type": "user", "first_name": "F" + id, "last_name": "L" + id,
		"email": "u" + id + "@example.org", "updated_at": at.UTC().Format(time.RFC3339Nano)}
	for i := 0; i+1 < len(fields); i += 2 {
		rec[fields[i]] = fields[i+1]
	}
	return ev{customer: cust, resource: "users", id: id, at: at, record: rec}
}

func mustAtoi(s string) any {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return s
}

// publish publishes events under one trace (like one poll cycle) and
// returns its trace id. Every call gets fresh message ids, so publishing the
// same versions again is a redelivery, not a duplicate JetStream drops.
func (b *bundle) publish(evs ...ev) string {
	b.t.Helper()
	ctx, span := b.tp.Tracer("test").Start(b.ctx, "cycle")
	defer span.End()
	b.mu.Lock()
	b.seq++
	suffix := "t" + strconv.Itoa(b.seq)
	b.mu.Unlock()
	batch := messaging.NewBatch(b.js)
	for _, e := range evs {
		ce := &eventsv1.ChangeEvent{CustomerId: e.customer, Resource: e.resource, RecordId: e.id,
			Operation: eventsv1.Operation_OPERATION_UPSERT, SourceUpdatedAt: timestamppb.New(e.at),
			Origin: eventsv1.Origin_ORIGIN_POLL, CycleId: "cycle-" + suffix, ObservedAt: timestamppb.Now()}
		if e.del {
			ce.Operation = eventsv1.Operation_OPERATION_DELETE
		} else {
			raw, err := json.Marshal(e.record)
			require.NoError(b.t, err)
			ce.Record = raw
		}
		pctx, ps := messaging.StartPublishSpan(ctx, ce)
		m, err := messaging.NewMsg(pctx, ce, messaging.MsgID(ce, suffix))
		ps.End()
		require.NoError(b.t, err)
		require.NoError(b.t, batch.Add(m))
	}
	n, err := batch.Wait(b.ctx)
	require.NoError(b.t, err)
	require.Equal(b.t, len(evs), n)
	return span.SpanContext().TraceID().String()
}

// publishRaw publishes arbitrary bytes on a change subject.
func (b *bundle) publishRaw(subject string, data []byte) {
	b.t.Helper()
	_, err := b.js.Publish(b.ctx, subject, data)
	require.NoError(b.t, err)
}

func (b *bundle) count(sql string, args ...any) int {
	b.t.Helper()
	var n int
	require.NoError(b.t, b.db.Pool.QueryRow(b.ctx, sql, args...).Scan(&n))
	return n
}

// eventually polls cond until it holds or the deadline passes.
func (b *bundle) eventually(what string, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *bundle) auditCount() int { return b.count(`SELECT count(*) FROM vomosync.audit_log`) }

// consumerIdle: the processor's consumer exists and has nothing pending or
// unacknowledged.
func (b *bundle) consumerIdle() bool {
	cons, err := b.js.Consumer(b.ctx, messaging.StreamChanges, messaging.ConsumerName)
	if err != nil {
		return false
	}
	info, err := cons.Info(b.ctx)
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

// logRows logs the rows of a query (shown when the test fails).
func (b *bundle) logRows(sql string, args ...any) {
	b.t.Helper()
	rows, err := b.db.Pool.Query(b.ctx, sql, args...)
	require.NoError(b.t, err)
	defer rows.Close()
	for rows.Next() {
		v, err := rows.Values()
		require.NoError(b.t, err)
		b.t.Log(v...)
	}
}
