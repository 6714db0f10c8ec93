package runproof_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/natstest"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/pkg/secrets"
)

// repoRoot is the repository, from this package's directory.
const repoRoot = "../../.."

// stack is one run of the pipeline with a Jaeger receiving its traces.
type stack struct {
	t       *testing.T
	ctx     context.Context
	db      *pgtest.DB
	bin     string
	env     []string
	jaeger  string // query API base URL
	otlp    string // OTLP/HTTP endpoint for the services
	simURL  string
	mu      sync.Mutex
	admin   map[string]string // service -> admin address (/metrics)
	procs   map[string]*proc
	stopped map[string][]string // logs of stopped processes
}

type proc struct {
	cmd  *exec.Cmd
	out  *lines
	done chan struct{}
}

// lines collects a process's output, one log line per entry.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// goEnv is the environment for go commands run by the test: GOWORK is left
// to the go command, so the repository's go.work builds the services (and
// shares the build cache with the e2e tests) even when `go test` itself runs
// with GOWORK=off.
func goEnv() []string {
	var out []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "GOWORK=") {
			out = append(out, e)
		}
	}
	return out
}

// buildServices builds the binaries the run needs into dir.
func buildServices(t *testing.T, dir string) {
	t.Helper()
	for _, svc := range []string{"poller", "processor", "reconciler", "vomosim"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, svc), "./services/"+svc+"/cmd/"+svc)
		cmd.Dir, cmd.Env = repoRoot, goEnv()
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "build %s: %s", svc, out)
	}
}

// jaegerBinary builds Jaeger from the pinned module (deployments/obs-tools/jaeger)
// and returns the path of the cached executable.
func jaegerBinary(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "tool", "-n", "jaeger")
	cmd.Dir = filepath.Join("..", "jaeger")
	cmd.Env = append(goEnv(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "build jaeger: %s", stderr.String())
	return strings.TrimSpace(string(out))
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// jaegerConfig is an all-in-one Jaeger v2 on loopback ports: OTLP/HTTP in,
// memory storage, the query API out, no self-tracing and no metrics port.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: mem
    enable_tracing: false
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// scenario is the simulator's one customer.
const scenario = `seed: 7
customers:
  - id: proof
    token: tok-proof
    users: %d
`

const users = 40

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	dir := t.TempDir()
	buildServices(t, dir)
	s := &stack{t: t, ctx: ctx, bin: dir, admin: map[string]string{}, procs: map[string]*proc{}, stopped: map[string][]string{}}
	t.Cleanup(s.stopAll)

	query, grpc, otlp := freePort(t), freePort(t), freePort(t)
	cfg := filepath.Join(dir, "jaeger.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, query, grpc, otlp), 0o600))
	s.startCmd("jaeger", exec.Command(jaegerBinary(t), "--config", cfg))
	s.jaeger, s.otlp = "http://"+query, "http://"+otlp
	s.waitHTTP("jaeger query API", s.jaeger+"/api/services")

	simAddr := freePort(t)
	sc := filepath.Join(dir, "scenario.yaml")
	require.NoError(t, os.WriteFile(sc, fmt.Appendf(nil, scenario, users), 0o600))
	vs := exec.Command(filepath.Join(dir, "vomosim"))
	vs.Env = []string{"SIM_ADDR=" + simAddr, "SIM_SCENARIO=" + sc}
	s.startCmd("vomosim", vs)
	s.simURL = "http://" + simAddr
	s.waitHTTP("simulator", s.simURL+"/admin/customers")

	s.db = pgtest.New(t)
	natsURL, _ := natstest.Start(t)
	kb := make([]byte, 32)
	_, _ = rand.Read(kb)
	kek := base64.StdEncoding.EncodeToString(kb)
	keys, err := secrets.NewKeyring(kek)
	require.NoError(t, err)
	require.NoError(t, customer.NewStore(s.db.Pool, keys).Add(ctx, customer.New{
		ID: "proof", APIBaseURL: s.simURL + "/v1", Token: "tok-proof", Resources: []string{"users"},
		Settings: customer.Settings{
			Cadences:        map[string]customer.Duration{"users": customer.Duration(time.Second)},
			Settle:          customer.Duration(time.Millisecond),
			BudgetPerMinute: -1,
			// One forced gap in 40 records is 2.5%: repair it rather than hold.
			Reconcile: customer.Reconcile{GapThreshold: 0.5},
		},
	}))
	s.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"DATABASE_URL=" + s.db.URL,
		"NATS_URL=" + natsURL,
		"VOMOSYNC_KEK=" + kek,
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + s.otlp,
		"LOG_LEVEL=debug",
		"POLLER_TICK=100ms",
		"POLLER_LEASE=10s",
		"RECONCILER_TICK=200ms",
	}
	return s
}

