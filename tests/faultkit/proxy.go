package faultkit

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Direction selects which way bytes are affected.
type Direction int

// Directions. Upstream is client to server (the service's requests),
// Downstream server to client (the answers and acks).
const (
	Upstream Direction = 1 << iota
	Downstream
	Both = Upstream | Downstream
)

// ErrNotLoopback: the proxy only forwards to loopback addresses, so a
// misconfigured chaos run cannot disturb anything beyond this machine.
var ErrNotLoopback = errors.New("faultkit: upstream is not a loopback address")

// ErrClosed is returned by a closed proxy.
var ErrClosed = errors.New("faultkit: proxy closed")

// Proxy is a TCP proxy on 127.0.0.1 that forwards to one loopback upstream
// and injects faults into every connection through it: added latency with
// jitter, partitions that hold bytes (as TCP does while a network is cut:
// nothing is lost, everything arrives late) and resets (RST, not FIN).
// Settings apply at once to existing and new connections. Safe for
// concurrent use.
type Proxy struct {
	upstream string
	ln       net.Listener

	mu      sync.Mutex
	links   map[*link]struct{}
	dirs    [2]dirState
	refuse  time.Time // new connections are reset until then
	changed chan struct{}
	rng     *rand.Rand
	closed  bool

	wg sync.WaitGroup

	accepted, resets, refused atomic.Int64
	bytes                     [2]atomic.Int64
}

type dirState struct {
	latency, jitter time.Duration
	heldUntil       time.Time // partitioned until then
}

// Stats counts what went through a proxy.
type Stats struct {
	Accepted  int64 // connections accepted
	Resets    int64 // connections reset by Reset
	Refused   int64 // connections reset on arrival by RefuseFor
	Active    int   // connections open now
	UpBytes   int64 // bytes forwarded client to server
	DownBytes int64 // bytes forwarded server to client
}

// NewProxy listens on a random 127.0.0.1 port and forwards to upstream
// (host:port; the host must be a loopback IP or "localhost"). Errors wrap
// ErrNotLoopback for any other host.
func NewProxy(upstream string) (*Proxy, error) {
	host, port, err := net.SplitHostPort(upstream)
	if err != nil {
		return nil, fmt.Errorf("faultkit: upstream %q: %w", upstream, err)
	}
	if strings.EqualFold(host, "localhost") {
		host = "127.0.0.1" // never trust a resolver with this
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%w: %q", ErrNotLoopback, upstream)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultkit: listen: %w", err)
	}
	p := &Proxy{upstream: net.JoinHostPort(ip.String(), port), ln: ln, links: map[*link]struct{}{},
		changed: make(chan struct{}), rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listen address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port is the proxy's listen port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Upstream is where the proxy forwards to.
func (p *Proxy) Upstream() string { return p.upstream }

// SetLatency delays every chunk of bytes in dir by latency plus a uniform
// random jitter in [0, jitter). Order within a connection is kept.
func (p *Proxy) SetLatency(dir Direction, latency, jitter time.Duration) {
	p.update(dir, func(d *dirState) { d.latency, d.jitter = latency, jitter })
}

// Partition holds every byte in dir, on existing and new connections, for
// d (until Heal when d <= 0 means "until healed"). New connections are
// accepted but not connected upstream while the upstream direction is held.
func (p *Proxy) Partition(dir Direction, d time.Duration) {
	until := time.Now().Add(d)
	if d <= 0 {
		until = time.Now().Add(100 * 365 * 24 * time.Hour)
	}
	p.update(dir, func(s *dirState) { s.heldUntil = until })
}

// Heal ends partitions and refusals at once; latency is kept.
func (p *Proxy) Heal() {
	p.update(Both, func(s *dirState) { s.heldUntil = time.Time{} })
	p.mu.Lock()
	p.refuse = time.Time{}
	p.mu.Unlock()
}

// Pass removes every fault: no latency, no partition, no refusal.
func (p *Proxy) Pass() {
	p.update(Both, func(s *dirState) { *s = dirState{} })
	p.mu.Lock()
	p.refuse = time.Time{}
	p.mu.Unlock()
}

// Reset closes each open connection with probability share (1: all) with
// an RST on both sides, and returns how many it reset.
func (p *Proxy) Reset(share float64) int {
	p.mu.Lock()
	var victims []*link
	for l := range p.links {
		if share >= 1 || p.rng.Float64() < share {
			victims = append(victims, l)
		}
	}
	p.mu.Unlock()
	for _, l := range victims {
		l.reset()
	}
	p.resets.Add(int64(len(victims)))
	return len(victims)
}

// RefuseFor resets every new connection on arrival for d, as a crashed peer
// whose port answers with RST would.
func (p *Proxy) RefuseFor(d time.Duration) {
	p.mu.Lock()
	p.refuse = time.Now().Add(d)
	p.mu.Unlock()
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.links)
	p.mu.Unlock()
	return Stats{Accepted: p.accepted.Load(), Resets: p.resets.Load(), Refused: p.refused.Load(), Active: active,
		UpBytes: p.bytes[0].Load(), DownBytes: p.bytes[1].Load()}
}

