package apply

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/vomosync/vomosync/pkg/customer"
)

// Customers is what the applier needs of the customer store.
type Customers interface {
	Get(ctx context.Context, id string) (customer.Customer, error)
}

// CustomerCache keeps customers for TTL, so a batch costs no lookups while
// settings changes still take effect within TTL. Unknown customers are
// remembered for a shorter time.
type CustomerCache struct {
	Source Customers
	TTL    time.Duration

	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	c       customer.Customer
	err     error
	expires time.Time
}

// Get implements Customers. Errors other than customer.ErrNotFound are not
// cached.
func (cc *CustomerCache) Get(ctx context.Context, id string) (customer.Customer, error) {
	now := time.Now()
	cc.mu.Lock()
	if e, ok := cc.entries[id]; ok && now.Before(e.expires) {
		cc.mu.Unlock()
		return e.c, e.err
	}
	cc.mu.Unlock()
	c, err := cc.Source.Get(ctx, id)
	ttl := cc.TTL
	switch {
	case err == nil:
	case errors.Is(err, customer.ErrNotFound):
		ttl = min(ttl, 5*time.Second)
	default:
		return c, err
	}
	cc.mu.Lock()
	if cc.entries == nil {
		cc.entries = map[string]cacheEntry{}
	}
	cc.entries[id] = cacheEntry{c: c, err: err, expires: now.Add(ttl)}
	cc.mu.Unlock()
	return c, err
}
