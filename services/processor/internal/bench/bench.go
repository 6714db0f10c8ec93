// Package bench measures the processor end to end on this machine: a
// JetStream stream filled with realistic user change events is drained into
// the Postgres destination with audit rows, and a per-message baseline (one
// transaction and one ack per message) runs on a smaller count in the same
// run for comparison. cmd/procbench and BenchmarkProcessor drive it.
package bench

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/natsserver"
	"github.com/vomosync/vomosync/pkg/postgres"
	"github.com/vomosync/vomosync/pkg/secrets"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
	"github.com/vomosync/vomosync/services/processor"
	"github.com/vomosync/vomosync/services/processor/apply"
	"github.com/vomosync/vomosync/services/processor/destination"
)

// Options size the run.
type Options struct {
	N          int    // events through the processor
	Baseline   int    // events through the per-message baseline
	Workers    int    // processor workers
	BatchSize  int    // processor batch size
	AdminURL   string // Postgres server to create the scratch database on
	CPUProfile string // file for the processor phase's CPU profile ("" = none)
	Progress   io.Writer
}

// Report is what a run measured.
type Report struct {
	N, BaselineN, Workers int
	PublishRate           float64 // events/s into JetStream (async, acked)
	Elapsed               time.Duration
	Rate                  float64 // events/s stream -> committed destination + audit, acked
	BaselineElapsed       time.Duration
	BaselineRate          float64
	Ratio                 float64
	PeakHeapBytes         uint64 // sampled Go heap during the processor phase
	PeakRSSBytes          uint64 // peak RSS of the processor process during its phase (NATS runs in a child process)
	DestRows, AuditRows   int
	Batches, TxRetries    int64
	Unstaged              int64
	// CPU seconds spent during the processor phase by the processor
	// process, the Postgres backends serving its pool, and JetStream.
	CPUProcessor, CPUPostgres, CPUNATS float64
	Phases                             string
	Records, UpdateFraction            float64
}

func (r Report) String() string {
	return fmt.Sprintf(`processor benchmark (%d events, %d workers)
  publish (async, acked):      %8.0f events/s
  processor (batch, 1 tx each): %8.0f events/s  (%d events in %s; %d destination rows, %d audit rows)
  baseline (1 tx + 1 ack each): %8.0f events/s  (%d events in %s)
  ratio:                        %8.1fx
  peak Go heap %d MiB, peak RSS %d MiB (the processor's process; JetStream runs in a child process)
  CPU per event: processor %.0f µs, Postgres backends %.0f µs, JetStream %.0f µs (%.2f cores busy on average)
  %s (fast path handed %d batches to the general path, %d transaction retries)`,
		r.N, r.Workers, r.PublishRate, r.Rate, r.N, r.Elapsed.Round(time.Millisecond), r.DestRows, r.AuditRows,
		r.BaselineRate, r.BaselineN, r.BaselineElapsed.Round(time.Millisecond), r.Ratio,
		r.PeakHeapBytes>>20, r.PeakRSSBytes>>20,
		1e6*r.CPUProcessor/float64(max(r.N, 1)), 1e6*r.CPUPostgres/float64(max(r.N, 1)), 1e6*r.CPUNATS/float64(max(r.N, 1)),
		(r.CPUProcessor+r.CPUPostgres+r.CPUNATS)/max(r.Elapsed.Seconds(), 1e-9), r.Phases, r.Unstaged, r.TxRetries)
}