// Close stops accepting, resets every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.changed)
	p.mu.Unlock()
	err := p.ln.Close()
	p.Reset(1)
	p.wg.Wait()
	return err
}

func (p *Proxy) update(dir Direction, fn func(*dirState)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	for i := range 2 {
		if dir&(1<<i) != 0 {
			fn(&p.dirs[i])
		}
	}
	// Wake every waiting pump so it re-reads the settings.
	close(p.changed)
	p.changed = make(chan struct{})
}

// gate returns how long bytes of direction i must still wait before being
// written, the channel closed on the next settings change, and whether the
// proxy is closed.
func (p *Proxy) gate(i int, due time.Time) (time.Duration, <-chan struct{}, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, nil, true
	}
	now := time.Now()
	wait := due.Sub(now)
	if held := p.dirs[i].heldUntil.Sub(now); held > wait {
		wait = held
	}
	return wait, p.changed, false
}

// delay draws the latency of one chunk in direction i.
func (p *Proxy) delay(i int) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.dirs[i].latency
	if j := p.dirs[i].jitter; j > 0 {
		d += time.Duration(p.rng.Int64N(int64(j)))
	}
	return d
}

// waitOpen blocks until direction i is not held and due has passed; false
// when the link or proxy closed first.
func (p *Proxy) waitOpen(i int, due time.Time, done <-chan struct{}) bool {
	for {
		wait, changed, closed := p.gate(i, due)
		if closed {
			return false
		}
		if wait <= 0 {
			return true
		}
		t := time.NewTimer(wait)
		select {
		case <-done:
			t.Stop()
			return false
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		p.mu.Lock()
		refuse := time.Now().Before(p.refuse)
		p.mu.Unlock()
		if refuse {
			p.refused.Add(1)
			rst(c)
			continue
		}
		l := &link{p: p, client: c.(*net.TCPConn), done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			rst(c)
			return
		}
		p.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go l.run()
	}
}

// link is one proxied connection.
type link struct {
	p      *Proxy
	client *net.TCPConn
	mu     sync.Mutex
	server *net.TCPConn
	done   chan struct{}
	once   sync.Once
}

func (l *link) run() {
	defer l.p.wg.Done()
	defer func() {
		l.p.mu.Lock()
		delete(l.p.links, l)
		l.p.mu.Unlock()
	}()
	// A partition cuts the connection attempt too: do not reach the server
	// while the upstream direction is held.
	if !l.p.waitOpen(0, time.Time{}, l.done) {
		l.reset()
		return
	}
	sc, err := net.DialTimeout("tcp", l.p.upstream, 5*time.Second)
	if err != nil {
		l.reset() // the client sees what it would see from a dead server
		return
	}
	l.mu.Lock()
	l.server = sc.(*net.TCPConn)
	l.mu.Unlock()
	select {
	case <-l.done: // reset while dialling
		rst(sc)
		return
	default:
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pump(0, l.client, l.server) }()
	go func() { defer wg.Done(); l.pump(1, l.server, l.client) }()
	wg.Wait()
	l.closeBoth()
}

type chunk struct {
	b   []byte
	due time.Time
}

// pump copies src to dst through the direction's faults. A reader
// goroutine stamps each chunk when it arrives, so latency overlaps with
// reading (a pipe, not a stop-and-wait).
func (l *link) pump(i int, src, dst *net.TCPConn) {
	ch := make(chan chunk, 64)
	go func() {
		defer close(ch)
		var last time.Time
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				due := time.Now().Add(l.p.delay(i))
				if due.Before(last) {
					due = last // jitter never reorders a stream
				}
				last = due
				select {
				case ch <- chunk{b: buf[:n], due: due}:
				case <-l.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		if !l.p.waitOpen(i, c.due, l.done) {
			l.reset()
			return
		}
		if _, err := dst.Write(c.b); err != nil {
			l.reset()
			return
		}
		l.p.bytes[i].Add(int64(len(c.b)))
	}
	// src ended (FIN): pass the half-close on, unless the link was reset.
	select {
	case <-l.done:
	default:
		_ = dst.CloseWrite()
	}
}

// reset closes both sides with RST.
func (l *link) reset() {
	l.once.Do(func() {
		close(l.done)
		rst(l.client)
		l.mu.Lock()
		if l.server != nil {
			rst(l.server)
		}
		l.mu.Unlock()
	})
}

func (l *link) closeBoth() {
	l.once.Do(func() {
		close(l.done)
		_ = l.client.Close()
		l.mu.Lock()
		if l.server != nil {
			_ = l.server.Close()
		}
		l.mu.Unlock()
	})
}

// rst closes c so that the peer gets an RST instead of a FIN.
func rst(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
