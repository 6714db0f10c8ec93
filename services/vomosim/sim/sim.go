// Package sim is the VOMO API simulator: customers (organization families
// reached by one bearer token) with deterministic data, the documented list
// envelope and filters, change generation, switchable adversarial behaviour,
// and an admin surface that exports the exact truth. Tests import it and
// serve Handler with httptest; cmd/vomosim serves it over TCP.
package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Errors returned by the Go control API.
var (
	ErrUnknownCustomer = errors.New("unknown customer")
	ErrCustomerExists  = errors.New("customer already exists")
	ErrTokenInUse      = errors.New("token already in use")
	ErrUnknownResource = errors.New("unknown resource")
	ErrNotFound        = errors.New("record not found")
)

// Options configure a simulator.
type Options struct {
	// Seed makes every customer's data and change stream deterministic.
	Seed int64
	// Now is the reference clock; customer clocks add their skew. Default time.Now.
	Now func() time.Time
	// BaseURL is the absolute prefix of links (e.g. https://api.vomo.org);
	// empty means http://<request Host>.
	BaseURL string
	// PageSize of every list; default 15 as documented.
	PageSize int
}

// Sim is a running simulator. All methods are safe for concurrent use.
type Sim struct {
	opts Options

	mu        sync.RWMutex
	customers map[string]*customer
	order     []string
	tokens    map[string]*tokenState

	unknownMu sync.Mutex
	unknown   map[int]int // requests with no or an unknown token
}

type tokenState struct {
	customer string
	revoked  bool
}

// customer is one organization family and everything it serves.
type customer struct {
	id   string
	seed uint64

	mu      sync.RWMutex // guards tables, faults, rng
	tables  map[string]*table
	faults  Faults
	rng     *rand.Rand
	changes map[int]func() // running change generators by handle

	fs    faultState
	hooks hooks
	rngMu sync.Mutex // guards frng, drawn by readers too
	frng  *rand.Rand

	countMu sync.Mutex
	counts  map[string]map[int]int // token -> status -> requests
}

// CustomerSpec describes a customer to add.
type CustomerSpec struct {
	ID    string `json:"id" yaml:"id"`
	Token string `json:"token" yaml:"token"`
	// Users is the initial user count.
	Users int `json:"users" yaml:"users"`
	// Seed of this customer's data; 0 derives one from the simulator seed and ID.
	Seed int64 `json:"seed" yaml:"seed"`
	// History spreads initial created_at over this long before now; default 730 days.
	History Duration `json:"history" yaml:"history"`
	// Initial sizes of the other resources (0: none). Completions are
	// spread over the forms; Chapters are child organizations under the root.
	Projects     int `json:"projects" yaml:"projects"`
	Groups       int `json:"groups" yaml:"groups"`
	Campaigns    int `json:"campaigns" yaml:"campaigns"`
	Certificates int `json:"certificates" yaml:"certificates"`
	Forms        int `json:"forms" yaml:"forms"`
	Completions  int `json:"completions" yaml:"completions"`
	Chapters     int `json:"chapters" yaml:"chapters"`
	// TiedBoundaries gives the initial data shared updated_at values across
	// every page boundary (records 15 and 16, 30 and 31, ...) of an
	// unfiltered walk in updated_at order.
	TiedBoundaries bool `json:"tied_boundaries" yaml:"tied_boundaries"`
}

// New returns an empty simulator.
func New(opts Options) *Sim {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 15
	}
	return &Sim{opts: opts, customers: map[string]*customer{}, tokens: map[string]*tokenState{}, unknown: map[int]int{}}
}

// Users is the users resource; the others are in resources.go.
const Users = "users"

