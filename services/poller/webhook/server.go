package webhook

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/vomosync/vomosync/pkg/httpserve"
)

// Settings is the intake's configuration block (off unless WEBHOOK_ADDR is set).
type Settings struct {
	Addr         string        `env:"WEBHOOK_ADDR"`
	MaxBody      int64         `env:"WEBHOOK_MAX_BODY" envDefault:"1048576"`
	ReplayWindow time.Duration `env:"WEBHOOK_REPLAY_WINDOW" envDefault:"24h"`
}

// Validate checks the block.
func (s Settings) Validate() error {
	if s.Addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(s.Addr); err != nil {
		return fmt.Errorf("WEBHOOK_ADDR=%q: want host:port, e.g. :8082", s.Addr)
	}
	if s.MaxBody < 1024 || s.MaxBody > 16<<20 {
		return fmt.Errorf("WEBHOOK_MAX_BODY=%d: want 1024 to 16777216 bytes", s.MaxBody)
	}
	if s.ReplayWindow < time.Minute {
		return fmt.Errorf("WEBHOOK_REPLAY_WINDOW=%s: want at least 1m", s.ReplayWindow)
	}
	return nil
}

// Server serves Handler until its context ends.
type Server struct {
	Addr    string
	Handler *Handler
}

// Run listens on Addr and serves until ctx is cancelled (then returns nil).
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("webhook intake: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on an open listener.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	s.Handler.Routes(mux)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	if err := httpserve.Run(ctx, hs, ln, 10*time.Second); err != nil {
		return fmt.Errorf("webhook intake: %w", err)
	}
	return nil
}
