// Package contract_test runs the VOMO client (pkg/vomo) against the
// simulator under each adversarial behaviour and proves the client's
// promises: a walk that completes and is trusted lost nothing; a walk that
// cannot be trusted says so; 429s and 5xx end in success within the retry
// budget or in a typed error; 401 and 403 are never retried.
package contract_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/vomo"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

const token = "tok-contract-secret"

// clock is a settable simulator clock.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type testBundle struct {
	sim    *sim.Sim
	srv    *httptest.Server
	clock  *clock
	client *vomo.Client
}

func setup(t *testing.T, spec sim.CustomerSpec, f sim.Faults, opts ...vomo.Option) *testBundle {
	t.Helper()
	ck := &clock{}
	ck.ns.Store(time.Date(2025, 11, 20, 12, 0, 0, 0, time.UTC).UnixNano())
	s := sim.New(sim.Options{Seed: 7, Now: ck.Now})
	spec.ID, spec.Token = "acme", token
	require.NoError(t, s.AddCustomer(spec))
	require.NoError(t, s.SetFaults("acme", f))
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	opts = append([]vomo.Option{
		vomo.WithBackoff(time.Millisecond, 20*time.Millisecond),
		vomo.WithRequestTimeout(2 * time.Second),
	}, opts...)
	c, err := vomo.New(srv.URL+"/v1", token, opts...)
	require.NoError(t, err)
	return &testBundle{sim: s, srv: srv, clock: ck, client: c}
}

// walk runs a full walk and returns the records seen by id (last version).
func (b *testBundle) walk(t *testing.T, path string, q url.Values) (map[string]vomo.Record, vomo.WalkResult, error) {
	t.Helper()
	seen := map[string]vomo.Record{}
	res, err := b.client.Walk(context.Background(), path, q, func(ctx context.Context, p vomo.Page) error {
		for _, r := range p.Records {
			seen[r.ID] = r
		}
		return nil
	})
	if err != nil {
		require.NotContains(t, err.Error(), token, "the token leaked into an error")
	}
	return seen, res, err
}

// requireComplete checks that every record of the truth was seen with its
// exact updated_at.
func requireComplete(t *testing.T, b *testBundle, resource string, seen map[string]vomo.Record) {
	t.Helper()
	truth, err := b.sim.Truth("acme", resource)
	require.NoError(t, err)
	require.Len(t, seen, len(truth))
	for _, tr := range truth {
		r, ok := seen[tr.ID]
		require.True(t, ok, "record %s missing", tr.ID)
		require.True(t, tr.UpdatedAt.Equal(r.UpdatedAt), "record %s: %s != %s", tr.ID, tr.UpdatedAt, r.UpdatedAt)
	}
}

func TestCleanWalkEveryResource(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.CustomerSpec{Users: 100, Projects: 31, Groups: 16, Campaigns: 15, Certificates: 4, Forms: 3, Completions: 40, Chapters: 2}, sim.Faults{})
	for _, res := range []string{sim.Users, sim.Projects, sim.Groups, sim.Campaigns, sim.Certificates, sim.Forms, sim.Organizations} {
		seen, wr, err := b.walk(t, "/"+res, url.Values{"updated_after": {"1970-01-01T00:00:00Z"}})
		require.NoError(t, err, res)
		require.True(t, wr.Trusted, wr.Reason)
		requireComplete(t, b, res, seen)
	}
	forms, err := b.sim.Truth("acme", sim.Forms)
	require.NoError(t, err)
	total := 0
	for _, f := range forms {
		seen, wr, err := b.walk(t, "/forms/"+f.ID+"/completions", nil)
		require.NoError(t, err)
		require.True(t, wr.Trusted)
		total += len(seen)
		for id := range seen {
			_, err := b.client.Get(context.Background(), "/forms/"+f.ID+"/completions/"+id)
			require.NoError(t, err)
		}
	}
	require.Equal(t, 40, total, "completions split over the forms")
	_, _, err = b.walk(t, "/forms/999999/completions", nil)
	require.ErrorIs(t, err, vomo.ErrNotFound)

	projects, _ := b.sim.Truth("acme", sim.Projects)
	raw, err := b.client.Get(context.Background(), "/projects/"+projects[0].ID)
	require.NoError(t, err)
	var p struct {
		AllDates []struct {
			ID vomo.ID `json:"id"`
		} `json:"all_dates"`
	}
	require.NoError(t, json.Unmarshal(raw, &p))
	require.NotEmpty(t, p.AllDates)
	date, err := b.client.Get(context.Background(), "/projects/date/"+string(p.AllDates[0].ID))
	require.NoError(t, err)
	require.Contains(t, string(date), `"participants"`)
	require.Contains(t, string(date), `"project_name"`)

	groups, _ := b.sim.Truth("acme", sim.Groups)
	_, wr, err := b.walk(t, "/groups/"+groups[0].ID+"/members", nil)
	require.NoError(t, err)
	require.True(t, wr.Trusted)

	seen, _, err := b.walk(t, "/projects", url.Values{"org_slug": {"acme-chapter-1,acme-chapter-2"}})
	require.NoError(t, err)
	require.Less(t, len(seen), 31, "org_slug narrows to the chapters")
	_, _, err = b.walk(t, "/projects", url.Values{"org_slug": {"other-org"}})
	require.ErrorIs(t, err, vomo.ErrValidation, "422 is not retried")
}