// AddCustomer creates a customer with its initial data. It returns
// ErrCustomerExists or ErrTokenInUse.
func (s *Sim) AddCustomer(spec CustomerSpec) error {
	if spec.ID == "" || spec.Token == "" {
		return errors.New("customer id and token are required")
	}
	seed := uint64(spec.Seed)
	if seed == 0 {
		h := fnv.New64a()
		h.Write([]byte(spec.ID))
		seed = mix(uint64(s.opts.Seed) ^ h.Sum64())
	}
	c := &customer{
		id: spec.ID, seed: seed, tables: map[string]*table{},
		rng:     rand.New(rand.NewPCG(seed, 0x5eed)),
		frng:    rand.New(rand.NewPCG(seed, 0xfa17)),
		changes: map[int]func(){}, counts: map[string]map[int]int{},
	}
	for name, def := range resourceDefs {
		c.tables[name] = newTable(def.base)
	}
	history := time.Duration(spec.History)
	if history <= 0 {
		history = 730 * 24 * time.Hour
	}
	if err := c.populate(spec, s.opts.Now().Unix(), int64(history/time.Second)); err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.customers[spec.ID]; ok {
		return fmt.Errorf("add %s: %w", spec.ID, ErrCustomerExists)
	}
	if _, ok := s.tokens[spec.Token]; ok {
		return fmt.Errorf("add %s: %w", spec.ID, ErrTokenInUse)
	}
	s.customers[spec.ID] = c
	s.order = append(s.order, spec.ID)
	s.tokens[spec.Token] = &tokenState{customer: spec.ID}
	return nil
}

// populate creates the initial data of every resource.
func (c *customer) populate(spec CustomerSpec, now, history int64) error {
	for _, n := range []int{spec.Users, spec.Projects, spec.Groups, spec.Campaigns, spec.Certificates, spec.Forms, spec.Completions, spec.Chapters} {
		if n < 0 {
			return fmt.Errorf("add %s: negative size %d", spec.ID, n)
		}
	}
	if spec.Completions > 0 && spec.Forms == 0 {
		return fmt.Errorf("add %s: completions need at least one form", spec.ID)
	}
	if spec.Chapters > 1000 {
		return fmt.Errorf("add %s: at most 1000 chapters", spec.ID)
	}
	orgs := spec.Chapters + 1
	c.seedRows(Organizations, orgs, now, history, nil)
	inOrg := func(r *row) { r.org = uint16(c.rng.IntN(orgs)) }
	c.seedRows(Users, spec.Users, now, history, inOrg)
	c.seedRows(Projects, spec.Projects, now, history, inOrg)
	c.seedRows(Groups, spec.Groups, now, history, inOrg)
	c.seedRows(Campaigns, spec.Campaigns, now, history, inOrg)
	c.seedRows(Certificates, spec.Certificates, now, history, nil)
	c.seedRows(Forms, spec.Forms, now, history, nil)
	c.seedRows(Completions, spec.Completions, now, history, func(r *row) { r.parent = uint32(c.rng.IntN(spec.Forms)) })
	if spec.TiedBoundaries {
		for _, t := range c.tables {
			t.tieBoundaries(15)
		}
	}
	return nil
}

// seedRows creates n rows whose created_at rise with id over history
// seconds before now, in bursts that share a second (bulk imports); about a
// third were edited later.
func (c *customer) seedRows(resource string, n int, now, history int64, init func(*row)) {
	if n <= 0 {
		return
	}
	t := c.tables[resource]
	t.rows = slices.Grow(t.rows, n)
	t.byID = slices.Grow(t.byID, n)
	start := now - history
	step := float64(history-3600) / float64(n)
	at := float64(start)
	for i := 0; i < n; i++ {
		if c.rng.IntN(4) != 0 { // 1 in 4 shares the previous second
			at += step * 4 / 3 * c.rng.Float64() * 2
		}
		created := min(int64(at), now-3600)
		updated := created
		if c.rng.IntN(3) == 0 {
			updated = created + c.rng.Int64N(max(1, now-created))
		}
		idx := uint32(len(t.rows))
		r := row{created: created, updated: updated}
		if init != nil {
			init(&r)
		}
		t.rows = append(t.rows, r)
		t.byID = append(t.byID, idx)
	}
	t.byUpd = slices.Clone(t.byID)
	t.resort()
}

func (s *Sim) customer(id string) (*customer, error) {
	s.mu.RLock()
	c, ok := s.customers[id]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%q: %w", id, ErrUnknownCustomer)
	}
	return c, nil
}

// Customers lists customer ids in the order they were added.
func (s *Sim) Customers() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.order)
}

// Now returns the customer's clock (reference clock plus its skew).
func (s *Sim) Now(customerID string) (time.Time, error) {
	c, err := s.customer(customerID)
	if err != nil {
		return time.Time{}, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return s.clock(c), nil
}

// clock is the customer's time; callers hold c.mu.
func (s *Sim) clock(c *customer) time.Time {
	return s.opts.Now().Add(time.Duration(c.faults.ClockSkew)).UTC()
}

func (c *customer) table(resource string) (*table, error) {
	t, ok := c.tables[resource]
	if !ok {
		return nil, fmt.Errorf("%q: %w", resource, ErrUnknownResource)
	}
	return t, nil
}

func parseID(id string) (int64, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("id %q: %w", id, ErrNotFound)
	}
	return n, nil
}

