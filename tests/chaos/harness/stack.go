// Package harness runs the whole vomosync system for the chaos suite: the
// real poller, processor and reconciler binaries as supervised processes, a
// JetStream server in its own process (so kill -9 is real), PostgreSQL (a
// fresh database on the machine's server, or a cluster of the run's own that
// can be stopped in immediate mode), the VOMO simulator in-process, customers
// registered through pkg/customer, and an action endpoint that counts
// one-time side effects. It is a library: the chaos command and the Go test
// both drive it.
package harness

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/postgres"
	"github.com/vomosync/vomosync/pkg/secrets"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

// Binaries are the built service binaries.
type Binaries struct {
	Dir string
}

// Path returns the path of a built binary (poller, processor, reconciler, natsd).
func (b *Binaries) Path(name string) string { return filepath.Join(b.Dir, name) }

// RepoRoot is the repository this source file belongs to.
func RepoRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(self), "..", "..", ".."))
}

// Build compiles the services and natsd into dir, once per run.
func Build(ctx context.Context, root, dir string) (*Binaries, error) {
	pkgs := map[string]string{
		"poller":     "./services/poller/cmd/poller",
		"processor":  "./services/processor/cmd/processor",
		"reconciler": "./services/reconciler/cmd/reconciler",
		"natsd":      "./tests/chaos/cmd/natsd",
	}
	names := make([]string, 0, len(pkgs))
	for n := range pkgs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, name), pkgs[name]) // #nosec G204 -- fixed package list
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %w\n%s", name, err, out)
		}
	}
	return &Binaries{Dir: dir}, nil
}

// Options configure a Stack.
type Options struct {
	Bin *Binaries
	// Dir is the stack's scratch directory (logs, NATS store, own cluster);
	// it must exist. The caller removes it.
	Dir string
	// OwnPostgres runs a cluster of the stack's own in ClusterDir (default
	// Dir/pg) instead of a database on AdminURL.
	OwnPostgres bool
	ClusterDir  string
	// AdminURL of the shared server (default DefaultAdminURL()).
	AdminURL string
	// NATSStoreDir is the JetStream file store (default Dir/nats); a
	// scenario may point it at a small filesystem.
	NATSStoreDir string
	// SimSeed seeds the simulator's data and change stream.
	SimSeed int64
	// Env is added to every service's environment.
	Env []string
	// WrapAPI, when set, wraps the simulator's handler: what the services
	// see of the VOMO API (a scenario serving malformed records).
	WrapAPI func(http.Handler) http.Handler
	// Logf reports progress; nil is quiet.
	Logf func(format string, args ...any)
}

// Stack is one running system.
type Stack struct {
	Opts      Options
	NATS      *NATS
	Cluster   *Cluster // nil on the shared server
	DB        *Database
	Pool      *pgxpool.Pool
	Sim       *sim.Sim
	SimURL    string
	KEK       string
	Customers *customer.Store
	Hook      *Hook

	simSrv *httptest.Server
	mu     sync.Mutex
	svcs   map[string]*Service
	order  []string
	ids    []string
}

// New starts NATS, PostgreSQL (and migrates a fresh database), the
// simulator and the action endpoint. Services are started by Start.
func New(ctx context.Context, o Options) (_ *Stack, err error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.AdminURL == "" {
		o.AdminURL = DefaultAdminURL()
	}
	if o.NATSStoreDir == "" {
		o.NATSStoreDir = filepath.Join(o.Dir, "nats")
	}
	s := &Stack{Opts: o, svcs: map[string]*Service{}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := mkdirPrivate(o.NATSStoreDir); err != nil {
		return nil, err
	}
	if err := mkdirPrivate(filepath.Join(o.Dir, "logs")); err != nil {
		return nil, err
	}
	s.NATS, err = StartNATS(ctx, o.Bin.Path("natsd"), o.NATSStoreDir, filepath.Join(o.Dir, "logs", "natsd.log"))
	if err != nil {
		return nil, err
	}
	admin := o.AdminURL
	if o.OwnPostgres {
		dir := o.ClusterDir
		if dir == "" {
			dir = filepath.Join(o.Dir, "pg")
		}
		s.Cluster, err = InitCluster(ctx, dir)
		if err != nil {
			return nil, err
		}
		admin = s.Cluster.AdminURL()
	}
	s.DB, err = CreateDatabase(ctx, admin)
	if err != nil {
		return nil, err
	}
	s.Pool, err = postgres.Connect(ctx, postgres.Settings{URL: s.DB.URL, MaxConns: 8, ConnectTimeout: 60 * time.Second})
	if err != nil {
		return nil, err
	}
	if _, err := postgres.Migrate(ctx, s.Pool); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	kb := make([]byte, 32)
	_, _ = rand.Read(kb)
	s.KEK = base64.StdEncoding.EncodeToString(kb)
	keys, err := secrets.NewKeyring(s.KEK)
	if err != nil {
		return nil, err
	}
	s.Customers = customer.NewStore(s.Pool, keys)
	s.Sim = sim.New(sim.Options{Seed: o.SimSeed})
	var api http.Handler = s.Sim.Handler()
	if o.WrapAPI != nil {
		api = o.WrapAPI(api)
	}
	s.simSrv = httptest.NewServer(api)
	s.SimURL = s.simSrv.URL
	s.Hook = newHook()
	return s, nil
}

// CustomerIDs lists the customers added, in order.
func (s *Stack) CustomerIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids...)
}