// start runs a service binary with the stack's environment.
func (s *stack) start(name string) {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(s.bin, name))
	admin := freePort(s.t)
	cmd.Env = append(append([]string{}, s.env...), "ADMIN_ADDR="+admin, "POLLER_ID="+name)
	s.mu.Lock()
	s.admin[name] = admin
	s.mu.Unlock()
	s.startCmd(name, cmd)
}

func (s *stack) startCmd(name string, cmd *exec.Cmd) {
	s.t.Helper()
	out := &lines{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(s.t, cmd.Start(), name)
	p := &proc{cmd: cmd, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
}

// stop ends a process with SIGTERM (a service flushes its spans on the way
// out) and keeps its log lines.
func (s *stack) stop(name string) []string {
	s.mu.Lock()
	p := s.procs[name]
	delete(s.procs, name)
	s.mu.Unlock()
	if p == nil {
		return s.stopped[name]
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(45 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	l := p.out.all()
	s.mu.Lock()
	s.stopped[name] = l
	s.mu.Unlock()
	if dir := os.Getenv("RUNPROOF_LOG_DIR"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, name+".log"), []byte(strings.Join(l, "\n")+"\n"), 0o600)
	}
	if s.t.Failed() {
		s.t.Logf("--- %s (last lines; RUNPROOF_LOG_DIR=dir keeps them all)\n%s", name, strings.Join(l[max(0, len(l)-30):], "\n"))
	}
	return l
}

func (s *stack) stopAll() {
	for _, n := range []string{"poller", "reconciler", "processor", "vomosim", "jaeger"} {
		s.stop(n)
	}
}

// eventually polls cond until it holds or the deadline passes.
func (s *stack) eventually(what string, within time.Duration, cond func() (bool, string)) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("%s: not within %s (last: %s)", what, within, last)
}

func (s *stack) waitHTTP(what, url string) {
	s.t.Helper()
	s.eventually(what+" answers", 60*time.Second, func() (bool, string) {
		resp, err := http.Get(url) //nolint:gosec // loopback URL built by the test
		if err != nil {
			return false, err.Error()
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// post sends an empty POST and requires a 2xx answer.
func (s *stack) post(url string) {
	s.t.Helper()
	resp, err := http.Post(url, "application/json", nil) //nolint:gosec // loopback URL built by the test
	require.NoError(s.t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	require.Less(s.t, resp.StatusCode, 300, "POST %s: %s", url, resp.Status)
}

// metricNames scrapes a running service's /metrics and returns the names
// of the metric families it exposes.
func (s *stack) metricNames(name string) map[string]bool {
	s.t.Helper()
	s.mu.Lock()
	addr := s.admin[name]
	s.mu.Unlock()
	resp, err := http.Get("http://" + addr + "/metrics") //nolint:gosec // loopback URL built by the test
	require.NoError(s.t, err)
	defer resp.Body.Close()
	require.Equal(s.t, http.StatusOK, resp.StatusCode)
	out := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = true
		}
	}
	require.NoError(s.t, sc.Err())
	return out
}

// getJSON decodes a GET of url into v and returns the status code.
func getJSON(url string, v any) (int, error) {
	resp, err := http.Get(url) //nolint:gosec // loopback URL built by the test
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}
