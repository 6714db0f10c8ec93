package outbox_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/metrics"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/services/processor/destination"
	"github.com/vomosync/vomosync/services/processor/internal/outbox"
)

func TestSenderDeliversRetriesAndDeadLetters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	var mu sync.Mutex
	calls := map[string]int{}
	sigs := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(destination.HeaderIdempotencyKey)
		mu.Lock()
		calls[key]++
		n := calls[key]
		sigs[key] = r.Header.Get(destination.HeaderSignature)
		mu.Unlock()
		switch {
		case strings.HasPrefix(key, "flaky") && n <= 2:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case strings.HasPrefix(key, "refused"):
			http.Error(w, "no such list", http.StatusUnprocessableEntity)
		case strings.HasPrefix(key, "broken"):
			http.Error(w, "boom", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	for _, row := range []struct {
		key, url string
		private  bool
	}{
		{"ok:acme:users:1", srv.URL, true}, {"flaky:acme:users:2", srv.URL, true}, {"refused:acme:users:3", srv.URL, true},
		{"broken:acme:users:4", srv.URL, true}, {"ssrf:acme:users:5", srv.URL, false},
	} {
		_, err := db.Pool.Exec(ctx, `INSERT INTO vomosync.outbox (dedup_key, customer_id, resource, record_id, external_id,
			action, url, signing_key_ref, allow_private, payload) VALUES ($1, 'acme', 'users', '1', 'vomo-1', 'welcome', $2, 'k1', $3, '{"x":1}')`,
			row.key, row.url, row.private)
		require.NoError(t, err)
	}
	m := metrics.NewProcessor(prometheus.NewRegistry())
	s := &outbox.Sender{DB: db.Pool, Secrets: destination.StaticSecrets{Keys: map[string]string{"k1": "secret"}}, Metrics: m,
		Log: zerolog.Nop(), MaxAttempts: 3, Concurrency: 4, PollInterval: 20 * time.Millisecond, RetryBase: 10 * time.Millisecond, Timeout: time.Second}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	status := func(key string) (st string, attempts int) {
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT status, attempts FROM vomosync.outbox WHERE dedup_key = $1`, key).Scan(&st, &attempts))
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pending int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.outbox WHERE status = 'pending'`).Scan(&pending))
		if pending == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "outbox never settled")
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	require.NoError(t, <-done)

	st, n := status("ok:acme:users:1")
	require.Equal(t, "delivered", st)
	require.Equal(t, 1, n)
	st, n = status("flaky:acme:users:2")
	require.Equal(t, "delivered", st)
	require.Equal(t, 3, n, "retried after two 503s")
	st, n = status("refused:acme:users:3")
	require.Equal(t, "dead_lettered", st, "a 4xx is not retried")
	require.Equal(t, 1, n)
	st, n = status("broken:acme:users:4")
	require.Equal(t, "dead_lettered", st, "dead-lettered after the attempt limit")
	require.Equal(t, 3, n)
	st, _ = status("ssrf:acme:users:5")
	require.Equal(t, "dead_lettered", st, "loopback refused without allow_private")
	var lastErr string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT last_error FROM vomosync.outbox WHERE dedup_key = 'refused:acme:users:3'`).Scan(&lastErr))
	require.Contains(t, lastErr, "no such list")
	mu.Lock()
	defer mu.Unlock()
	require.Zero(t, calls["ssrf:acme:users:5"])
	require.True(t, strings.HasPrefix(sigs["ok:acme:users:1"], "t="), "signed with the customer's key")
}