func TestWireFormatVariance(t *testing.T) {
	t.Parallel()
	for _, wf := range []sim.WireFormat{
		{StringIDs: true},
		{TimeLayout: "micro"},
		{TimeLayout: "plain", IntBools: true},
		{TimeLayout: "mixed", StringMeta: true, StringIDs: true, IntBools: true},
	} {
		t.Run(fmt.Sprintf("%+v", wf), func(t *testing.T) {
			t.Parallel()
			b := setup(t, sim.CustomerSpec{Users: 50, Projects: 20}, sim.Faults{Behaviour: sim.Behaviour{Wire: wf}})
			for _, res := range []string{sim.Users, sim.Projects} {
				seen, wr, err := b.walk(t, "/"+res, nil)
				require.NoError(t, err)
				require.True(t, wr.Trusted, wr.Reason)
				requireComplete(t, b, res, seen)
			}
			// The typed resources decode every variant to the same values.
			users, _, err := b.walk(t, "/users", nil)
			require.NoError(t, err)
			for id, rec := range users {
				u, err := vomo.Decode[vomo.User](rec.Raw)
				require.NoError(t, err)
				require.Equal(t, id, string(u.ID))
				require.True(t, rec.UpdatedAt.Equal(u.UpdatedAt.Time))
				require.NotEmpty(t, u.Email)
			}
			projects, _, err := b.walk(t, "/projects", nil)
			require.NoError(t, err)
			drafts := 0
			for id, rec := range projects {
				p, err := vomo.Decode[vomo.Project](rec.Raw)
				require.NoError(t, err)
				require.Equal(t, id, string(p.ID))
				require.NotNil(t, p.NextDate)
				if p.Draft {
					drafts++
				}
			}
			require.Less(t, drafts, len(projects))
			for id := range users {
				require.NoError(t, b.sim.TouchDetail("acme", sim.Users, id))
				raw, err := b.client.Get(context.Background(), "/users/"+id)
				require.NoError(t, err)
				u, err := vomo.Decode[vomo.User](raw)
				require.NoError(t, err)
				require.Len(t, u.Participations, 1)
				require.Equal(t, id, string(u.Participations[0].UserID))
				break
			}
		})
	}
}

