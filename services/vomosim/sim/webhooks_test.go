package sim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/services/vomosim/sim"
)

type receiver struct {
	mu     sync.Mutex
	events []map[string]any
	valid  []bool
	fail   atomic.Int64 // answer 500 to this many more requests
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if rc.fail.Add(-1) >= 0 {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	var ev map[string]any
	_ = json.Unmarshal(body, &ev)
	rc.mu.Lock()
	rc.events = append(rc.events, ev)
	rc.valid = append(rc.valid, r.Header.Get("vomo-signature") == sim.Sign("whsec", body))
	rc.mu.Unlock()
}

func (rc *receiver) got() ([]map[string]any, []bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]map[string]any(nil), rc.events...), append([]bool(nil), rc.valid...)
}

func hookSetup(t *testing.T, w sim.Webhooks) (*testBundle, *receiver) {
	t.Helper()
	b := setup(t, 5)
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	w.URL, w.Secret = srv.URL, "whsec"
	require.NoError(t, b.sim.SetWebhooks("acme", &w))
	t.Cleanup(func() { _ = b.sim.SetWebhooks("acme", nil) })
	return b, rc
}

func TestWebhooksDelivered(t *testing.T) {
	t.Parallel()
	b, rc := hookSetup(t, sim.Webhooks{Retries: []sim.Duration{sim.Duration(10 * time.Millisecond)}})
	rc.fail.Store(1) // the first attempt fails and is retried
	id := b.sim.CreateUser("acme")
	require.NoError(t, b.sim.UpdateUser("acme", id))
	require.NoError(t, b.sim.DeleteUser("acme", id))
	require.Eventually(t, func() bool { ev, _ := rc.got(); return len(ev) == 3 }, 10*time.Second, 5*time.Millisecond)
	events, valid := rc.got()
	types := map[string]bool{}
	for i, ev := range events {
		require.True(t, valid[i], "signed with the secret")
		types[ev["type"].(string)] = true
		require.EqualValues(t, 1, ev["organization_id"])
		require.NotEmpty(t, ev["data"].(map[string]any)["updated_at"])
	}
	require.Equal(t, map[string]bool{"user.created": true, "user.updated": true, "user.deleted": true}, types)
	st, err := b.sim.WebhookStatsOf("acme")
	require.NoError(t, err)
	require.Equal(t, sim.WebhookStats{Events: 3, Attempts: 4, Delivered: 3}, st)
}

func TestWebhooksUnreliable(t *testing.T) {
	t.Parallel()
	t.Run("duplicates and bad signatures", func(t *testing.T) {
		t.Parallel()
		b, rc := hookSetup(t, sim.Webhooks{Duplicate: 1, BadSignature: 1})
		b.sim.CreateUser("acme")
		require.Eventually(t, func() bool { ev, _ := rc.got(); return len(ev) == 2 }, 10*time.Second, 5*time.Millisecond)
		_, valid := rc.got()
		require.Equal(t, []bool{false, false}, valid)
	})
	t.Run("dropped", func(t *testing.T) {
		t.Parallel()
		b, rc := hookSetup(t, sim.Webhooks{Drop: 1})
		b.sim.CreateUser("acme")
		st, err := b.sim.WebhookStatsOf("acme")
		require.NoError(t, err)
		require.Equal(t, sim.WebhookStats{Events: 1, Dropped: 1}, st)
		ev, _ := rc.got()
		require.Empty(t, ev)
	})
	t.Run("out of order", func(t *testing.T) {
		t.Parallel()
		b, rc := hookSetup(t, sim.Webhooks{Reorder: 1, Events: []string{"user.created"}})
		first := b.sim.CreateUser("acme")
		require.NoError(t, b.sim.UpdateUser("acme", first), "filtered out: not subscribed")
		st, err := b.sim.WebhookStatsOf("acme")
		require.NoError(t, err)
		require.Equal(t, sim.WebhookStats{Events: 1}, st, "the first event is held back")
		second := b.sim.CreateUser("acme")
		require.Eventually(t, func() bool { ev, _ := rc.got(); return len(ev) == 2 }, 10*time.Second, 5*time.Millisecond)
		ev, _ := rc.got()
		require.ElementsMatch(t, []string{first, second}, []string{jsonID(ev[0]), jsonID(ev[1])})
	})
}

func jsonID(ev map[string]any) string {
	b, _ := json.Marshal(ev["data"].(map[string]any)["id"])
	return string(b)
}
