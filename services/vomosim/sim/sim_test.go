package sim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/services/vomosim/sim"
)

type testBundle struct {
	sim *sim.Sim
	srv *httptest.Server
	now time.Time
}

// setup starts a simulator on a fixed clock with customer acme (40 users).
func setup(t *testing.T, users int) *testBundle {
	t.Helper()
	now := time.Date(2025, 11, 20, 12, 0, 0, 0, time.UTC)
	s := sim.New(sim.Options{Seed: 1, Now: func() time.Time { return now }})
	require.NoError(t, s.AddCustomer(sim.CustomerSpec{ID: "acme", Token: "tok-acme", Users: users}))
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &testBundle{sim: s, srv: srv, now: now}
}

type envelope struct {
	Data  []map[string]any `json:"data"`
	Links struct {
		First, Last string
		Prev, Next  *string
	} `json:"links"`
	Meta struct {
		CurrentPage int    `json:"current_page"`
		From        *int   `json:"from"`
		To          *int   `json:"to"`
		Path        string `json:"path"`
		PerPage     int    `json:"per_page"`
		Total       int    `json:"total"`
		LastPage    int    `json:"last_page"`
	} `json:"meta"`
}

func get(t *testing.T, rawURL, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func list(t *testing.T, rawURL string) envelope {
	t.Helper()
	resp, b := get(t, rawURL, "tok-acme")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	var e envelope
	require.NoError(t, json.Unmarshal(b, &e))
	return e
}

func TestListEnvelope(t *testing.T) {
	t.Parallel()
	b := setup(t, 40)
	e := list(t, b.srv.URL+"/v1/users?updated_after=2000-01-01T00:00:00Z&per_page=100")
	require.Len(t, e.Data, 15, "per_page is ignored")
	require.Equal(t, 1, e.Meta.CurrentPage)
	require.Equal(t, 1, *e.Meta.From)
	require.Equal(t, 15, *e.Meta.To)
	require.Equal(t, 40, e.Meta.Total)
	require.Equal(t, 3, e.Meta.LastPage)
	require.Equal(t, 15, e.Meta.PerPage)
	require.Equal(t, b.srv.URL+"/v1/users", e.Meta.Path)
	require.Nil(t, e.Links.Prev)
	require.NotNil(t, e.Links.Next)
	next, err := url.Parse(*e.Links.Next)
	require.NoError(t, err)
	require.Equal(t, "2", next.Query().Get("page"))
	require.Equal(t, "2000-01-01T00:00:00Z", next.Query().Get("updated_after"), "filters carried")

	seen := map[any]bool{}
	pages := 0
	for u := b.srv.URL + "/v1/users"; ; {
		e := list(t, u)
		pages++
		for _, d := range e.Data {
			require.False(t, seen[d["id"]])
			seen[d["id"]] = true
			require.Equal(t, "user", d["type"])
		}
		if e.Links.Next == nil {
			require.Equal(t, 3, e.Meta.CurrentPage)
			require.Equal(t, 40, *e.Meta.To)
			break
		}
		u = *e.Links.Next
	}
	require.Equal(t, 3, pages)
	require.Len(t, seen, 40)

	past := list(t, b.srv.URL+"/v1/users?page=9")
	require.Empty(t, past.Data)
	require.NotNil(t, past.Data, "data is [] not null")
	require.Nil(t, past.Meta.From)
	require.Nil(t, past.Meta.To)
	require.Equal(t, 40, past.Meta.Total)
	require.Nil(t, past.Links.Next)
	require.NotNil(t, past.Links.Prev)
}

func TestFiltersInclusive(t *testing.T) {
	t.Parallel()
	b := setup(t, 200)
	truth, err := b.sim.Truth("acme", sim.Users)
	require.NoError(t, err)
	require.Len(t, truth, 200)
	pivot := truth[77].UpdatedAt
	want := 0
	for _, r := range truth {
		if !r.UpdatedAt.Before(pivot) {
			want++
		}
	}
	for _, v := range []string{pivot.Format(time.RFC3339), pivot.Format("2006-01-02 15:04:05"), pivot.Add(500 * time.Millisecond).Format(time.RFC3339Nano)} {
		e := list(t, b.srv.URL+"/v1/users?updated_after="+url.QueryEscape(v))
		require.Equal(t, want, e.Meta.Total, v)
	}
	e := list(t, b.srv.URL+"/v1/users?updated_after="+url.QueryEscape(pivot.Format(time.RFC3339))+"&updated_before="+url.QueryEscape(pivot.Format(time.RFC3339)))
	require.GreaterOrEqual(t, e.Meta.Total, 1, "both bounds inclusive")
	for _, d := range e.Data {
		require.Equal(t, pivot.Format("2006-01-02T15:04:05+00:00"), d["updated_at"])
	}

	resp, body := get(t, b.srv.URL+"/v1/users?updated_after=yesterday", "tok-acme")
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	require.Contains(t, string(body), `"updated_after"`)
}

func TestAuthAndDate(t *testing.T) {
	t.Parallel()
	b := setup(t, 3)
	resp, body := get(t, b.srv.URL+"/v1/users", "")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.JSONEq(t, `{"message":"Unauthenticated."}`, string(body))

	require.NoError(t, b.sim.SetFaults("acme", sim.Faults{ClockSkew: sim.Duration(-90 * time.Second)}))
	resp, _ = get(t, b.srv.URL+"/v1/users", "tok-acme")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	date, err := http.ParseTime(resp.Header.Get("Date"))
	require.NoError(t, err)
	require.Equal(t, b.now.Add(-90*time.Second), date.UTC())

	require.NoError(t, b.sim.RotateToken("acme", "tok-acme-2"))
	resp, body = get(t, b.srv.URL+"/v1/users", "tok-acme")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.JSONEq(t, `{"message":"Unauthenticated."}`, string(body))
	resp, _ = get(t, b.srv.URL+"/v1/users", "tok-acme-2")
	require.Equal(t, http.StatusOK, resp.StatusCode)

	require.Equal(t, map[int]int{200: 2, 401: 1}, b.sim.RequestCounts("acme"))
	require.Equal(t, map[int]int{401: 1}, b.sim.UnauthenticatedCounts())
	require.NoError(t, b.sim.RevokeToken("acme"))
	resp, _ = get(t, b.srv.URL+"/v1/users", "tok-acme-2")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestMutationsAndTruth(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	id := b.sim.CreateUser("acme")
	resp, body := get(t, b.srv.URL+"/v1/users/"+id, "tok-acme")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var detail struct {
		Data map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &detail))
	require.Equal(t, id, strconv.FormatFloat(detail.Data["id"].(float64), 'f', -1, 64))
	require.Contains(t, detail.Data, "participations")

	truth, err := b.sim.Truth("acme", sim.Users)
	require.NoError(t, err)
	require.Len(t, truth, 21)
	last := truth[20]
	require.Equal(t, id, last.ID)
	require.Equal(t, b.now, last.UpdatedAt)

	before := string(last.Fields)
	require.NoError(t, b.sim.SilentUpdate("acme", sim.Users, id))
	truth, _ = b.sim.Truth("acme", sim.Users)
	require.Equal(t, b.now, truth[20].UpdatedAt)
	require.NotEqual(t, before, string(truth[20].Fields), "a silent update changes fields only")

	first := truth[0]
	require.NoError(t, b.sim.UpdateUser("acme", first.ID))
	truth, _ = b.sim.Truth("acme", sim.Users)
	require.Equal(t, b.now, truth[0].UpdatedAt)

	require.NoError(t, b.sim.DeleteUser("acme", id))
	resp, body = get(t, b.srv.URL+"/v1/users/"+id, "tok-acme")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.JSONEq(t, `{"message":"Resource not found."}`, string(body))
	require.ErrorIs(t, b.sim.DeleteUser("acme", id), sim.ErrNotFound)
	n, err := b.sim.Count("acme", sim.Users)
	require.NoError(t, err)
	require.Equal(t, 20, n)

	// Fields in truth are exactly what a list serves.
	e := list(t, b.srv.URL+"/v1/users")
	raw, err := json.Marshal(e.Data[0])
	require.NoError(t, err)
	truth, _ = b.sim.Truth("acme", sim.Users)
	require.JSONEq(t, string(truth[0].Fields), string(raw))
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	a, b := setup(t, 100), setup(t, 100)
	ta, err := a.sim.Truth("acme", sim.Users)
	require.NoError(t, err)
	tb, err := b.sim.Truth("acme", sim.Users)
	require.NoError(t, err)
	require.Equal(t, ta, tb)
}