func TestOrderAndTiedBoundaries(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.CustomerSpec{Users: 200, TiedBoundaries: true}, sim.Faults{Behaviour: sim.Behaviour{Order: "updated_at"}})
	var pages []vomo.Page
	_, err := b.client.Walk(context.Background(), "/users", nil, func(ctx context.Context, p vomo.Page) error {
		pages = append(pages, p)
		return nil
	})
	require.NoError(t, err)
	for i := 1; i < len(pages); i++ {
		prev, cur := pages[i-1].Records, pages[i].Records
		require.Equal(t, prev[len(prev)-1].UpdatedAt, cur[0].UpdatedAt, "page %d starts in the second page %d ended", i+1, i)
	}
	// The inclusive bound returns the boundary records again: a client
	// resuming from the last updated_at it saw loses nothing.
	last := pages[len(pages)-2].Records
	cp := last[len(last)-1].UpdatedAt
	seen, _, err := b.walk(t, "/users", url.Values{"updated_after": {cp.Format(time.RFC3339)}})
	require.NoError(t, err)
	for _, r := range pages[len(pages)-1].Records {
		require.Contains(t, seen, r.ID)
	}
	require.Contains(t, seen, last[len(last)-1].ID, "inclusive: the checkpoint record comes again")
}

func TestMidWalkChanges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		order   string
		mw      sim.MidWalk
		trusted bool
	}{
		{"updates by id keep offsets", "id", sim.MidWalk{Updates: 1}, true},
		{"updates by updated_at move records", "updated_at", sim.MidWalk{Updates: 1}, false},
		{"inserts move total", "id", sim.MidWalk{Inserts: 1}, false},
		{"deletes move total", "id", sim.MidWalk{Deletes: 1}, false},
		{"deletes by updated_at", "updated_at", sim.MidWalk{Deletes: 1, EveryPages: 2}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, sim.CustomerSpec{Users: 100}, sim.Faults{Behaviour: sim.Behaviour{Order: tc.order, MidWalk: &tc.mw}})
			before, err := b.sim.Truth("acme", sim.Users)
			require.NoError(t, err)
			seen, wr, err := b.walk(t, "/users", nil)
			require.NoError(t, err)
			require.Equal(t, tc.trusted, wr.Trusted, wr.Reason)
			if wr.Trusted {
				// Trusted means complete: every record that lived through
				// the walk was seen.
				after, _ := b.sim.Truth("acme", sim.Users)
				alive := map[string]bool{}
				for _, r := range after {
					alive[r.ID] = true
				}
				for _, r := range before {
					if alive[r.ID] {
						require.Contains(t, seen, r.ID)
					}
				}
			} else {
				require.NotEmpty(t, wr.Reason)
			}
		})
	}
}

func TestThrottling(t *testing.T) {
	t.Parallel()
	t.Run("token bucket with Retry-After", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.CustomerSpec{Users: 150}, sim.Faults{Behaviour: sim.Behaviour{RateLimit: &sim.RateLimit{PerMinute: 1200, Burst: 3}}})
		seen, wr, err := b.walk(t, "/users", nil)
		require.NoError(t, err)
		requireComplete(t, b, sim.Users, seen)
		require.Positive(t, wr.Statuses[429])
		require.Equal(t, b.sim.RequestCounts("acme"), wr.Statuses)
	})
	t.Run("429 without Retry-After backs off", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.CustomerSpec{Users: 60}, sim.Faults{Behaviour: sim.Behaviour{RateLimit: &sim.RateLimit{PerMinute: 1200, Burst: 1, RetryAfter: "none", NoHeaders: true, EmptyBody: true}}},
			vomo.WithRetries(5, 50))
		seen, wr, err := b.walk(t, "/users", nil)
		require.NoError(t, err)
		requireComplete(t, b, sim.Users, seen)
		require.Positive(t, wr.Throttled)
	})
	t.Run("storm outlasts the budget", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.CustomerSpec{Users: 30}, sim.Faults{Behaviour: sim.Behaviour{Storm: &sim.Storm{For: sim.Duration(time.Hour), RetryAfter: "zero"}}},
			vomo.WithRetries(5, 3))
		_, wr, err := b.walk(t, "/users", nil)
		require.ErrorIs(t, err, vomo.ErrRateLimited)
		require.Equal(t, map[int]int{429: 4}, wr.Statuses)
		require.NotEmpty(t, wr.NextURL)
	})
	t.Run("storm ends", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.CustomerSpec{Users: 30}, sim.Faults{Behaviour: sim.Behaviour{Storm: &sim.Storm{For: sim.Duration(300 * time.Millisecond), RetryAfter: "none"}}},
			vomo.WithRetries(5, 100), vomo.WithBackoff(20*time.Millisecond, 50*time.Millisecond))
		seen, wr, err := b.walk(t, "/users", nil)
		require.NoError(t, err)
		requireComplete(t, b, sim.Users, seen)
		require.Positive(t, wr.Statuses[429])
	})
	t.Run("Retry-After over the cap", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.CustomerSpec{Users: 30}, sim.Faults{Behaviour: sim.Behaviour{Storm: &sim.Storm{For: sim.Duration(time.Hour)}}},
			vomo.WithRetryAfterCap(time.Second))
		_, wr, err := b.walk(t, "/users", nil)
		require.ErrorIs(t, err, vomo.ErrRateLimited)
		require.Equal(t, 1, wr.Requests, "no hammering when told to wait an hour")
	})
	t.Run("shared limiter keeps inside the budget", func(t *testing.T) {
		t.Parallel()
		bucket := vomo.NewTokenBucket(1200, 2)
		b := setup(t, sim.CustomerSpec{Users: 90}, sim.Faults{Behaviour: sim.Behaviour{RateLimit: &sim.RateLimit{PerMinute: 1200, Burst: 2}}},
			vomo.WithLimiter(bucket))
		seen, _, err := b.walk(t, "/users", nil)
		require.NoError(t, err)
		requireComplete(t, b, sim.Users, seen)
	})
}

func TestPageFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		pf   []sim.PageFault
	}{
		{"500 twice on page 2", []sim.PageFault{{Page: 2, Kind: "status", Times: 2}}},
		{"503 on page 3", []sim.PageFault{{Page: 3, Kind: "status", Status: 503, Times: 1}}},
		{"reset on page 2", []sim.PageFault{{Page: 2, Kind: "reset", Times: 1}}},
		{"truncated page 3", []sim.PageFault{{Page: 3, Kind: "truncate", Times: 2}}},
		{"timeout on page 2", []sim.PageFault{{Page: 2, Kind: "timeout", Delay: sim.Duration(10 * time.Second), Times: 1}}},
		{"slow pages", []sim.PageFault{{Kind: "slow", Delay: sim.Duration(10 * time.Millisecond)}}},
		{"random 5xx", []sim.PageFault{{Kind: "status", Status: 502, Probability: 0.3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, sim.CustomerSpec{Users: 70}, sim.Faults{Behaviour: sim.Behaviour{PageFaults: tc.pf}},
				vomo.WithRequestTimeout(300*time.Millisecond), vomo.WithRetries(8, 8))
			seen, wr, err := b.walk(t, "/users", nil)
			require.NoError(t, err)
			require.True(t, wr.Trusted, wr.Reason)
			requireComplete(t, b, sim.Users, seen)
		})
	}
	t.Run("persistent 503 gives a typed error and the page to resume", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.CustomerSpec{Users: 70}, sim.Faults{Endpoints: map[string]sim.Behaviour{
			"users": {PageFaults: []sim.PageFault{{Page: 3, Kind: "status", Status: 503}}},
		}}, vomo.WithRetries(2, 2))
		_, wr, err := b.walk(t, "/users", nil)
		require.ErrorIs(t, err, vomo.ErrServer)
		require.Equal(t, 2, wr.Pages)
		require.Contains(t, wr.NextURL, "page=3")
		require.Equal(t, map[int]int{200: 2, 503: 3}, b.sim.RequestCounts("acme"))
		require.NoError(t, b.sim.SetFaults("acme", sim.Faults{}))
		seen := map[string]bool{}
		_, err = b.client.WalkURL(context.Background(), wr.NextURL, func(ctx context.Context, p vomo.Page) error {
			for _, r := range p.Records {
				seen[r.ID] = true
			}
			return nil
		})
		require.NoError(t, err)
		require.Len(t, seen, 70-30, "the resumed walk reads from page 3 on")
	})
}

