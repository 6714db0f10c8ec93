package faultkit_test

import (
	"context"
	"net"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/natstest"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/tests/faultkit"
)

func TestProxyRefusesNonLoopbackUpstreams(t *testing.T) {
	t.Parallel()
	for _, up := range []string{"10.0.0.1:5432", "192.168.1.1:80", "example.com:80", "169.254.169.254:80", "[::ffff:10.0.0.1]:80", "nohost"} {
		_, err := faultkit.NewProxy(up)
		require.Error(t, err, up)
	}
	for _, up := range []string{"10.0.0.1:5432", "example.com:80"} {
		_, err := faultkit.NewProxy(up)
		require.ErrorIs(t, err, faultkit.ErrNotLoopback, up)
	}
	for _, up := range []string{"127.0.0.1:1", "localhost:1", "[::1]:1", "127.0.0.2:1"} {
		p, err := faultkit.NewProxy(up)
		require.NoError(t, err, up)
		require.NoError(t, p.Close())
	}
}

// pgThrough returns a connection to the test server's postgres database
// through p (read-only queries: nothing to clean up).
func pgThrough(t *testing.T, ctx context.Context, p *faultkit.Proxy) (*pgx.Conn, error) {
	t.Helper()
	u, err := url.Parse(pgtest.AdminURL())
	require.NoError(t, err)
	u.Host = p.Addr()
	q := u.Query()
	q.Set("connect_timeout", "5")
	u.RawQuery = q.Encode()
	return pgx.Connect(ctx, u.String())
}

func newProxy(t *testing.T, upstream string) *faultkit.Proxy {
	t.Helper()
	p, err := faultkit.NewProxy(upstream)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func pgUpstream(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(pgtest.AdminURL())
	require.NoError(t, err)
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5432")
	}
	return host
}

func TestProxyPostgres(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := newProxy(t, pgUpstream(t))
	conn, err := pgThrough(t, ctx, p)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	one := func(c *pgx.Conn) error {
		var n int
		return c.QueryRow(ctx, `SELECT 1`).Scan(&n)
	}
	require.NoError(t, one(conn), "pass")

	// Latency: a round trip cannot be faster than the added delay.
	p.SetLatency(faultkit.Downstream, 150*time.Millisecond, 50*time.Millisecond)
	start := time.Now()
	require.NoError(t, one(conn))
	require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
	p.Pass()

	// Partition: a query sent into it is answered only once it ends.
	t0 := time.Now()
	p.Partition(faultkit.Both, 800*time.Millisecond)
	require.NoError(t, one(conn), "bytes are held, not lost")
	require.GreaterOrEqual(t, time.Since(t0), 800*time.Millisecond)

	// Healing early releases held bytes at once.
	p.Partition(faultkit.Upstream, 0)
	done := make(chan error, 1)
	go func() { done <- one(conn) }()
	require.Never(t, func() bool { return len(done) > 0 }, 300*time.Millisecond, 20*time.Millisecond, "held while partitioned")
	p.Heal()
	require.NoError(t, <-done)

	// Reset: the connection dies with an error; a new one works.
	require.Equal(t, 1, p.Reset(1))
	require.Error(t, one(conn))
	conn2, err := pgThrough(t, ctx, p)
	require.NoError(t, err)
	defer conn2.Close(context.Background())
	require.NoError(t, one(conn2))

	// Refusal: new connections are reset on arrival.
	p.RefuseFor(time.Minute)
	_, err = pgThrough(t, ctx, p)
	require.Error(t, err)
	p.Heal()
	conn3, err := pgThrough(t, ctx, p)
	require.NoError(t, err)
	defer conn3.Close(context.Background())
	require.NoError(t, one(conn3))

	st := p.Stats()
	require.EqualValues(t, 1, st.Resets)
	require.EqualValues(t, 1, st.Refused)
	// A reset link leaves the table once its goroutines have seen it.
	require.Eventually(t, func() bool { return p.Stats().Active == 2 }, 5*time.Second, 10*time.Millisecond)
	require.Positive(t, st.UpBytes)
	require.Positive(t, st.DownBytes)
}

// TestProxyResetIsRST checks the peer sees a reset, not an orderly close.
func TestProxyResetIsRST(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { buf := make([]byte, 1024); _, _ = c.Read(buf); _ = c.Close() }()
		}
	}()
	p := newProxy(t, ln.Addr().String())
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.Eventually(t, func() bool { return p.Stats().Active == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, p.Reset(1))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err)
	require.ErrorIs(t, err, syscall.ECONNRESET, "an RST, not a FIN (io.EOF)")
}

func TestProxyNATS(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srvURL, _ := natstest.Start(t)
	u, err := url.Parse(srvURL)
	require.NoError(t, err)
	p := newProxy(t, u.Host)
	nc, err := nats.Connect("nats://"+p.Addr(), nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	require.NoError(t, err)
	publish := func(wait time.Duration) error {
		pctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		_, err := js.Publish(pctx, "t.x", []byte("x"))
		return err
	}
	require.NoError(t, publish(5*time.Second), "pass")

	// A partition longer than the ack wait: the publish is not acknowledged.
	p.Partition(faultkit.Downstream, 0)
	require.ErrorIs(t, publish(500*time.Millisecond), context.DeadlineExceeded)
	p.Heal()
	require.NoError(t, publish(5*time.Second))

	// Reset: the client reconnects through the proxy and goes on.
	require.Equal(t, 1, p.Reset(1))
	require.Eventually(t, func() bool { return publish(time.Second) == nil }, 20*time.Second, 50*time.Millisecond)
	require.GreaterOrEqual(t, p.Stats().Accepted, int64(2))

	info, err := js.Stream(ctx, "T")
	require.NoError(t, err)
	require.GreaterOrEqual(t, info.CachedInfo().State.Msgs, uint64(3))
}
