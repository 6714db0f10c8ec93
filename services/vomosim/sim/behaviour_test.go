package sim_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/services/vomosim/sim"
)

func TestRateLimitHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t, 3)
	require.NoError(t, b.sim.SetFaults("acme", sim.Faults{Behaviour: sim.Behaviour{RateLimit: &sim.RateLimit{PerMinute: 6, Burst: 2}}}))
	for i, want := range []int{200, 200, 429} {
		resp, body := get(t, b.srv.URL+"/v1/users", "tok-acme")
		require.Equal(t, want, resp.StatusCode, "request %d", i)
		require.Equal(t, "6", resp.Header.Get("X-RateLimit-Limit"))
		if want == 429 {
			require.JSONEq(t, `{"message":"Too Many Requests"}`, string(body))
			ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			require.NoError(t, err)
			require.InDelta(t, 10, ra, 1, "one token every 10s")
			require.Equal(t, "0", resp.Header.Get("X-RateLimit-Remaining"))
			require.NotEmpty(t, resp.Header.Get("X-RateLimit-Reset"))
		}
	}
	// Per-endpoint override: its own bucket, no headers, Retry-After as a date.
	require.NoError(t, b.sim.SetFaults("acme", sim.Faults{Endpoints: map[string]sim.Behaviour{
		"users/{id}": {RateLimit: &sim.RateLimit{PerMinute: 1, Burst: 1, RetryAfter: "date", NoHeaders: true, EmptyBody: true}},
	}}))
	resp, _ := get(t, b.srv.URL+"/v1/users/10001", "tok-acme")
	require.Equal(t, 200, resp.StatusCode)
	resp, body := get(t, b.srv.URL+"/v1/users/10001", "tok-acme")
	require.Equal(t, 429, resp.StatusCode)
	require.Empty(t, body)
	require.Empty(t, resp.Header.Get("X-RateLimit-Limit"))
	_, err := http.ParseTime(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	resp, _ = get(t, b.srv.URL+"/v1/users", "tok-acme")
	require.Equal(t, 200, resp.StatusCode, "the list is not limited")
}

func TestFaultValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	for _, f := range []sim.Faults{
		{Behaviour: sim.Behaviour{Order: "name"}},
		{Behaviour: sim.Behaviour{Wire: sim.WireFormat{TimeLayout: "unix"}}},
		{Behaviour: sim.Behaviour{PageFaults: []sim.PageFault{{Kind: "explode"}}}},
		{Endpoints: map[string]sim.Behaviour{"users": {Storm: &sim.Storm{RetryAfter: "later"}}}},
	} {
		require.Error(t, b.sim.SetFaults("acme", f))
	}
}

func detail(t *testing.T, b *testBundle, path string) map[string]any {
	t.Helper()
	resp, body := get(t, b.srv.URL+path, "tok-acme")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var d struct{ Data map[string]any }
	require.NoError(t, json.Unmarshal(body, &d))
	return d.Data
}

func TestDetailChangesDoNotAdvanceUpdatedAt(t *testing.T) {
	t.Parallel()
	b := setup(t, 30)
	require.NoError(t, b.sim.AddCustomer(sim.CustomerSpec{ID: "fam", Token: "tok-fam", Users: 40, Projects: 10, Certificates: 3}))
	get := func(path string) map[string]any {
		resp, body := get(t, b.srv.URL+path, "tok-fam")
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		var d struct{ Data map[string]any }
		require.NoError(t, json.Unmarshal(body, &d))
		return d.Data
	}
	before := get("/v1/users/10005")
	for range 3 {
		require.NoError(t, b.sim.TouchDetail("fam", sim.Users, "10005"))
	}
	after := get("/v1/users/10005")
	require.Equal(t, before["updated_at"], after["updated_at"])
	require.NotEqual(t, before["participations"], after["participations"], "participations changed")

	require.NoError(t, b.sim.Leave("fam", "10006"))
	left := get("/v1/users/10006")
	require.Equal(t, "REMOVED", left["membership_status"])
	require.Equal(t, b.now.Format("2006-01-02T15:04:05+00:00"), left["updated_at"])

	p := get("/v1/projects/5001")
	require.NoError(t, b.sim.TouchDetail("fam", sim.Projects, "5001"))
	p2 := get("/v1/projects/5001")
	require.Equal(t, p["updated_at"], p2["updated_at"])
	require.NotEqual(t, p["all_dates"], p2["all_dates"])
}

