package destination_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/services/processor/destination"
)

func TestValidateURLRefusesInternalTargets(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"https://127.0.0.1/x", "https://127.1.2.3/x", "https://[::1]/x", // loopback
		"https://10.0.0.1/x", "https://172.16.5.4/x", "https://192.168.1.1/x", "https://100.64.0.1/x", // private, CGNAT
		"https://169.254.169.254/latest/meta-data/", "https://169.254.169.254./x", "https://169.254.1.1/x", // link-local, metadata
		"https://[fc00::1]/x", "https://[fd12:3456::1]/x", // IPv6 unique local (fc00::/7)
		"https://[fe80::1]/x", "https://[fe80::1%25eth0]/x", // IPv6 link-local
		"https://[::ffff:127.0.0.1]/x", "https://[::ffff:10.0.0.1]/x", "https://[::ffff:169.254.169.254]/x", // IPv4-mapped
		"https://[64:ff9b::a00:1]/x", // NAT64 of 10.0.0.1
		"https://0.0.0.0/x", "https://[::]/x", "https://224.0.0.1/x",
		"https://2130706433/x", "https://0x7f.0.0.1/x", "https://0177.0.0.1/x", "https://0x7f000001/x", // inet_aton spellings
		"https://localhost/x", "https://api.localhost/x", "https://metadata.google.internal/x",
		"https://kubernetes.default.svc/x", "https://intranet/x",
		"http://example.org/hook", "ftp://example.org/x", "https://user:pw@example.org/x",
	} {
		_, err := destination.ValidateURL(bad, false)
		require.ErrorIs(t, err, destination.ErrForbiddenTarget, bad)
	}
	for _, good := range []string{"https://example.org/hook", "https://8.8.8.8/x", "https://[2606:4700::1111]/x", "https://hooks.0x7f.example.org/x"} {
		_, err := destination.ValidateURL(good, false)
		require.NoError(t, err, good)
	}
}

// The dialer's Control refuses the address it is about to connect to, so
// literal addresses, whatever their spelling, never get a connection.
func TestDialerRefusesNonPublicAddresses(t *testing.T) {
	t.Parallel()
	client := destination.NewClient(2*time.Second, false)
	for _, host := range []string{
		"127.0.0.1", "[::1]", "10.0.0.1", "172.16.0.1", "192.168.0.1", "100.64.0.1", "0.0.0.0",
		"169.254.169.254", "[fc00::1]", "[fd00::1]", "[fe80::1]",
		"[::ffff:127.0.0.1]", "[::ffff:10.0.0.1]", "[::ffff:169.254.169.254]",
	} {
		_, err := client.Get("http://" + host + ":9/latest/meta-data/")
		require.Error(t, err, host)
		require.True(t, errors.Is(err, destination.ErrForbiddenTarget), "%s: %v", host, err)
	}
}

// DNS rebinding: a name that resolved to a public address when it was
// checked resolves to loopback when the request is made. The connect-time
// check sees the loopback address and refuses; nothing reaches the server.
func TestDNSRebindingIsRefusedAtConnect(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	dns := startDNS(t, "93.184.216.34", "127.0.0.1") // first answer public, then loopback
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", dns)
	}}

	_, err = destination.ValidateURL("https://hooks.rebind.example/x", false)
	require.NoError(t, err, "a public-looking name passes the configuration check")
	addrs, err := resolver.LookupHost(context.Background(), "hooks.rebind.example")
	require.NoError(t, err)
	require.Equal(t, []string{"93.184.216.34"}, addrs, "and resolves to a public address at that time")

	target := "http://hooks.rebind.example:" + port + "/hook"
	_, err = destination.NewClientResolving(2*time.Second, false, resolver).Get(target)
	require.Error(t, err)
	require.True(t, errors.Is(err, destination.ErrForbiddenTarget), err)
	require.Zero(t, hits.Load(), "nothing reached the loopback server")

	// The same name with private targets allowed does reach it: the
	// refusal above was the address check, not a broken lookup.
	resp, err := destination.NewClientResolving(2*time.Second, true, resolver).Get(target)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, int32(1), hits.Load())
}

// Redirects are never followed: not by the client, not by the HTTP
// destination (a 3xx answer is a rejection with the response), so a
// redirect cannot lead a request to an internal address.
func TestRedirectsAreNotFollowed(t *testing.T) {
	t.Parallel()
	var internalHits atomic.Int32
	internal := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { internalHits.Add(1) }))
	defer internal.Close()
	for _, to := range []string{internal.URL + "/admin", "http://169.254.169.254/latest/meta-data/"} {
		redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, to, http.StatusTemporaryRedirect)
		}))
		resp, err := destination.NewClient(2*time.Second, true).Post(redirector.URL, "application/json", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusTemporaryRedirect, resp.StatusCode, to)

		h, err := destination.NewHTTP(redirector.URL, nil, true, 2*time.Second)
		require.NoError(t, err)
		res, err := h.Apply(context.Background(), nil, []destination.Op{up("a", "users", "1", 0, "x")})
		require.NoError(t, err)
		require.ErrorIs(t, res[0], destination.ErrRejected, to)
		require.ErrorContains(t, res[0], "307")
		redirector.Close()
	}
	require.Zero(t, internalHits.Load())
}

// startDNS answers A queries for any name with the given addresses in
// turn (the last one repeated) and AAAA queries with nothing. It returns its
// UDP address.
func startDNS(t *testing.T, answers ...string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	var mu sync.Mutex
	next := 0
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := buf[:n]
			end := 12
			for end < len(q) && q[end] != 0 {
				end += int(q[end]) + 1
			}
			end += 5 // root label, type, class
			if len(q) < 12 || end > len(q) {
				continue
			}
			qtype := binary.BigEndian.Uint16(q[end-4:])
			resp := append([]byte{}, q[:end]...)
			resp[2], resp[3] = 0x81, 0x80 // response, recursion desired and available, no error
			binary.BigEndian.PutUint16(resp[6:], 0)
			binary.BigEndian.PutUint16(resp[8:], 0)
			binary.BigEndian.PutUint16(resp[10:], 0)
			if qtype == 1 { // A
				mu.Lock()
				ip := netip.MustParseAddr(answers[min(next, len(answers)-1)]).As4()
				next++
				mu.Unlock()
				binary.BigEndian.PutUint16(resp[6:], 1)
				resp = append(resp, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4)
				resp = append(resp, ip[:]...)
			}
			_, _ = pc.WriteTo(resp, from)
		}
	}()
	return pc.LocalAddr().String()
}
