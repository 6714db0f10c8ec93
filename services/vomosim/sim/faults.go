package sim

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Duration is a time.Duration that reads and writes as "1m30s" in JSON and YAML.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts "1m30s" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return d.set(v)
}

// UnmarshalText accepts "1m30s" (YAML scalars arrive this way).
func (d *Duration) UnmarshalText(b []byte) error { return d.set(string(b)) }

func (d *Duration) set(v any) error {
	switch x := v.(type) {
	case float64:
		*d = Duration(x * float64(time.Second))
	case string:
		p, err := time.ParseDuration(x)
		if err != nil {
			return fmt.Errorf("duration %q: %w", x, err)
		}
		*d = Duration(p)
	default:
		return fmt.Errorf("duration: unexpected %T", v)
	}
	return nil
}

// Faults is the behaviour profile of one customer. The zero value is a
// well-behaved API with the documented defaults and no rate limit.
//
// Record timestamps follow the simulator clock (Options.Now plus
// ClockSkew); rate limits, storms and delays follow wall time.
type Faults struct {
	// ClockSkew shifts the customer's clock (Date header, new updated_at values).
	ClockSkew Duration `json:"clock_skew" yaml:"clock_skew"`
	// Behaviour applies to every endpoint without an override.
	Behaviour `yaml:",inline"`
	// Endpoints override Behaviour wholesale for one endpoint, keyed by
	// its template ("users", "users/{id}", "projects/date/{id}",
	// "forms/{id}/completions") or by resource name for all its endpoints.
	Endpoints map[string]Behaviour `json:"endpoints,omitempty" yaml:"endpoints"`
}

// Behaviour is the adversarial behaviour of one endpoint (or all).
type Behaviour struct {
	// Order of list results: "id" (default) or "updated_at".
	Order string `json:"order,omitempty" yaml:"order"`
	// Wire selects the JSON variants sent.
	Wire WireFormat `json:"wire" yaml:"wire"`
	// SharedUpdatedAt > 1 stamps writes in groups of that size with one
	// updated_at (the first write's), so any page boundary inside a group
	// falls between records of the same second. Groups of 16 or more tie
	// every boundary they span.
	SharedUpdatedAt int `json:"shared_updated_at,omitempty" yaml:"shared_updated_at"`
	// MidWalk mutates the list between page requests.
	MidWalk *MidWalk `json:"mid_walk,omitempty" yaml:"mid_walk"`
	// PageFaults fail chosen requests.
	PageFaults []PageFault `json:"page_faults,omitempty" yaml:"page_faults"`
	// Transient404 hides records created less than this long ago from
	// detail reads (eventual consistency).
	Transient404 Duration `json:"transient_404,omitempty" yaml:"transient_404"`
	// Forbidden answers 403 (token lacks scope).
	Forbidden bool `json:"forbidden,omitempty" yaml:"forbidden"`
	// RateLimit enables a token bucket per token (and per endpoint when set
	// in an endpoint override).
	RateLimit *RateLimit `json:"rate_limit,omitempty" yaml:"rate_limit"`
	// Storm answers 429 to everything for a while after the faults are set.
	Storm *Storm `json:"storm,omitempty" yaml:"storm"`
}

// MidWalk mutates the listed records between two page requests of a walk:
// before serving page N >= 2 (every EveryPages pages), Updates records of
// earlier pages are updated (they move when ordered by updated_at), Inserts
// records created and Deletes records of earlier pages deleted, so total and
// last_page move and offsets shift.
type MidWalk struct {
	Updates    int `json:"updates" yaml:"updates"`
	Inserts    int `json:"inserts" yaml:"inserts"`
	Deletes    int `json:"deletes" yaml:"deletes"`
	EveryPages int `json:"every_pages" yaml:"every_pages"`
}

// PageFault fails requests. Kinds: "status" (Status, default 500),
// "slow" (answers after Delay, default 2s), "timeout" (holds the request for
// Delay, default 2m, or until the client gives up), "reset" (closes the
// connection without an answer), "truncate" (sends half the body, then
// closes).
type PageFault struct {
	// Page is the list page that fails; 0 is every request of the endpoint.
	Page   int      `json:"page" yaml:"page"`
	Kind   string   `json:"kind" yaml:"kind"`
	Status int      `json:"status,omitempty" yaml:"status"`
	Delay  Duration `json:"delay,omitempty" yaml:"delay"`
	// Times the fault fires before it stops; 0 is always.
	Times int `json:"times,omitempty" yaml:"times"`
	// Probability of firing on a matching request; 0 is always.
	Probability float64 `json:"probability,omitempty" yaml:"probability"`
}

