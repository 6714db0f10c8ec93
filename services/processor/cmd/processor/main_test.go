package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/natstest"
	"github.com/vomosync/vomosync/pkg/pgtest"
)

// TestMain lets the tests run this binary's main as a child process.
func TestMain(m *testing.M) {
	if os.Getenv("PROCESSOR_TEST_RUN_MAIN") != "" {
		main()
		return
	}
	os.Exit(m.Run())
}

func child(t *testing.T, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$"}, args...)...)
	cmd.Env = append(append(os.Environ(), "PROCESSOR_TEST_RUN_MAIN=1"), env...)
	return cmd
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// The binary starts, becomes ready (database and NATS), answers its own
// healthcheck, and on SIGTERM drains and exits 0.
func TestServeAndStopOnSIGTERM(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	natsURL, _ := natstest.Start(t)
	admin := freeAddr(t)
	env := []string{"DATABASE_URL=" + db.URL, "NATS_URL=" + natsURL, "ADMIN_ADDR=" + admin, "PROCESSOR_DRAIN_TIMEOUT=5s"}
	cmd := child(t, env)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill() }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		require.True(t, time.Now().Before(deadline), "never ready: %s", out.String())
		time.Sleep(50 * time.Millisecond)
	}
	hc := child(t, []string{"ADMIN_ADDR=" + admin}, "-healthcheck")
	require.NoError(t, hc.Run(), "healthcheck of a running processor")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("did not stop on SIGTERM: %s", out.String())
	}
	require.Contains(t, out.String(), `"processor stopped"`)

	hc = child(t, []string{"ADMIN_ADDR=" + admin}, "-healthcheck")
	require.Error(t, hc.Run(), "healthcheck of a stopped processor")
}

// On a database that is not migrated the binary refuses to start and says
// which command to run.
func TestRefusesOldSchema(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	natsURL, _ := natstest.Start(t)
	cmd := child(t, []string{"DATABASE_URL=" + db.URL, "NATS_URL=" + natsURL, "ADMIN_ADDR=" + freeAddr(t)})
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "syncctl migrate")
}
