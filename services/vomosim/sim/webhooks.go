package sim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Webhooks configure optional event delivery for one customer, as VOMO
// documents it: POST {"type","organization_id","data"} signed with hex
// HMAC-SHA256 of the raw body in vomo-signature; the receiver has Timeout
// (3s) to answer 2xx; failed deliveries are retried after each of Retries
// (10s, 100s), then dropped. The probabilities make delivery unreliable so
// that polling has to backstop it.
type Webhooks struct {
	URL    string `json:"url" yaml:"url"`
	Secret string `json:"secret" yaml:"secret"`
	// Events limits the event types sent ("project.updated"); empty sends all.
	Events  []string   `json:"events,omitempty" yaml:"events"`
	Timeout Duration   `json:"timeout,omitempty" yaml:"timeout"`
	Retries []Duration `json:"retries,omitempty" yaml:"retries"`
	// Probabilities of a duplicate delivery, of holding an event back
	// behind the next one (out of order), of never sending it, and of a
	// wrong signature.
	Duplicate    float64 `json:"duplicate,omitempty" yaml:"duplicate"`
	Reorder      float64 `json:"reorder,omitempty" yaml:"reorder"`
	Drop         float64 `json:"drop,omitempty" yaml:"drop"`
	BadSignature float64 `json:"bad_signature,omitempty" yaml:"bad_signature"`
}

// WebhookStats count deliveries of one customer.
type WebhookStats struct {
	Events    int `json:"events"`    // events raised
	Attempts  int `json:"attempts"`  // POSTs sent
	Delivered int `json:"delivered"` // POSTs answered 2xx
	Dropped   int `json:"dropped"`   // events never delivered (drop mode, retries exhausted, queue full)
}

type hookEvent struct {
	body []byte
	sig  string
}

// hooks is the delivery machinery of one customer.
type hooks struct {
	mu      sync.Mutex
	cfg     *Webhooks
	queue   chan hookEvent
	held    *hookEvent // an event held back to be sent after the next
	stats   WebhookStats
	client  *http.Client
	stopped chan struct{}
	cancel  context.CancelFunc
}

// SetWebhooks starts (or replaces) webhook delivery for the customer; a nil
// config stops it. Delivery runs until the config is replaced or cleared.
func (s *Sim) SetWebhooks(customerID string, w *Webhooks) error {
	c, err := s.customer(customerID)
	if err != nil {
		return err
	}
	if w != nil && (w.URL == "" || w.Secret == "") {
		return errors.New("webhooks: url and secret are required")
	}
	c.hooks.mu.Lock()
	if c.hooks.cancel != nil {
		c.hooks.cancel()
		stopped := c.hooks.stopped
		c.hooks.mu.Unlock()
		<-stopped
		c.hooks.mu.Lock()
	}
	c.hooks.cfg, c.hooks.cancel, c.hooks.held = nil, nil, nil
	if w == nil {
		c.hooks.mu.Unlock()
		return nil
	}
	cfg := *w
	ctx, cancel := context.WithCancel(context.Background())
	c.hooks.cfg, c.hooks.cancel = &cfg, cancel
	c.hooks.queue = make(chan hookEvent, 4096)
	c.hooks.stopped = make(chan struct{})
	c.hooks.client = &http.Client{Timeout: durationOr(cfg.Timeout, 3*time.Second)}
	queue, stopped := c.hooks.queue, c.hooks.stopped
	c.hooks.mu.Unlock()
	go c.deliverLoop(ctx, queue, stopped)
	return nil
}

// WebhookStatsOf returns the customer's delivery counters.
func (s *Sim) WebhookStatsOf(customerID string) (WebhookStats, error) {
	c, err := s.customer(customerID)
	if err != nil {
		return WebhookStats{}, err
	}
	c.hooks.mu.Lock()
	defer c.hooks.mu.Unlock()
	return c.hooks.stats, nil
}

var singular = map[string]string{
	Users: "user", Projects: "project", Groups: "group", Campaigns: "campaign", Certificates: "certificate",
	Forms: "form", Completions: "form_completion", Organizations: "organization",
}

