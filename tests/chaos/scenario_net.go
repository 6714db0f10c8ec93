package chaos

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/vomosync/vomosync/tests/faultkit"
)

// The network scenarios put a fault proxy (tests/faultkit) on every link
// between the services and their peers: JetStream, PostgreSQL, the VOMO API
// (the simulator) and the HTTP destination of the customers' first_seen
// action. The harness starts the services on the direct addresses, so the
// first thing the faults do is re-route: customers' API and action URLs are
// pointed at the proxies and the services restarted (SIGTERM, a clean stop)
// with DATABASE_URL and NATS_URL on the proxies. The harness's own pool and
// the checker stay on the direct links, so the observer is never faulted.

// Links, by name.
const (
	linkNATS        = "nats"
	linkPostgres    = "postgres"
	linkAPI         = "api"
	linkDestination = "destination"
)

var allLinks = []string{linkNATS, linkPostgres, linkAPI, linkDestination}

// netRig is one run's proxies.
type netRig struct {
	links map[string]*faultkit.Proxy
}

// rigs holds each run's proxies by scratch directory: Faults opens them,
// Prepare's cleanup (which runs after the stack is closed) closes them.
var (
	rigMu sync.Mutex
	rigs  = map[string]*netRig{}
)

func (r *netRig) pass() {
	for _, p := range r.links {
		p.Pass()
	}
}

func (r *netRig) close() {
	for _, p := range r.links {
		_ = p.Close()
	}
}

func (r *netRig) stats() string {
	names := make([]string, 0, len(r.links))
	for n := range r.links {
		names = append(names, n)
	}
	sort.Strings(names)
	out := ""
	for _, n := range names {
		s := r.links[n].Stats()
		out += fmt.Sprintf("%s: %d connections, %d reset, %d refused, %d B up, %d B down; ", n, s.Accepted, s.Resets, s.Refused, s.UpBytes, s.DownBytes)
	}
	return out
}

// netPrepare registers the cleanup that closes the run's proxies.
func netPrepare(_ context.Context, p *Prep) (func(), error) {
	dir := p.Dir
	return func() {
		rigMu.Lock()
		r := rigs[dir]
		delete(rigs, dir)
		rigMu.Unlock()
		if r != nil {
			r.close()
		}
	}, nil
}

