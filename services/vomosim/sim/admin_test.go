package sim_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/services/vomosim/sim"
)

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var sb strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&sb)
	return resp.StatusCode, sb.String()
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, 5)
	u := b.srv.URL + "/admin/customers"
	code, body := do(t, "POST", u, `{"id":"beta","token":"tok-beta","users":7}`)
	require.Equal(t, http.StatusCreated, code, body)
	code, _ = do(t, "POST", u, `{"id":"beta","token":"tok-x"}`)
	require.Equal(t, http.StatusConflict, code)
	code, body = do(t, "GET", u, "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `["acme","beta"]`, body)

	code, body = do(t, "POST", u+"/beta/users", "")
	require.Equal(t, http.StatusCreated, code, body)
	var created struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(body), &created))
	code, _ = do(t, "POST", u+"/beta/users/"+created.ID+"/update", "")
	require.Equal(t, http.StatusNoContent, code)
	code, _ = do(t, "POST", u+"/beta/users/"+created.ID+"/silent", "")
	require.Equal(t, http.StatusNoContent, code)
	code, _ = do(t, "DELETE", u+"/beta/users/10001", "")
	require.Equal(t, http.StatusNoContent, code)
	code, _ = do(t, "DELETE", u+"/beta/users/10001", "")
	require.Equal(t, http.StatusNotFound, code)

	code, body = do(t, "GET", u+"/beta/truth/users", "")
	require.Equal(t, http.StatusOK, code)
	lines := strings.Split(strings.TrimSpace(body), "\n")
	require.Len(t, lines, 7)
	var rec sim.TruthRecord
	require.NoError(t, json.Unmarshal([]byte(lines[6]), &rec))
	require.Equal(t, created.ID, rec.ID)
	require.NotEmpty(t, rec.Fields)

	code, _ = do(t, "PUT", u+"/beta/faults", `{"clock_skew":"-1m","order":"updated_at","wire":{"string_ids":true}}`)
	require.Equal(t, http.StatusNoContent, code)
	f, err := b.sim.GetFaults("beta")
	require.NoError(t, err)
	require.Equal(t, sim.Duration(-time.Minute), f.ClockSkew)
	require.True(t, f.Wire.StringIDs)

	code, _ = do(t, "PUT", u+"/beta/token", `{"token":"tok-beta-2"}`)
	require.Equal(t, http.StatusNoContent, code)
	resp, _ := get(t, b.srv.URL+"/v1/users", "tok-beta")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = get(t, b.srv.URL+"/v1/users", "tok-beta-2")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	code, body = do(t, "GET", u+"/beta/requests", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"by_status":{"200":1,"401":1},"by_token":{"tok-beta":{"401":1},"tok-beta-2":{"200":1}}}`, body)
}

func TestChanges(t *testing.T) {
	t.Parallel()
	s := sim.New(sim.Options{Seed: 3})
	require.NoError(t, s.AddCustomer(sim.CustomerSpec{ID: "c", Token: "t", Users: 50}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, s.StartChanges(ctx, "c", sim.Rates{Creates: 200, Deletes: 20}))
	require.Eventually(t, func() bool {
		n, _ := s.Count("c", sim.Users)
		return n >= 60
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, s.StopChanges("c"))
}