// emit raises an event for a row (rendered now, in the canonical format).
// Callers hold c.mu.
func (c *customer) emit(resource, action string, idx uint32) {
	c.emitRow(resource, action, idx, nil)
}

// emitDeleted raises a deleted event: the record as it was, with the
// deletion moment as its updated_at (as VOMO's campaign.deleted does).
func (c *customer) emitDeleted(resource string, idx uint32, now int64) {
	r := c.tables[resource].rows[idx]
	r.updated = now
	c.emitRow(resource, "deleted", idx, &r)
}

func (c *customer) emitRow(resource, action string, idx uint32, r *row) {
	c.hooks.mu.Lock()
	cfg := c.hooks.cfg
	c.hooks.mu.Unlock()
	if cfg == nil {
		return
	}
	typ := singular[resource] + "." + action
	if len(cfg.Events) > 0 && !slices.Contains(cfg.Events, typ) {
		return
	}
	t := c.tables[resource]
	e := &enc{lay: WireFormat{}.layout(0)}
	e.raw(`{"type":`)
	e.b = appendJSONString(e.b, typ)
	e.raw(`,"organization_id":`)
	e.b = strconv.AppendInt(e.b, c.tables[Organizations].id(0), 10)
	e.raw(`,"data":`)
	if r == nil {
		r = &t.rows[idx]
	}
	resourceDefs[resource].render(e, c, t.id(idx), r, false)
	e.raw(`}`)
	ev := hookEvent{body: e.b, sig: Sign(cfg.Secret, e.b)}
	if c.faultRand() < cfg.BadSignature {
		ev.sig = hex.EncodeToString(make([]byte, 32))
	}

	c.hooks.mu.Lock()
	defer c.hooks.mu.Unlock()
	c.hooks.stats.Events++
	if c.faultRand() < cfg.Drop {
		c.hooks.stats.Dropped++
		return
	}
	out := []hookEvent{ev}
	if c.faultRand() < cfg.Duplicate {
		out = append(out, ev)
	}
	if c.hooks.held != nil {
		out = append(out, *c.hooks.held) // after the newer one: out of order
		c.hooks.held = nil
	} else if c.faultRand() < cfg.Reorder {
		c.hooks.held, out = &out[0], out[1:]
	}
	for _, e := range out {
		select {
		case c.hooks.queue <- e:
		default:
			c.hooks.stats.Dropped++
		}
	}
}

func (c *customer) deliverLoop(ctx context.Context, queue chan hookEvent, stopped chan struct{}) {
	defer close(stopped)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-queue:
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.deliver(ctx, ev)
			}()
		}
	}
}

// deliver tries an event, then retries after each configured delay.
func (c *customer) deliver(ctx context.Context, ev hookEvent) {
	c.hooks.mu.Lock()
	cfg, client := c.hooks.cfg, c.hooks.client
	c.hooks.mu.Unlock()
	if cfg == nil {
		return
	}
	retries := cfg.Retries
	if len(retries) == 0 {
		retries = []Duration{Duration(10 * time.Second), Duration(100 * time.Second)}
	}
	for attempt := 0; ; attempt++ {
		ok := c.post(ctx, client, cfg.URL, ev)
		if ok {
			return
		}
		if attempt >= len(retries) || ctx.Err() != nil {
			c.hooks.mu.Lock()
			c.hooks.stats.Dropped++
			c.hooks.mu.Unlock()
			return
		}
		t := time.NewTimer(time.Duration(retries[attempt]))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (c *customer) post(ctx context.Context, client *http.Client, url string, ev hookEvent) bool {
	c.hooks.mu.Lock()
	c.hooks.stats.Attempts++
	c.hooks.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(ev.body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("vomo-signature", ev.sig)
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return false
	}
	c.hooks.mu.Lock()
	c.hooks.stats.Delivered++
	c.hooks.mu.Unlock()
	return true
}

// Sign returns the hex HMAC-SHA256 of body under secret, as VOMO signs
// webhooks; receivers' tests use it.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}