func TestAuthErrorsNeverRetry(t *testing.T) {
	t.Parallel()
	t.Run("revoked mid-walk", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.CustomerSpec{Users: 60}, sim.Faults{})
		_, err := b.client.Walk(context.Background(), "/users", nil, func(ctx context.Context, p vomo.Page) error {
			if p.Meta.CurrentPage == 2 {
				return b.sim.RevokeToken("acme")
			}
			return nil
		})
		require.ErrorIs(t, err, vomo.ErrUnauthorized)
		require.NotContains(t, err.Error(), token)
		require.Equal(t, map[int]int{200: 2, 401: 1}, b.sim.RequestCounts("acme"))
	})
	t.Run("rotated", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.CustomerSpec{Users: 5}, sim.Faults{})
		require.NoError(t, b.sim.RotateToken("acme", "tok-new"))
		_, _, err := b.walk(t, "/users", nil)
		require.ErrorIs(t, err, vomo.ErrUnauthorized)
		require.Equal(t, map[int]int{401: 1}, b.sim.RequestCounts("acme"))
	})
	t.Run("forbidden endpoint", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.CustomerSpec{Users: 5, Forms: 1}, sim.Faults{Endpoints: map[string]sim.Behaviour{"forms": {Forbidden: true}}})
		_, _, err := b.walk(t, "/forms", nil)
		require.ErrorIs(t, err, vomo.ErrForbidden)
		_, _, err = b.walk(t, "/users", nil)
		require.NoError(t, err, "other endpoints still answer")
		require.Equal(t, map[int]int{403: 1, 200: 1}, b.sim.RequestCounts("acme"))
	})
}

func TestTransient404(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.CustomerSpec{Users: 5}, sim.Faults{Behaviour: sim.Behaviour{Transient404: sim.Duration(30 * time.Second)}})
	id := b.sim.CreateUser("acme")
	_, err := b.client.Get(context.Background(), "/users/"+id)
	require.ErrorIs(t, err, vomo.ErrNotFound, "a just-created id is not visible yet")
	b.clock.Advance(31 * time.Second)
	_, err = b.client.Get(context.Background(), "/users/"+id)
	require.NoError(t, err)
	require.NoError(t, b.sim.DeleteUser("acme", id))
	_, err = b.client.Get(context.Background(), "/users/"+id)
	require.ErrorIs(t, err, vomo.ErrNotFound, "hard deleted: no tombstone")
}

func TestServerClockAndLateWrites(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.CustomerSpec{Users: 20}, sim.Faults{ClockSkew: sim.Duration(-10 * time.Minute)})
	_, wr, err := b.walk(t, "/users", nil)
	require.NoError(t, err)
	require.Equal(t, b.clock.Now().Add(-10*time.Minute).Truncate(time.Second), wr.ServerNow, "server time comes from the Date header")

	// A checkpoint at the newest updated_at seen...
	truth, _ := b.sim.Truth("acme", sim.Users)
	cp := truth[0].UpdatedAt
	for _, r := range truth {
		if r.UpdatedAt.After(cp) {
			cp = r.UpdatedAt
		}
	}
	b.clock.Advance(time.Minute)
	id := truth[3].ID
	require.NoError(t, b.sim.LateUpdate("acme", sim.Users, id, time.Hour*24*800))
	// ...misses a late write without an overlap window, and catches it with one.
	seen, _, err := b.walk(t, "/users", url.Values{"updated_after": {cp.Format(time.RFC3339)}})
	require.NoError(t, err)
	require.NotContains(t, seen, id)
	seen, _, err = b.walk(t, "/users", url.Values{"updated_after": {cp.Add(-24 * 801 * time.Hour).Format(time.RFC3339)}})
	require.NoError(t, err)
	require.Contains(t, seen, id)
}

func TestChangesWhileWalking(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.CustomerSpec{Users: 300}, sim.Faults{Behaviour: sim.Behaviour{Order: "updated_at"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, b.sim.StartChanges(ctx, "acme", sim.Rates{Creates: 200, Updates: 200, Deletes: 50}))
	// Walk repeatedly until a walk is untrusted: changes at these rates
	// must be noticed, and no walk may fail.
	require.Eventually(t, func() bool {
		_, wr, err := b.walk(t, "/users", nil)
		require.NoError(t, err)
		return !wr.Trusted
	}, 20*time.Second, time.Millisecond)
}
