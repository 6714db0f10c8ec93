package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NATS is a JetStream server in its own process (cmd/natsd), on a fixed
// port and file store, so a kill -9 is real and a restart finds the same
// store at the same address.
type NATS struct {
	bin      string
	Port     int
	StoreDir string
	logs     *logSink

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	kills  int
}

// StartNATS starts natsd with its store in storeDir on a free port.
func StartNATS(ctx context.Context, natsdBin, storeDir, logPath string) (*NATS, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	logs, err := newLogSink(logPath)
	if err != nil {
		return nil, err
	}
	n := &NATS{bin: natsdBin, Port: port, StoreDir: storeDir, logs: logs}
	if err := n.Start(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

// URL is the client URL.
func (n *NATS) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Port) }

// Start runs the server (again) and waits until it says it is ready. A port
// still held by the previous process is retried until ctx ends.
func (n *NATS) Start(ctx context.Context) error {
	for {
		err := n.startOnce()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("start natsd: %w (last: %w)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (n *NATS) startOnce() error {
	cmd := exec.Command(n.bin, "-port", strconv.Itoa(n.Port), "-store", n.StoreDir) // #nosec G204 -- binary built by the harness
	cmd.Stderr = n.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			line := sc.Text()
			_, _ = n.logs.Write([]byte(line + "\n"))
			if !ok && strings.HasPrefix(line, "ready ") {
				ok = true
				ready <- nil
			}
		}
		if !ok {
			ready <- errors.New("natsd exited before it was ready (see its log)")
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case err := <-ready:
		if err != nil {
			<-exited
			return err
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return errors.New("natsd not ready after 30s")
	}
	n.mu.Lock()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()
	return nil
}

// Kill sends SIGKILL and waits for the process to be gone.
func (n *NATS) Kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	n.mu.Lock()
	n.kills++
	n.cmd = nil
	n.mu.Unlock()
}

// Restart kills the server with SIGKILL and starts it again on the same
// port and store.
func (n *NATS) Restart(ctx context.Context) error {
	n.Kill()
	return n.Start(ctx)
}

// Stop shuts the server down cleanly.
func (n *NATS) Stop() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Close stops the server and closes its log.
func (n *NATS) Close() {
	n.Stop()
	n.logs.close()
}

// Tail returns the last log lines.
func (n *NATS) Tail(k int) []string { return n.logs.Tail(k) }

// ensure the store dir exists with private permissions.
func mkdirPrivate(dir string) error { return os.MkdirAll(dir, 0o700) }
