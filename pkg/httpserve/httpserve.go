// Package httpserve runs an http.Server as a long-running component: it
// serves until ctx ends, then shuts down gracefully within a grace period.
package httpserve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Run serves srv on ln (or on srv.Addr when ln is nil) until ctx ends, then
// gives in-flight requests up to grace to finish. It returns nil after a
// clean shutdown, the serve error otherwise; a shutdown that runs out of
// grace is not an error (the process is stopping anyway).
func Run(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() {
		if ln != nil {
			errc <- srv.Serve(ln)
		} else {
			errc <- srv.ListenAndServe()
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