// RateLimit is a token bucket per token, like Laravel's throttle middleware.
type RateLimit struct {
	// PerMinute refill rate; default 60.
	PerMinute float64 `json:"per_minute" yaml:"per_minute"`
	// Burst is the bucket size; default PerMinute.
	Burst int `json:"burst" yaml:"burst"`
	// RetryAfter on a 429: "seconds" (default), "zero", "none" or "date".
	RetryAfter string `json:"retry_after,omitempty" yaml:"retry_after"`
	// NoHeaders turns off X-RateLimit-Limit/-Remaining/-Reset.
	NoHeaders bool `json:"no_headers,omitempty" yaml:"no_headers"`
	// EmptyBody sends 429s without {"message":"Too Many Requests"}.
	EmptyBody bool `json:"empty_body,omitempty" yaml:"empty_body"`
}

// Storm answers 429 to every request for For after the faults are set,
// whatever the client does.
type Storm struct {
	For Duration `json:"for" yaml:"for"`
	// RetryAfter: "seconds" (time left, default), "zero", "none" or "date".
	RetryAfter string `json:"retry_after,omitempty" yaml:"retry_after"`
	EmptyBody  bool   `json:"empty_body,omitempty" yaml:"empty_body"`
}

func (b Behaviour) validate(where string) error {
	if b.Order != "" && b.Order != "id" && b.Order != "updated_at" {
		return fmt.Errorf("%sorder %q: want id or updated_at", where, b.Order)
	}
	if _, ok := timeLayouts[b.Wire.TimeLayout]; !ok && b.Wire.TimeLayout != "mixed" {
		return fmt.Errorf("%swire.time_layout %q: want offset, micro, plain or mixed", where, b.Wire.TimeLayout)
	}
	for i, pf := range b.PageFaults {
		switch pf.Kind {
		case "status", "slow", "timeout", "reset", "truncate":
		default:
			return fmt.Errorf("%spage_faults[%d].kind %q: want status, slow, timeout, reset or truncate", where, i, pf.Kind)
		}
		if pf.Status != 0 && (pf.Status < 400 || pf.Status > 599) {
			return fmt.Errorf("%spage_faults[%d].status %d: want 4xx or 5xx", where, i, pf.Status)
		}
	}
	for _, ra := range []string{rl(b.RateLimit), st(b.Storm)} {
		switch ra {
		case "", "seconds", "zero", "none", "date":
		default:
			return fmt.Errorf("%sretry_after %q: want seconds, zero, none or date", where, ra)
		}
	}
	if b.RateLimit != nil && b.RateLimit.PerMinute < 0 {
		return fmt.Errorf("%srate_limit.per_minute: want >= 0", where)
	}
	return nil
}

func rl(r *RateLimit) string {
	if r == nil {
		return ""
	}
	return r.RetryAfter
}

func st(s *Storm) string {
	if s == nil {
		return ""
	}
	return s.RetryAfter
}

// faultState is what the behaviours remember; reset by SetFaults.
type faultState struct {
	mu      sync.Mutex
	setAt   time.Time
	fired   map[string]int // endpoint key + fault index -> times fired
	buckets map[string]*bucket
	ties    map[string]*tie // resource -> shared updated_at group
}

type tie struct {
	at   int64
	left int
}

type bucket struct {
	tokens float64
	last   time.Time
}