func TestSharedUpdatedAtAndBulk(t *testing.T) {
	t.Parallel()
	// A clock that moves a second on every reading.
	var ticks atomic.Int64
	t0 := time.Date(2025, 11, 20, 12, 0, 0, 0, time.UTC)
	s := sim.New(sim.Options{Seed: 1, Now: func() time.Time { return t0.Add(time.Duration(ticks.Add(1)) * time.Second) }})
	require.NoError(t, s.AddCustomer(sim.CustomerSpec{ID: "c", Token: "t"}))
	require.NoError(t, s.SetFaults("c", sim.Faults{Behaviour: sim.Behaviour{SharedUpdatedAt: 4}}))
	for range 8 {
		s.CreateUser("c")
	}
	truth, err := s.Truth("c", sim.Users)
	require.NoError(t, err)
	require.Len(t, truth, 8)
	for i := range truth {
		require.Equal(t, truth[i-i%4].UpdatedAt, truth[i].UpdatedAt, "groups of four share a second")
	}
	require.NotEqual(t, truth[0].UpdatedAt, truth[4].UpdatedAt)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, s.SetFaults("c", sim.Faults{}))
	require.NoError(t, s.StartChanges(ctx, "c", sim.Rates{BulkImports: 50, BulkSize: 20}))
	require.Eventually(t, func() bool {
		n, _ := s.Count("c", sim.Users)
		return n >= 28
	}, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, s.StopChanges("c"))
	truth, _ = s.Truth("c", sim.Users)
	for _, r := range truth[8:28] {
		require.Equal(t, truth[8].UpdatedAt, r.UpdatedAt, "a bulk import shares one updated_at")
	}
}

func TestResourceShapes(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	require.NoError(t, b.sim.AddCustomer(sim.CustomerSpec{ID: "org", Token: "tok-org", Users: 20, Projects: 5, Groups: 3, Campaigns: 2, Certificates: 2, Forms: 2, Completions: 6, Chapters: 2}))
	for path, fields := range map[string][]string{
		"/v1/users":         {"type", "id", "first_name", "last_name", "full_name", "email", "address", "phone", "birthday", "gender", "updated_at", "created_at", "user_status", "membership_status", "membership_role"},
		"/v1/projects":      {"type", "id", "name", "project_name", "description", "organization_id", "organization_slug", "anytime", "draft", "created_at", "updated_at", "published_at", "next_date"},
		"/v1/groups":        {"id", "name", "description", "has_subgroups", "parent_id", "updated_at", "created_at"},
		"/v1/campaigns":     {"type", "id", "campaign_name", "description", "url", "organization", "organization_slug", "author_id", "logo_url", "updated_at", "created_at"},
		"/v1/certificates":  {"id", "name", "updated_at", "created_at"},
		"/v1/forms":         {"id", "name", "updated_at", "created_at"},
		"/v1/organizations": {"id", "name", "slug", "type", "description", "created_at", "updated_at", "deleted_at", "groups_moniker", "project_moniker", "campaign_moniker"},
	} {
		resp, body := get(t, b.srv.URL+path, "tok-org")
		require.Equal(t, 200, resp.StatusCode, path)
		var e envelope
		require.NoError(t, json.Unmarshal(body, &e), path)
		require.NotEmpty(t, e.Data, path)
		for _, f := range fields {
			require.Contains(t, e.Data[0], f, path)
		}
	}
	resp, body := get(t, b.srv.URL+"/v1/organizations", "tok-org")
	require.Equal(t, 200, resp.StatusCode)
	var orgs envelope
	require.NoError(t, json.Unmarshal(body, &orgs))
	require.Equal(t, 3, orgs.Meta.Total, "root and two chapters")
	resp, body = get(t, b.srv.URL+"/v1/projects/today", "tok-org")
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, string(body), `{"data":[`)
	resp, _ = get(t, b.srv.URL+"/v1/projects/date/999", "tok-org")
	require.Equal(t, 404, resp.StatusCode)
	resp, _ = get(t, b.srv.URL+"/v1/nothing", "tok-org")
	require.Equal(t, 404, resp.StatusCode)
}