// Create adds a record to resource at the customer's clock and returns its id.
func (s *Sim) Create(customerID, resource string) (string, error) {
	c, err := s.customer(customerID)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t, err := c.table(resource)
	if err != nil {
		return "", err
	}
	idx := c.insert(resource, s.clock(c).Unix())
	c.emit(resource, "created", idx)
	return strconv.FormatInt(t.id(idx), 10), nil
}

// Update changes a record's fields and sets updated_at to the customer's clock.
func (s *Sim) Update(customerID, resource, id string) error {
	return s.mutate(customerID, resource, id, func(c *customer, t *table, idx uint32) {
		t.rows[idx].version++
		t.setUpdated(idx, c.stamp(resource, s.clock(c).Unix()))
		c.emit(resource, "updated", idx)
	})
}

// LateUpdate updates a record with an updated_at lag behind the customer's
// clock, as a write whose commit was delayed: it lands behind what a client
// may already have read.
func (s *Sim) LateUpdate(customerID, resource, id string, lag time.Duration) error {
	return s.mutate(customerID, resource, id, func(c *customer, t *table, idx uint32) {
		t.rows[idx].version++
		t.setUpdated(idx, s.clock(c).Add(-lag).Unix())
		c.emit(resource, "updated", idx)
	})
}

// TouchDetail changes what a record's detail shows without advancing its
// updated_at: a user's participations and certificates, a project's dates,
// a group's members.
func (s *Sim) TouchDetail(customerID, resource, id string) error {
	return s.mutate(customerID, resource, id, func(c *customer, t *table, idx uint32) {
		t.rows[idx].aux++
		t.gen++
	})
}

// Leave marks a user as having left the organization: it stays listed with
// membership_status REMOVED and a new updated_at.
func (s *Sim) Leave(customerID, id string) error {
	return s.mutate(customerID, Users, id, func(c *customer, t *table, idx uint32) {
		t.rows[idx].flags |= flagLeft
		t.setUpdated(idx, c.stamp(Users, s.clock(c).Unix()))
		c.emit(Users, "updated", idx)
	})
}

// SilentUpdate changes a record's fields without advancing updated_at: only
// a full-state reconciliation can see it.
func (s *Sim) SilentUpdate(customerID, resource, id string) error {
	return s.mutate(customerID, resource, id, func(c *customer, t *table, idx uint32) {
		t.rows[idx].version++
		t.gen++
	})
}

// Delete hard-deletes a record: no tombstone, GET returns 404.
func (s *Sim) Delete(customerID, resource, id string) error {
	return s.mutate(customerID, resource, id, func(c *customer, t *table, idx uint32) {
		c.emitDeleted(resource, idx, s.clock(c).Unix())
		t.remove(idx)
	})
}

