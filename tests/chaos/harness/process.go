package harness

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Service is one supervised service process. When it dies without having
// been asked to stop (a kill -9 by the scenario, or a fault point killing
// itself), the supervisor starts it again after RestartDelay, like a
// container orchestrator would.
type Service struct {
	Name   string
	binary string
	env    []string
	logs   *logSink

	// RestartDelay is the pause before a dead process is started again.
	RestartDelay time.Duration

	mu        sync.Mutex
	cmd       *exec.Cmd
	adminAddr string
	exited    chan struct{} // closed when the current process exited
	stopping  bool
	deaths    int // exits that were not requested by Stop
	starts    int
	done      chan struct{} // closed when the supervisor loop ends
	startErr  error
	startedAt time.Time
	quick     int // consecutive self-exits within two seconds of a start
}

// crashLooping: ten exits in a row, each within two seconds of its start.
// Deaths by a signal do not count: a kill -9 from a scenario or from the
// service's own fault points (VOMOSYNC_FAULTS) is planned, while a crash
// loop (a bad configuration, a schema it refuses) is the process exiting
// on its own.
func (s *Service) crashLooping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.quick >= 10
}

// logSink appends every line of a service (across restarts) to one file and
// keeps the last lines in memory for failure reports.
type logSink struct {
	mu   sync.Mutex
	f    *os.File
	tail []string
	rem  string
}

func newLogSink(path string) (*logSink, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600) // #nosec G304 -- path built by the harness under its work dir
	if err != nil {
		return nil, err
	}
	return &logSink{f: f}, nil
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.f.Write(p)
	lines := strings.Split(l.rem+string(p), "\n")
	l.rem = lines[len(lines)-1]
	l.tail = append(l.tail, lines[:len(lines)-1]...)
	if len(l.tail) > 400 {
		l.tail = append([]string(nil), l.tail[len(l.tail)-200:]...)
	}
	return len(p), nil
}

// Tail returns the last n lines.
func (l *logSink) Tail(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.tail
	if len(t) > n {
		t = t[len(t)-n:]
	}
	return append([]string(nil), t...)
}

func (l *logSink) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.f.Close()
}

var _ io.Writer = (*logSink)(nil)

// FreeAddr returns a free loopback TCP address.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (s *Service) startOnce() error {
	addr, err := FreeAddr()
	if err != nil {
		return err
	}
	cmd := exec.Command(s.binary) // #nosec G204 -- binaries built by the harness
	cmd.Env = append(append([]string(nil), s.env...), "ADMIN_ADDR="+addr)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	// Own process group: a SIGINT to the chaos command does not reach the
	// services before the harness stops them in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.adminAddr, s.exited = cmd, addr, exited
	s.starts++
	s.startedAt = time.Now()
	s.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	return nil
}

func (s *Service) supervise() {
	defer close(s.done)
	for {
		s.mu.Lock()
		exited := s.exited
		s.mu.Unlock()
		<-exited
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			return
		}
		s.deaths++
		// Wait has returned (exited is closed), so ProcessState is set.
		ws, _ := s.cmd.ProcessState.Sys().(syscall.WaitStatus)
		switch {
		case ws.Signaled():
		case time.Since(s.startedAt) < 2*time.Second:
			s.quick++
		default:
			s.quick = 0
		}
		s.mu.Unlock()
		time.Sleep(s.RestartDelay)
		for {
			s.mu.Lock()
			stopping := s.stopping
			s.mu.Unlock()
			if stopping {
				return
			}
			err := s.startOnce()
			if err == nil {
				break
			}
			s.mu.Lock()
			s.startErr = err
			s.mu.Unlock()
			time.Sleep(time.Second)
		}
	}
}

// Kill sends SIGKILL to the running process (no cleanup at all) and waits
// until it is gone; the supervisor then starts a new one.
func (s *Service) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Stop ends the service for good: SIGTERM, then SIGKILL after grace.
func (s *Service) Stop(grace time.Duration) {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		<-s.done
		return
	}
	s.stopping = true
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(grace):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-exited
		}
	}
	<-s.done
	s.logs.close()
}

// AdminAddr is the admin (metrics, health) address of the current process.
func (s *Service) AdminAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adminAddr
}

// Deaths counts exits that were not requested by Stop (kills included).
func (s *Service) Deaths() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deaths
}

// Starts counts process starts.
func (s *Service) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}

// Running reports whether a process is currently alive.
func (s *Service) Running() bool {
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Tail returns the last n log lines (across restarts).
func (s *Service) Tail(n int) []string { return s.logs.Tail(n) }