// Run performs the benchmark in a scratch database and an embedded JetStream
// server, both removed afterwards.
func Run(ctx context.Context, o Options) (Report, error) {
	rep := Report{N: o.N, BaselineN: o.Baseline, Workers: o.Workers}
	otel.SetTextMapPropagator(propagation.TraceContext{})
	otel.SetTracerProvider(sdktrace.NewTracerProvider())
	say := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", args...)
		}
	}

	dbURL, drop, err := scratchDB(ctx, o.AdminURL)
	if err != nil {
		return rep, err
	}
	defer drop()
	if opt := os.Getenv("PROCBENCH_PG_OPTIONS"); opt != "" {
		// Session settings for experiments, e.g. "-c wal_compression=on".
		sep := "?"
		if strings.Contains(dbURL, "?") {
			sep = "&"
		}
		dbURL += sep + "options=" + strings.ReplaceAll(url.QueryEscape(opt), "+", "%20")
	}
	pool, err := postgres.Connect(ctx, postgres.Settings{URL: dbURL, MaxConns: int32(o.Workers + 4), ConnectTimeout: 10 * time.Second})
	if err != nil {
		return rep, err
	}
	defer pool.Close()
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		return rep, err
	}
	if ddl := os.Getenv("PROCBENCH_EXPERIMENT_SQL"); ddl != "" {
		if _, err := pool.Exec(ctx, ddl); err != nil {
			return rep, fmt.Errorf("experiment sql: %w", err)
		}
	}
	natsURL, natsPID, stopNATS, err := startNATS()
	if err != nil {
		return rep, err
	}
	defer stopNATS()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return rep, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		return rep, err
	}
	if err := messaging.EnsureStreams(ctx, js, messaging.Settings{Replicas: 1, DuplicateWindow: 2 * time.Minute, MaxAge: 24 * time.Hour, MaxBytes: -1}); err != nil {
		return rep, err
	}
	kek := make([]byte, 32)
	_, _ = crand.Read(kek)
	keys, err := secrets.NewKeyring(base64.StdEncoding.EncodeToString(kek))
	if err != nil {
		return rep, err
	}
	store := customer.NewStore(pool, keys)
	customers := []string{"base", "acme", "globex", "initech", "umbrella"}
	for _, c := range customers {
		if err := store.Add(ctx, customer.New{ID: c, Token: "t"}); err != nil {
			return rep, err
		}
	}

	// Baseline first, on its own customer and consumer, then purged.
	say("baseline: publishing %d events", o.Baseline)
	if _, _, err := publish(ctx, js, []string{"base"}, o.Baseline); err != nil {
		return rep, err
	}
	say("baseline: one transaction and one ack per message")
	rep.BaselineElapsed, err = baseline(ctx, pool, js, o.Baseline)
	if err != nil {
		return rep, err
	}
	rep.BaselineRate = float64(o.Baseline) / rep.BaselineElapsed.Seconds()
	stream, err := js.Stream(ctx, messaging.StreamChanges)
	if err != nil {
		return rep, err
	}
	if err := stream.Purge(ctx); err != nil {
		return rep, err
	}

	say("processor: publishing %d events", o.N)
	pubStart := time.Now()
	distinct, updates, err := publish(ctx, js, customers[1:], o.N)
	if err != nil {
		return rep, err
	}
	rep.PublishRate = float64(o.N) / time.Since(pubStart).Seconds()
	rep.Records, rep.UpdateFraction = float64(distinct), float64(updates)/float64(o.N)
	runtime.GC()
	resetPeakRSS()

	processor.TuneGC() // as main does
	cfg := processor.DefaultConfig()
	cfg.Workers, cfg.BatchSize = o.Workers, o.BatchSize
	cfg.DisableOutboxSender = true
	// The service logs one JSON line per batch; keep that cost in.
	log := zerolog.New(io.Discard).Level(zerolog.InfoLevel)
	p, err := processor.New(cfg, processor.Deps{Pool: pool, JS: js, Log: log})
	if err != nil {
		return rep, err
	}
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return rep, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return rep, err
		}
		defer pprof.StopCPUProfile()
	}
	say("processor: draining the stream with %d workers × %d", o.Workers, o.BatchSize)
	var peakHeap atomic.Uint64
	sampleDone := make(chan struct{})
	go sampleHeap(&peakHeap, sampleDone)
	backends, err := backendPIDs(ctx, pool)
	if err != nil {
		return rep, err
	}
	rctx, cancel := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	cpuPG0, cpuNATS0, cpuSelf0 := procCPU(backends...), procCPU(natsPID), selfCPU()
	start := time.Now()
	go func() { runErr <- p.Run(rctx) }()
	err = waitDrained(ctx, js, runErr)
	rep.Elapsed = time.Since(start)
	if more, perr := backendPIDs(ctx, pool); perr == nil {
		backends = more // connections opened during the run started from zero
	}
	rep.CPUPostgres, rep.CPUNATS, rep.CPUProcessor = procCPU(backends...)-cpuPG0, procCPU(natsPID)-cpuNATS0, selfCPU()-cpuSelf0
	close(sampleDone)
	rep.PeakRSSBytes = peakRSS()
	cancel()
	if err != nil {
		return rep, err
	}
	if err := <-runErr; err != nil {
		return rep, err
	}
	pprof.StopCPUProfile()
	rep.Rate = float64(o.N) / rep.Elapsed.Seconds()
	rep.Ratio = rep.Rate / rep.BaselineRate
	rep.PeakHeapBytes = peakHeap.Load()
	st := p.Applier().Stats()
	rep.TxRetries, rep.Unstaged = st.TxRetries.Load(), st.Unstaged.Load()
	var total int64
	for i := range st.Phase {
		total += st.Phase[i].Load()
	}
	for i, name := range apply.PhaseNames {
		rep.Phases += fmt.Sprintf(" %s %.0f%%", name, 100*float64(st.Phase[i].Load())/float64(max(total, 1)))
	}
	rep.Phases = fmt.Sprintf("transaction time %s over %d workers:%s", time.Duration(total).Round(time.Millisecond), o.Workers, rep.Phases)
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM vomo_dest.users WHERE customer_id <> 'base'),
		(SELECT count(*) FROM vomosync.audit_log WHERE customer_id <> 'base')`).Scan(&rep.DestRows, &rep.AuditRows); err != nil {
		return rep, err
	}
	if rep.AuditRows != o.N || rep.DestRows != distinct {
		return rep, fmt.Errorf("incomplete: %d audit rows for %d events, %d destination rows for %d records", rep.AuditRows, o.N, rep.DestRows, distinct)
	}
	return rep, nil
}

// scratchDB creates an empty database for the run and returns its URL and
// a func dropping it.
func scratchDB(ctx context.Context, admin string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, fmt.Errorf("postgres at %s: %w", admin, err)
	}
	var r [4]byte
	_, _ = crand.Read(r[:])
	name := "vsbench_" + hex.EncodeToString(r[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		conn.Close(ctx)
		return "", nil, err
	}
	conn.Close(ctx)
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() {
		c, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	return u.String(), drop, nil
}

var (
	firstNames = []string{"Margaret", "James", "Aisha", "Chen", "Olga", "Mateo", "Priya", "Samuel", "Fatima", "Lukas"}
	lastNames  = []string{"Hamilton-Smith", "Okafor", "Nakamura", "Fernández", "Kowalski", "Abernathy", "Nguyen", "Lindqvist"}
	statuses   = []string{"VERIFIED", "UNVERIFIED"}
	roles      = []string{"VOLUNTEER", "ADMIN", "COORDINATOR"}
)

// userRecord is a VOMO UserResource as the API returns it (~580 bytes).
func userRecord(id int, version int, updated time.Time) []byte {
	fn, ln := firstNames[id%len(firstNames)], lastNames[(id/7)%len(lastNames)]
	rec := map[string]any{
		"type": "user", "id": id, "first_name": fn, "last_name": ln, "full_name": fn + " " + ln,
		"email":       strings.ToLower(fn) + "." + strings.ToLower(ln) + "." + strconv.Itoa(id) + "@volunteers.example.org",
		"address":     strconv.Itoa(100+id%9000) + " Maple Avenue, Apt " + strconv.Itoa(id%97) + ", Springfield, IL 62704, USA",
		"phone":       "+1-217-555-" + fmt.Sprintf("%04d", id%10000),
		"birthday":    fmt.Sprintf("19%02d-%02d-%02d", 50+id%50, 1+id%12, 1+id%28),
		"gender":      []string{"M", "F", "N"}[id%3],
		"updated_at":  updated.UTC().Format("2006-01-02T15:04:05.000000Z"),
		"created_at":  updated.Add(-time.Duration(id%1000) * time.Hour).UTC().Format("2006-01-02T15:04:05.000000Z"),
		"user_status": statuses[id%2], "membership_status": "ACCEPTED", "membership_role": roles[id%3],
		"hours_total": version * 3,
		"profile_field_values": []map[string]any{
			{"id": 11, "name": "T-shirt size", "value": []string{"S", "M", "L", "XL"}[id%4]},
			{"id": 12, "name": "Emergency contact", "value": "Alex Doe +1-217-555-0199"},
			{"id": 13, "name": "Skills", "value": "first aid, driving, translation"},
		},
	}
	b, _ := json.Marshal(rec)
	return b
}

// publish fills the stream with n user events spread over customers: four
// in five are new records, one in five an update of an earlier one (as a
// backfill followed by polling looks). Each 500 events share one poll-cycle
// trace. It returns how many distinct records and updates it produced.
func publish(ctx context.Context, js jetstream.JetStream, customers []string, n int) (int, int, error) {
	tr := otel.Tracer("github.com/vomosync/vomosync/services/processor/internal/bench")
	rnd := rand.New(rand.NewPCG(42, uint64(n)))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	next := map[string]int{}
	version := map[string]map[int]int{}
	distinct, updates := 0, 0
	batch := messaging.NewBatch(js)
	var cctx context.Context
	for i := 0; i < n; i++ {
		if i%500 == 0 {
			c, span := tr.Start(ctx, "poll cycle")
			span.End()
			cctx = c
		}
		cust := customers[i%len(customers)]
		if version[cust] == nil {
			version[cust] = map[int]int{}
		}
		var id int
		if i%5 == 4 && next[cust] > 0 {
			id = 1 + rnd.IntN(next[cust])
			updates++
		} else {
			next[cust]++
			id = next[cust]
			distinct++
		}
		version[cust][id]++
		at := base.Add(time.Duration(i) * time.Millisecond)
		ev := &eventsv1.ChangeEvent{CustomerId: cust, Resource: "users", RecordId: strconv.Itoa(id),
			Operation: eventsv1.Operation_OPERATION_UPSERT, SourceUpdatedAt: timestamppb.New(at),
			Record: userRecord(id, version[cust][id], at), Origin: eventsv1.Origin_ORIGIN_POLL,
			CycleId: "bench-" + strconv.Itoa(i/500), ObservedAt: timestamppb.Now()}
		m, err := messaging.NewMsg(cctx, ev, messaging.MsgID(ev, ""))
		if err != nil {
			return 0, 0, err
		}
		if err := batch.Add(m); err != nil {
			return 0, 0, err
		}
		if batch.Len() == 1000 { // under the async window of 1024: Add never stalls
			if _, err := batch.Wait(ctx); err != nil {
				return 0, 0, err
			}
		}
	}
	if _, err := batch.Wait(ctx); err != nil {
		return 0, 0, err
	}
	return distinct, updates, nil
}

// baseline consumes with one transaction and one ack per message, as a
// straightforward consumer would: guarded state upsert, destination upsert
// and audit row, commit, ack.
func baseline(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, n int) (time.Duration, error) {
	cons, err := js.CreateOrUpdateConsumer(ctx, messaging.StreamChanges, jetstream.ConsumerConfig{
		Durable: "baseline", FilterSubject: messaging.ChangeSubject("base", ">"), AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: time.Minute,
	})
	if err != nil {
		return 0, err
	}
	defer func() { _ = js.DeleteConsumer(context.Background(), messaging.StreamChanges, "baseline") }()
	it, err := cons.Messages()
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	start := time.Now()
	for i := 0; i < n; i++ {
		msg, err := it.Next()
		if err != nil {
			return 0, err
		}
		ev, err := messaging.Decode(msg.Data())
		if err != nil {
			return 0, err
		}
		at := ev.GetSourceUpdatedAt().AsTime()
		ext := destination.ExternalID(ev.GetRecordId())
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var applied bool
			err := tx.QueryRow(ctx, `WITH up AS (
					INSERT INTO vomosync.sync_state AS ss (customer_id, resource, record_id, external_id, source_updated_at, record)
					VALUES ($1, $2, $3, $4, $5, $6)
					ON CONFLICT (customer_id, resource, record_id) DO UPDATE SET source_updated_at = EXCLUDED.source_updated_at,
						record = EXCLUDED.record, applied_at = now()
					WHERE ss.source_updated_at < EXCLUDED.source_updated_at RETURNING 1)
				SELECT count(*) > 0 FROM up`,
				ev.GetCustomerId(), ev.GetResource(), ev.GetRecordId(), ext, at, ev.GetRecord()).Scan(&applied)
			if err != nil {
				return err
			}
			outcome := string(apply.SkippedStale)
			if applied {
				outcome = string(apply.Applied)
				if _, err := tx.Exec(ctx, `INSERT INTO vomo_dest.users AS d (customer_id, external_id, source_updated_at, record)
					VALUES ($1, $2, $3, $4) ON CONFLICT (customer_id, external_id) DO UPDATE SET
					source_updated_at = EXCLUDED.source_updated_at, record = EXCLUDED.record, synced_at = now()
					WHERE d.source_updated_at < EXCLUDED.source_updated_at`, ev.GetCustomerId(), ext, at, ev.GetRecord()); err != nil {
					return err
				}
			}
			_, err = tx.Exec(ctx, `INSERT INTO vomosync.audit_log (customer_id, resource, record_id, record_updated_at, origin, outcome)
				VALUES ($1, $2, $3, $4, 'poll', $5)`, ev.GetCustomerId(), ev.GetResource(), ev.GetRecordId(), at, outcome)
			return err
		})
		if err != nil {
			return 0, err
		}
		if err := msg.Ack(); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// waitDrained returns when the processor's consumer has nothing pending and
// nothing unacknowledged.
func waitDrained(ctx context.Context, js jetstream.JetStream, runErr <-chan error) error {
	for {
		select {
		case err := <-runErr:
			return fmt.Errorf("processor stopped early: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		cons, err := js.Consumer(ctx, messaging.StreamChanges, messaging.ConsumerName)
		if err != nil {
			continue
		}
		info, err := cons.Info(ctx)
		if err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.Delivered.Stream > 0 {
			return nil
		}
	}
}

func sampleHeap(peak *atomic.Uint64, done <-chan struct{}) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		metrics.Read(s)
		if v := s[0].Value.Uint64(); v > peak.Load() {
			peak.Store(v)
		}
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

// resetPeakRSS makes VmHWM start from the current RSS (Linux).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func peakRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// natsChildEnv, when set in the environment, makes the benchmark binary a
// JetStream server storing in that directory (see ServeNATSIfChild).
const natsChildEnv = "VOMOSYNC_PROCBENCH_NATS_DIR"

// ServeNATSIfChild turns this process into the benchmark's JetStream server
// when it was started as one, and returns false otherwise. Call it first
// thing in main (or TestMain), so JetStream's CPU and memory are not counted
// as the processor's, as in production.
func ServeNATSIfChild() bool {
	dir := os.Getenv(natsChildEnv)
	if dir == "" {
		return false
	}
	srv, err := natsserver.Start(natsserver.Options{Port: -1, StoreDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(srv.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin) // the parent closes stdin to stop us
	srv.Shutdown()
	srv.WaitForShutdown()
	os.Exit(0)
	return true
}

// startNATS runs a JetStream server in a child process of this binary and
// returns its URL and process id.
func startNATS() (string, int, func(), error) {
	dir, err := os.MkdirTemp("", "procbench-js-")
	if err != nil {
		return "", 0, nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return "", 0, nil, err
	}
	cmd := exec.Command(exe) // #nosec G204 -- re-executes this benchmark binary as the JetStream child
	cmd.Env = append(os.Environ(), natsChildEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", 0, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	stop := func() {
		_ = stdin.Close()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stop()
		return "", 0, nil, fmt.Errorf("benchmark JetStream server did not start: %w", err)
	}
	return strings.TrimSpace(line), cmd.Process.Pid, stop, nil
}

// backendPIDs lists the Postgres backends connected to the pool's database.
func backendPIDs(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	var pids []int
	err := pool.QueryRow(ctx, `SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity WHERE datname = current_database()`).Scan(&pids)
	return pids, err
}

// procCPU sums the user and system CPU seconds of processes (Linux, local
// Postgres; 0 for those it cannot read).
func procCPU(pids ...int) float64 {
	var ticks uint64
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name; utime and stime are
		// the 14th and 15th of the line.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 12 {
				u, _ := strconv.ParseUint(f[11], 10, 64)
				st, _ := strconv.ParseUint(f[12], 10, 64)
				ticks += u + st
			}
		}
	}
	return float64(ticks) / 100 // USER_HZ
}

func selfCPU() float64 { return procCPU(os.Getpid()) }
