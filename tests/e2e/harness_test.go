// Package e2e runs the real service binaries against real PostgreSQL, an
// in-process JetStream server and the VOMO simulator, and checks the
// invariants across the whole pipeline.
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/natstest"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/pkg/secrets"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

var binDir string

// TestMain builds the service binaries once for every test.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vomosync-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..")
	for _, svc := range []string{"poller", "processor", "reconciler"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, svc), "./services/"+svc+"/cmd/"+svc)
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", svc, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(binDir)
	os.Exit(code)
}

// stack is one test's whole system.
type stack struct {
	t       *testing.T
	ctx     context.Context
	db      *pgtest.DB
	pool    *pgxpool.Pool
	natsURL string
	nats    *server.Server
	sim     *sim.Sim
	simURL  string
	kek     string
	store   *customer.Store

	mu    sync.Mutex
	procs map[string]*proc
}

type proc struct {
	cmd  *exec.Cmd
	logs *lineBuffer
	done chan struct{}
}

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	db := pgtest.New(t)
	natsURL, ns := natstest.Start(t)
	s := sim.New(sim.Options{Seed: 42})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	kb := make([]byte, 32)
	_, _ = rand.Read(kb)
	kek := base64.StdEncoding.EncodeToString(kb)
	keys, err := secrets.NewKeyring(kek)
	require.NoError(t, err)
	st := &stack{t: t, ctx: ctx, db: db, pool: db.Pool, natsURL: natsURL, nats: ns, sim: s, simURL: srv.URL,
		kek: kek, store: customer.NewStore(db.Pool, keys), procs: map[string]*proc{}}
	t.Cleanup(st.stopAll)
	return st
}

// addCustomer creates a customer in the simulator and in vomosync with fast
// test cadences and no request budget.
func (s *stack) addCustomer(id string, users int, settings customer.Settings) {
	s.t.Helper()
	require.NoError(s.t, s.sim.AddCustomer(sim.CustomerSpec{ID: id, Token: "tok-" + id, Users: users}))
	if settings.Cadences == nil {
		settings.Cadences = map[string]customer.Duration{"users": customer.Duration(time.Second)}
	}
	if settings.Settle == 0 {
		settings.Settle = customer.Duration(time.Millisecond)
	}
	if settings.BudgetPerMinute == 0 {
		settings.BudgetPerMinute = -1
	}
	require.NoError(s.t, s.store.Add(s.ctx, customer.New{ID: id, APIBaseURL: s.simURL + "/v1", Token: "tok-" + id, Settings: settings}))
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// start runs a service binary under name with extra environment.
func (s *stack) start(name, binary string, extra ...string) {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, binary))
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"DATABASE_URL=" + s.db.URL,
		"NATS_URL=" + s.natsURL,
		"VOMOSYNC_KEK=" + s.kek,
		"ADMIN_ADDR=" + freeAddr(s.t),
		"LOG_LEVEL=debug",
		"POLLER_ID=" + name,
		"POLLER_TICK=100ms",
		"POLLER_LEASE=10s",
	}, extra...)
	logs := &lineBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(s.t, cmd.Start())
	p := &proc{cmd: cmd, logs: logs, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
}

// kill sends SIGKILL (no cleanup at all) and waits for the exit.
func (s *stack) kill(name string) {
	s.signal(name, syscall.SIGKILL)
}

// stop sends SIGTERM and waits for a clean exit.
func (s *stack) stop(name string) {
	s.signal(name, syscall.SIGTERM)
}

func (s *stack) signal(name string, sig syscall.Signal) {
	s.mu.Lock()
	p := s.procs[name]
	delete(s.procs, name)
	s.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	if s.t.Failed() || os.Getenv("E2E_LOGS") != "" {
		s.t.Logf("--- %s logs (last lines)\n%s", name, p.logs.tail(40))
	}
}

func (s *stack) logs(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.procs[name]; p != nil {
		return p.logs.lines()
	}
	return nil
}

func (s *stack) stopAll() {
	s.mu.Lock()
	names := make([]string, 0, len(s.procs))
	for n := range s.procs {
		names = append(names, n)
	}
	s.mu.Unlock()
	for _, n := range names {
		s.stop(n)
	}
}

// eventually polls cond until it holds or the deadline passes.
func (s *stack) eventually(what string, timeout time.Duration, cond func() (bool, string)) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("%s: not reached within %s (last: %s)", what, timeout, last)
}

// lineBuffer collects a process's output lines.
type lineBuffer struct {
	mu  sync.Mutex
	buf []string
	rem string
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	data := b.rem + string(p)
	lines := strings.Split(data, "\n")
	b.rem = lines[len(lines)-1]
	b.buf = append(b.buf, lines[:len(lines)-1]...)
	return len(p), nil
}

func (b *lineBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.buf...)
}

func (b *lineBuffer) tail(n int) string {
	l := b.lines()
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

var _ io.Writer = (*lineBuffer)(nil)