func (s *Sim) mutate(customerID, resource, id string, fn func(*customer, *table, uint32)) error {
	n, err := parseID(id)
	if err != nil {
		return err
	}
	c, err := s.customer(customerID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t, err := c.table(resource)
	if err != nil {
		return err
	}
	idx, ok := t.lookup(n)
	if !ok {
		return fmt.Errorf("%s %s of %s: %w", resource, id, customerID, ErrNotFound)
	}
	fn(c, t, idx)
	return nil
}

// CreateUser creates a user and returns its id. It panics on an unknown
// customer (a test's programming error); use Create to get an error.
func (s *Sim) CreateUser(customerID string) string {
	id, err := s.Create(customerID, Users)
	if err != nil {
		panic(err)
	}
	return id
}

// UpdateUser bumps a user's fields and updated_at. It returns ErrNotFound.
func (s *Sim) UpdateUser(customerID, id string) error { return s.Update(customerID, Users, id) }

// DeleteUser hard-deletes a user. It returns ErrNotFound.
func (s *Sim) DeleteUser(customerID, id string) error { return s.Delete(customerID, Users, id) }

// TruthRecord is one live record as the simulator holds it.
type TruthRecord struct {
	ID        string          `json:"id"`
	UpdatedAt time.Time       `json:"updated_at"`
	Fields    json.RawMessage `json:"fields,omitempty"`
}

// Truth returns every live record of resource in id order, with its fields
// in the canonical wire format (numeric ids, +00:00 timestamps) and list shape.
func (s *Sim) Truth(customerID, resource string) ([]TruthRecord, error) {
	var out []TruthRecord
	err := s.EachTruth(customerID, resource, true, func(r TruthRecord) error {
		r.Fields = slices.Clone(r.Fields)
		out = append(out, r)
		return nil
	})
	return out, err
}

// EachTruth calls fn for every live record in id order without building a
// slice; Fields is only valid during the call and nil unless withFields.
// The customer is read-locked for the duration.
func (s *Sim) EachTruth(customerID, resource string, withFields bool, fn func(TruthRecord) error) error {
	c, err := s.customer(customerID)
	if err != nil {
		return err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, err := c.table(resource)
	if err != nil {
		return err
	}
	e := &enc{lay: WireFormat{}.layout(0)}
	render := resourceDefs[resource].render
	for _, idx := range t.byID {
		r := &t.rows[idx]
		id := t.id(idx)
		tr := TruthRecord{ID: strconv.FormatInt(id, 10), UpdatedAt: time.Unix(r.updated, 0).UTC()}
		if withFields {
			e.b = e.b[:0]
			render(e, c, id, r, false)
			tr.Fields = e.b
		}
		if err := fn(tr); err != nil {
			return err
		}
	}
	return nil
}

// Count returns the number of live records of resource.
func (s *Sim) Count(customerID, resource string) (int, error) {
	c, err := s.customer(customerID)
	if err != nil {
		return 0, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, err := c.table(resource)
	if err != nil {
		return 0, err
	}
	return t.live(), nil
}

// RotateToken replaces the customer's live tokens with newToken; requests
// with an old one get 401 from now on.
func (s *Sim) RotateToken(customerID, newToken string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.customers[customerID]; !ok {
		return fmt.Errorf("rotate token of %q: %w", customerID, ErrUnknownCustomer)
	}
	if _, ok := s.tokens[newToken]; ok {
		return fmt.Errorf("rotate token of %q: %w", customerID, ErrTokenInUse)
	}
	for _, ts := range s.tokens {
		if ts.customer == customerID {
			ts.revoked = true
		}
	}
	s.tokens[newToken] = &tokenState{customer: customerID}
	return nil
}

// RevokeToken revokes every token of the customer.
func (s *Sim) RevokeToken(customerID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.customers[customerID]; !ok {
		return fmt.Errorf("revoke token of %q: %w", customerID, ErrUnknownCustomer)
	}
	for _, ts := range s.tokens {
		if ts.customer == customerID {
			ts.revoked = true
		}
	}
	return nil
}

// RequestCounts returns the customer's requests by HTTP status, over all
// its tokens (revoked ones included).
func (s *Sim) RequestCounts(customerID string) map[int]int {
	out := map[int]int{}
	for _, m := range s.RequestCountsByToken(customerID) {
		for code, n := range m {
			out[code] += n
		}
	}
	return out
}

// RequestCountsByToken returns the customer's requests by token, then status.
func (s *Sim) RequestCountsByToken(customerID string) map[string]map[int]int {
	out := map[string]map[int]int{}
	c, err := s.customer(customerID)
	if err != nil {
		return out
	}
	c.countMu.Lock()
	defer c.countMu.Unlock()
	for tok, m := range c.counts {
		out[tok] = make(map[int]int, len(m))
		for code, n := range m {
			out[tok][code] = n
		}
	}
	return out
}

// UnauthenticatedCounts returns requests without a known token, by status.
func (s *Sim) UnauthenticatedCounts() map[int]int {
	s.unknownMu.Lock()
	defer s.unknownMu.Unlock()
	out := make(map[int]int, len(s.unknown))
	for k, v := range s.unknown {
		out[k] = v
	}
	return out
}

func (c *customer) count(token string, status int) {
	c.countMu.Lock()
	m := c.counts[token]
	if m == nil {
		m = map[int]int{}
		c.counts[token] = m
	}
	m[status]++
	c.countMu.Unlock()
}

func (c *customer) userFields(id int64, r *row) userFields {
	return genUser(c.seed, id, r.version)
}