// SetFaults replaces the customer's behaviour profile and resets its state
// (storms start now, fault counters and buckets start afresh).
func (s *Sim) SetFaults(customerID string, f Faults) error {
	c, err := s.customer(customerID)
	if err != nil {
		return err
	}
	if err := f.validate(""); err != nil {
		return err
	}
	for k, b := range f.Endpoints {
		if err := b.validate("endpoints." + k + "."); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.faults = f
	c.mu.Unlock()
	c.fs.mu.Lock()
	c.fs.setAt = time.Now()
	c.fs.fired = map[string]int{}
	c.fs.buckets = map[string]*bucket{}
	c.fs.ties = map[string]*tie{}
	c.fs.mu.Unlock()
	return nil
}

// GetFaults returns the customer's behaviour profile.
func (s *Sim) GetFaults(customerID string) (Faults, error) {
	c, err := s.customer(customerID)
	if err != nil {
		return Faults{}, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.faults, nil
}

// behaviour returns the behaviour of an endpoint and the key it was found
// under ("" for the customer-wide one). Callers hold c.mu.
func (c *customer) behaviour(endpoint, resource string) (Behaviour, string) {
	if b, ok := c.faults.Endpoints[endpoint]; ok {
		return b, endpoint
	}
	if b, ok := c.faults.Endpoints[resource]; ok {
		return b, resource
	}
	return c.faults.Behaviour, ""
}

// stamp returns the updated_at of a write at now, honouring SharedUpdatedAt.
// Callers hold c.mu for writing.
func (c *customer) stamp(resource string, now int64) int64 {
	b, _ := c.behaviour(resource, resource)
	if b.SharedUpdatedAt <= 1 {
		return now
	}
	c.fs.mu.Lock()
	defer c.fs.mu.Unlock()
	if c.fs.ties == nil {
		c.fs.ties = map[string]*tie{}
	}
	t := c.fs.ties[resource]
	if t == nil || t.left <= 0 {
		t = &tie{at: now, left: b.SharedUpdatedAt}
		c.fs.ties[resource] = t
	}
	t.left--
	return t.at
}

// throttle applies a storm and the rate limit; it reports whether it
// answered the request.
func (c *customer) throttle(w http.ResponseWriter, b Behaviour, key, token string) bool {
	now := time.Now()
	c.fs.mu.Lock()
	if b.Storm != nil {
		if left := c.fs.setAt.Add(time.Duration(b.Storm.For)).Sub(now); left > 0 {
			c.fs.mu.Unlock()
			tooMany(w, b.Storm.RetryAfter, left, now, b.Storm.EmptyBody)
			return true
		}
	}
	if b.RateLimit == nil {
		c.fs.mu.Unlock()
		return false
	}
	rlim := *b.RateLimit
	if rlim.PerMinute == 0 {
		rlim.PerMinute = 60
	}
	if rlim.Burst <= 0 {
		rlim.Burst = int(math.Ceil(rlim.PerMinute))
	}
	if c.fs.buckets == nil {
		c.fs.buckets = map[string]*bucket{}
	}
	bk := c.fs.buckets[token+"\x00"+key]
	if bk == nil {
		bk = &bucket{tokens: float64(rlim.Burst), last: now}
		c.fs.buckets[token+"\x00"+key] = bk
	}
	perSec := rlim.PerMinute / 60
	bk.tokens = min(float64(rlim.Burst), bk.tokens+now.Sub(bk.last).Seconds()*perSec)
	bk.last = now
	allowed := bk.tokens >= 1
	if allowed {
		bk.tokens--
	}
	remaining := int(bk.tokens)
	wait := time.Duration((1 - bk.tokens) / perSec * float64(time.Second))
	c.fs.mu.Unlock()
	if !rlim.NoHeaders {
		h := w.Header()
		h.Set("X-RateLimit-Limit", strconv.Itoa(int(rlim.PerMinute)))
		h.Set("X-RateLimit-Remaining", strconv.Itoa(max(0, remaining)))
		if !allowed {
			h.Set("X-RateLimit-Reset", strconv.FormatInt(now.Add(wait).Unix()+1, 10))
		}
	}
	if allowed {
		return false
	}
	tooMany(w, rlim.RetryAfter, wait, now, rlim.EmptyBody)
	return true
}

func tooMany(w http.ResponseWriter, mode string, wait time.Duration, now time.Time, empty bool) {
	secs := int64(math.Ceil(wait.Seconds()))
	switch mode {
	case "", "seconds":
		w.Header().Set("Retry-After", strconv.FormatInt(max(1, secs), 10))
	case "zero":
		w.Header().Set("Retry-After", "0")
	case "date":
		w.Header().Set("Retry-After", now.Add(time.Duration(max(1, secs))*time.Second).UTC().Format(http.TimeFormat))
	}
	if empty {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	writeMessage(w, http.StatusTooManyRequests, "Too Many Requests")
}

// pageFault returns the fault that fires on this request, if any.
func (c *customer) pageFault(b Behaviour, key string, page int) (PageFault, bool) {
	if len(b.PageFaults) == 0 {
		return PageFault{}, false
	}
	c.fs.mu.Lock()
	defer c.fs.mu.Unlock()
	if c.fs.fired == nil {
		c.fs.fired = map[string]int{}
	}
	for i, pf := range b.PageFaults {
		if pf.Page != 0 && pf.Page != page {
			continue
		}
		k := key + "\x00" + strconv.Itoa(i)
		if pf.Times > 0 && c.fs.fired[k] >= pf.Times {
			continue
		}
		if pf.Probability > 0 && c.faultRand() >= pf.Probability {
			continue
		}
		c.fs.fired[k]++
		return pf, true
	}
	return PageFault{}, false
}

// faultRand draws from the customer's deterministic stream.
func (c *customer) faultRand() float64 {
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	return c.frng.Float64()
}
