package httpserve_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/httpserve"
)

// TestRunFinishesInFlightRequests: cancelling ctx stops new connections but
// lets a request in flight complete, and Run returns nil.
func TestRunFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	started := make(chan struct{})
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		time.Sleep(200 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- httpserve.Run(ctx, srv, ln, 5*time.Second) }()
	got := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String()) //nolint:gosec // test listener
		if err != nil {
			got <- 0
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	<-started
	cancel()
	require.Equal(t, http.StatusNoContent, <-got)
	require.NoError(t, <-done)

	// A listener that fails is the serve error.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln2.Close()
	require.Error(t, httpserve.Run(context.Background(), &http.Server{ReadHeaderTimeout: time.Second}, ln2, time.Second))
}