// FastSettings are customer settings for a run measured in seconds: a one
// second users cadence, no settle, no request budget, repairs allowed up to
// a 50% gap rate, and a first_seen action posting to the stack's hook.
func (s *Stack) FastSettings() customer.Settings {
	return customer.Settings{
		Cadences:        map[string]customer.Duration{customer.Users: customer.Duration(time.Second)},
		Settle:          customer.Duration(time.Millisecond),
		BudgetPerMinute: -1,
		Reconcile:       customer.Reconcile{GapThreshold: 0.5},
		Destination:     customer.Destination{AllowPrivate: true},
		Actions:         []customer.Action{{Name: "welcome", On: "first_seen", Resource: customer.Users, URL: s.Hook.URL()}},
	}
}

// AddCustomer creates the customer in the simulator with users users and
// registers it in vomosync with settings (the users resource only).
func (s *Stack) AddCustomer(ctx context.Context, id string, users int, settings customer.Settings) error {
	if err := s.Sim.AddCustomer(sim.CustomerSpec{ID: id, Token: "tok-" + id, Users: users}); err != nil {
		return fmt.Errorf("simulator customer %s: %w", id, err)
	}
	if err := s.Customers.Add(ctx, customer.New{ID: id, APIBaseURL: s.SimURL + "/v1", Token: "tok-" + id,
		Resources: []string{customer.Users}, Settings: settings}); err != nil {
		return fmt.Errorf("customer %s: %w", id, err)
	}
	s.mu.Lock()
	s.ids = append(s.ids, id)
	s.mu.Unlock()
	return nil
}

// ServiceEnv is the environment every service gets.
func (s *Stack) ServiceEnv() []string {
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"DATABASE_URL=" + s.DB.URL,
		"NATS_URL=" + s.NATS.URL(),
		"VOMOSYNC_KEK=" + s.KEK,
		"LOG_LEVEL=info",
		"POLLER_TICK=100ms",
		"POLLER_LEASE=10s",
		"RECONCILER_TICK=200ms",
		"RECONCILER_LEASE=10s",
		"RECONCILER_SETTLE_TIMEOUT=30s",
		"PROCESSOR_OUTBOX_POLL_INTERVAL=200ms",
		// The outbox lease of a claimed side effect is 2× this + 5s: a
		// killed processor's claims come back after 9s, not 25s.
		"PROCESSOR_HTTP_TIMEOUT=2s",
		"PROCESSOR_OUTBOX_RETRY_BASE=500ms",
		// A crashed processor's messages come back after the ack wait
		// (then 2×, 4×, 8× of it): 2s keeps a run measured in seconds.
		"PROCESSOR_ACK_WAIT=2s",
		"PROCESSOR_TARGET_BATCH_LATENCY=1s",
		"PROCESSOR_RETRY_BASE=200ms",
		"PROCESSOR_RETRY_MAX=2s",
		"JS_DUPLICATE_WINDOW=1m",
		"PROCESSOR_SETTINGS_TTL=1s",
	}, s.Opts.Env...)
}

// Start runs binary (poller, processor, reconciler) as a supervised service
// named name; env is appended to ServiceEnv (later entries win).
func (s *Stack) Start(name, binary string, env ...string) (*Service, error) {
	s.mu.Lock()
	if _, ok := s.svcs[name]; ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("service %s already started", name)
	}
	s.mu.Unlock()
	logs, err := newLogSink(filepath.Join(s.Opts.Dir, "logs", name+".log"))
	if err != nil {
		return nil, err
	}
	svc := &Service{Name: name, binary: s.Opts.Bin.Path(binary), env: append(s.ServiceEnv(), env...),
		logs: logs, RestartDelay: 200 * time.Millisecond, done: make(chan struct{})}
	if err := svc.startOnce(); err != nil {
		logs.close()
		return nil, err
	}
	go svc.supervise()
	s.mu.Lock()
	s.svcs[name] = svc
	s.order = append(s.order, name)
	s.mu.Unlock()
	return svc, nil
}