// interpose starts the proxies and moves every service onto them.
func interpose(ctx context.Context, e *Env) (*netRig, error) {
	r := &netRig{links: map[string]*faultkit.Proxy{}}
	rigMu.Lock()
	rigs[e.Opts.Dir] = r
	rigMu.Unlock()
	dbURL, err := url.Parse(e.DB.URL)
	if err != nil {
		return nil, err
	}
	natsURL, err := url.Parse(e.NATS.URL())
	if err != nil {
		return nil, err
	}
	apiURL, err := url.Parse(e.SimURL)
	if err != nil {
		return nil, err
	}
	hookURL, err := url.Parse(e.Hook.URL())
	if err != nil {
		return nil, err
	}
	for name, up := range map[string]string{linkPostgres: dbURL.Host, linkNATS: natsURL.Host, linkAPI: apiURL.Host, linkDestination: hookURL.Host} {
		p, err := faultkit.NewProxy(up)
		if err != nil {
			return nil, err
		}
		r.links[name] = p
	}
	// The API and the destination are per customer: repoint them (the
	// poller and reconciler load the customer for every cycle and run; the
	// processor is restarted below, so its settings cache starts empty).
	// Action rows already enqueued carry their URL: move the pending ones.
	apiOld, apiNew := "http://"+apiURL.Host, "http://"+r.links[linkAPI].Addr()
	hookOld, hookNew := "http://"+hookURL.Host, "http://"+r.links[linkDestination].Addr()
	if _, err := e.Pool.Exec(ctx, `UPDATE vomosync.customers SET api_base_url = replace(api_base_url, $1, $2),
		settings = replace(settings::text, $3, $4)::jsonb`, apiOld, apiNew, hookOld, hookNew); err != nil {
		return nil, fmt.Errorf("re-route customers: %w", err)
	}
	dbProxied := *dbURL
	dbProxied.Host = r.links[linkPostgres].Addr()
	env := []string{"DATABASE_URL=" + dbProxied.String(), "NATS_URL=nats://" + r.links[linkNATS].Addr()}
	for _, name := range []string{"processor", "poller", "reconciler"} {
		e.StopService(name)
		if _, err := e.Stack.Start(name, name, env...); err != nil {
			return nil, err
		}
	}
	if _, err := e.Pool.Exec(ctx, `UPDATE vomosync.outbox SET url = replace(url, $1, $2) WHERE status = 'pending'`, hookOld, hookNew); err != nil {
		return nil, fmt.Errorf("re-route pending actions: %w", err)
	}
	e.Note("services re-routed through %d fault proxies", len(r.links))
	return r, nil
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func pickOne(e *Env, xs []string) string { return xs[e.Intn(len(xs))] }

var directions = map[string]faultkit.Direction{"both": faultkit.Both, "up": faultkit.Upstream, "down": faultkit.Downstream}

func pickDirection(e *Env) (string, faultkit.Direction) {
	n := pickOne(e, []string{"both", "up", "down"})
	return n, directions[n]
}

func init() {
	Register(Scenario{
		Name: "net-partition",
		Description: "partitions of 2.2-3 s (longer than the 2 s ack wait) on one link at a time, per direction: " +
			"services↔JetStream, services↔PostgreSQL, poller/reconciler↔VOMO API, processor↔HTTP destination",
		Short:   true,
		Prepare: netPrepare,
		Faults: func(ctx context.Context, e *Env) error {
			r, err := interpose(ctx, e)
			if err != nil {
				return err
			}
			defer func() { r.pass(); e.Note("%s", r.stats()) }()
			// Every link in turn (JetStream and PostgreSQL first: their
			// partitions outlast the ack wait), then at random.
			turn := 0
			return e.Every(ctx, 200*time.Millisecond, 500*time.Millisecond, func() error {
				link := pickOne(e, allLinks)
				if turn < len(allLinks) {
					link = allLinks[turn]
				}
				turn++
				dn, dir := pickDirection(e)
				d := e.Between(2200*time.Millisecond, 3*time.Second)
				r.links[link].Partition(dir, d)
				e.Count(fmt.Sprintf("partition %s (%s)", link, dn))
				sleepCtx(ctx, d)
				r.links[link].Heal()
				return nil
			})
		},
	})

	Register(Scenario{
		Name: "net-latency-reset",
		Description: "added latency (1-8 ms, jitter up to 5 ms) on every link, per direction, and connection resets (RST) of a share " +
			"of the connections of one link every 1-2 s, sometimes refusing new ones for a moment",
		Short:   true,
		Prepare: netPrepare,
		Faults: func(ctx context.Context, e *Env) error {
			r, err := interpose(ctx, e)
			if err != nil {
				return err
			}
			defer func() { r.pass(); e.Note("%s", r.stats()) }()
			for _, link := range allLinks {
				for _, dir := range []faultkit.Direction{faultkit.Upstream, faultkit.Downstream} {
					r.links[link].SetLatency(dir, e.Between(time.Millisecond, 8*time.Millisecond), e.Between(0, 5*time.Millisecond))
				}
			}
			e.Count("latency on every link")
			return e.Every(ctx, time.Second, 2*time.Second, func() error {
				link := pickOne(e, allLinks)
				share := []float64{0.25, 0.5, 1}[e.Intn(3)]
				n := r.links[link].Reset(share)
				e.Add("connections reset ("+link+")", n)
				if e.Intn(5) == 0 {
					r.links[link].RefuseFor(e.Between(100*time.Millisecond, 400*time.Millisecond))
					e.Count("refusals (" + link + ")")
				}
				return nil
			})
		},
	})
}