// Service returns a started service or nil.
func (s *Stack) Service(name string) *Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svcs[name]
}

// StopService stops one service for good and forgets it (it can be
// started again under the same name).
func (s *Stack) StopService(name string) {
	s.mu.Lock()
	svc := s.svcs[name]
	delete(s.svcs, name)
	for i, n := range s.order {
		if n == name {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	if svc != nil {
		svc.Stop(20 * time.Second)
	}
}

// CrashLooping returns an error naming every service that keeps dying
// right after it starts (a bad configuration, a schema it refuses), with
// its last log line, so a run fails at once instead of at a timeout.
func (s *Stack) CrashLooping() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, name := range s.order {
		svc := s.svcs[name]
		if svc.crashLooping() {
			last := svc.Tail(1)
			errs = append(errs, fmt.Errorf("%s keeps exiting at start: %s", name, strings.Join(last, "")))
		}
	}
	return errors.Join(errs...)
}

// Connect opens a NATS connection for inspection (the server may have been
// restarted since the last one).
func (s *Stack) Connect(ctx context.Context) (*nats.Conn, jetstream.JetStream, error) {
	return messaging.Connect(ctx, s.NATS.URL(), "chaos-harness", 30*time.Second)
}

// Close stops everything in reverse order and drops the database. It is
// safe on a partly started stack.
func (s *Stack) Close() {
	s.mu.Lock()
	order := append([]string(nil), s.order...)
	s.mu.Unlock()
	for i := len(order) - 1; i >= 0; i-- {
		s.StopService(order[i])
	}
	if s.simSrv != nil {
		s.simSrv.Close()
	}
	if s.Hook != nil {
		s.Hook.srv.Close()
	}
	if s.Pool != nil {
		s.Pool.Close()
	}
	if s.DB != nil && s.Cluster == nil {
		if err := s.DB.Drop(); err != nil {
			s.Opts.Logf("drop database %s: %v", s.DB.Name, err)
		}
	}
	if s.Cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := s.Cluster.Stop(ctx); err != nil {
			_ = s.Cluster.StopImmediate(ctx)
		}
		cancel()
	}
	if s.NATS != nil {
		s.NATS.Close()
	}
}

// Hook is the action endpoint: it accepts every POST and counts deliveries
// per Idempotency-Key. A receiver that honours the key applies each key
// once, so the effects are the distinct keys; repeats are redeliveries.
type Hook struct {
	srv *httptest.Server

	mu   sync.Mutex
	keys map[string]int
}

func newHook() *Hook {
	h := &Hook{keys: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := r.Header.Get("Idempotency-Key")
		h.mu.Lock()
		h.keys[k]++
		h.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	return h
}

// URL of the endpoint.
func (h *Hook) URL() string { return h.srv.URL }

// Deliveries returns deliveries per Idempotency-Key.
func (h *Hook) Deliveries() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.keys))
	for k, n := range h.keys {
		out[k] = n
	}
	return out
}

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }

// Permanent marks an error of a Wait condition that ends the wait at once;
// other errors count as "not yet" (a database the scenario stopped).
func Permanent(err error) error { return permanent{err} }

// Wait polls cond every interval until it returns true, ctx ends or
// timeout passes; the error carries cond's last detail.
func Wait(ctx context.Context, timeout, interval time.Duration, what string, cond func(context.Context) (bool, string, error)) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, detail, err := cond(ctx)
		var perm permanent
		if errors.As(err, &perm) {
			return fmt.Errorf("%s: %w", what, perm.err)
		}
		if err != nil {
			last = err.Error()
		} else if ok {
			return nil
		} else {
			last = detail
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not reached within %s (last: %s)", what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %s)", what, ctx.Err(), last)
		case <-time.After(interval):
		}
	}
}

// SnapshotHead exports the repository's committed HEAD into a temporary
// directory (git archive), so binaries can be built from it while the
// working tree holds someone's half-finished change. The caller removes
// the directory.
func SnapshotHead(ctx context.Context, root string) (string, error) {
	dir, err := os.MkdirTemp("", "chaos-src-")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive HEAD | tar -x -C "$2"`, "sh", root, dir) // #nosec G204 -- fixed script, paths as arguments
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("git archive HEAD: %w: %s", err, out)
	}
	return dir, nil
}
