package webhook_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/pkg/secrets"
	"github.com/vomosync/vomosync/services/poller/webhook"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

type testBundle struct {
	kek   string        // the keyring's KEK (base64)
	owner *pgxpool.Pool // to look at the result
	h     *webhook.Handler
	srv   *httptest.Server
}

// setup: acme (secret "acme-secret") and globex (secret "globex-secret"),
// polls due in an hour, the handler connected as the application role.
func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	kb := make([]byte, 32)
	_, _ = rand.Read(kb)
	keys, err := secrets.NewKeyring(base64.StdEncoding.EncodeToString(kb))
	require.NoError(t, err)
	store := customer.NewStore(db.Pool, keys)
	for _, id := range []string{"acme", "globex"} {
		require.NoError(t, store.Add(ctx, customer.New{ID: id, Token: "t-" + id, Resources: []string{"users", "projects"}}))
	}
	app := db.AppPool(t, false)
	for _, id := range []string{"acme", "globex"} {
		require.NoError(t, webhook.SetSecret(ctx, app, keys, id, id+"-secret"))
	}
	_, err = db.Pool.Exec(ctx, `UPDATE vomosync.schedules SET next_run_at = now() + interval '1 hour'`)
	require.NoError(t, err)
	h := &webhook.Handler{DB: app, Keys: keys, MaxBody: 4 << 10, ReplayWindow: time.Hour, Log: zerolog.Nop()}
	mux := http.NewServeMux()
	h.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &testBundle{kek: base64.StdEncoding.EncodeToString(kb), owner: db.Pool, h: h, srv: srv}
}

func (b *testBundle) post(t *testing.T, cust string, body []byte, sig string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/webhooks/vomo/"+cust, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set(webhook.SignatureHeader, sig)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// due lists the customer's resources whose poll is due now.
func (b *testBundle) due(t *testing.T, cust string) []string {
	t.Helper()
	rows, err := b.owner.Query(context.Background(), `SELECT resource FROM vomosync.schedules
		WHERE customer_id = $1 AND kind = 'poll' AND next_run_at <= now() ORDER BY resource`, cust)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r string
		require.NoError(t, rows.Scan(&r))
		out = append(out, r)
	}
	return out
}

func (b *testBundle) reset(t *testing.T) {
	_, err := b.owner.Exec(context.Background(), `UPDATE vomosync.schedules SET next_run_at = now() + interval '1 hour'`)
	require.NoError(t, err)
}

func TestSignedWebhookMakesThePollDue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := []byte(`{"type":"user.updated","organization_id":1,"data":{"id":8205,"updated_at":"2025-11-19T10:15:00+00:00"}}`)
	require.Equal(t, http.StatusNoContent, b.post(t, "acme", body, sim.Sign("acme-secret", body)))
	require.Equal(t, []string{"users"}, b.due(t, "acme"))
	require.Empty(t, b.due(t, "globex"), "only the signer's schedule")

	// A replay of the same delivery has no second effect.
	b.reset(t)
	require.Equal(t, http.StatusNoContent, b.post(t, "acme", body, sim.Sign("acme-secret", body)))
	require.Empty(t, b.due(t, "acme"), "replayed body within the window")
	out, err := b.h.Deliver(context.Background(), "acme", body, sim.Sign("acme-secret", body))
	require.NoError(t, err)
	require.Equal(t, webhook.Replayed, out)

	// A different event (a newer version) is a new delivery.
	next := []byte(strings.Replace(string(body), "10:15:00", "10:16:00", 1))
	require.Equal(t, http.StatusNoContent, b.post(t, "acme", next, sim.Sign("acme-secret", next)))
	require.Equal(t, []string{"users"}, b.due(t, "acme"))

	// Types that name no polled resource are accepted without effect.
	b.reset(t)
	org := []byte(`{"type":"organization.updated","data":{"id":1}}`)
	out, err = b.h.Deliver(context.Background(), "acme", org, sim.Sign("acme-secret", org))
	require.NoError(t, err)
	require.Equal(t, webhook.Ignored, out)
	require.Empty(t, b.due(t, "acme"))
}

func TestUnsignedOrForeignWebhooksAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := []byte(`{"type":"project.updated","data":{"id":1}}`)
	for name, c := range map[string]struct{ cust, sig string }{
		"no signature":            {"acme", ""},
		"not hex":                 {"acme", "zz"},
		"short":                   {"acme", "abcd"},
		"wrong secret":            {"acme", sim.Sign("other", body)},
		"globex's secret to acme": {"acme", sim.Sign("globex-secret", body)},
		"acme's secret to globex": {"globex", sim.Sign("acme-secret", body)},
		"unknown customer":        {"initech", sim.Sign("acme-secret", body)},
		"bad customer id":         {"ACME..x", sim.Sign("acme-secret", body)},
	} {
		require.Equal(t, http.StatusUnauthorized, b.post(t, c.cust, body, c.sig), name)
	}
	// A signature over other bytes (whitespace changed) does not verify:
	// the raw body is what is signed.
	require.Equal(t, http.StatusUnauthorized, b.post(t, "acme", append(body, ' '), sim.Sign("acme-secret", body)))
	require.Empty(t, b.due(t, "acme"))
	require.Empty(t, b.due(t, "globex"))
	var n int
	require.NoError(t, b.owner.QueryRow(context.Background(), `SELECT count(*) FROM vomosync.webhook_deliveries`).Scan(&n))
	require.Zero(t, n, "refused deliveries leave nothing behind")

	// The cap applies before the body is read or hashed.
	big := bytes.Repeat([]byte("x"), 8<<10)
	require.Equal(t, http.StatusRequestEntityTooLarge, b.post(t, "acme", big, sim.Sign("acme-secret", big)))
	require.Equal(t, http.StatusMethodNotAllowed, func() int {
		resp, err := http.Get(b.srv.URL + "/webhooks/vomo/acme")
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}())
}

// The simulator delivers real webhooks (each duplicated, some with a wrong
// signature): every valid delivery makes the poll due, and duplicates and
// forgeries do nothing more.
func TestWebhooksFromTheSimulator(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := sim.New(sim.Options{Seed: 1})
	require.NoError(t, s.AddCustomer(sim.CustomerSpec{ID: "acme", Token: "t-acme", Users: 5, Projects: 2}))
	require.NoError(t, s.SetWebhooks("acme", &sim.Webhooks{URL: b.srv.URL + "/webhooks/vomo/acme", Secret: "acme-secret",
		Duplicate: 1, Retries: []sim.Duration{sim.Duration(10 * time.Millisecond)}}))
	t.Cleanup(func() { _ = s.SetWebhooks("acme", nil) })

	id := s.CreateUser("acme")
	require.Eventually(t, func() bool {
		st, err := s.WebhookStatsOf("acme")
		require.NoError(t, err)
		return st.Delivered == 2
	}, 10*time.Second, 20*time.Millisecond, "the event and its duplicate, both answered 2xx")
	require.Equal(t, []string{"users"}, b.due(t, "acme"))
	var n int
	require.NoError(t, b.owner.QueryRow(context.Background(), `SELECT count(*) FROM vomosync.webhook_deliveries WHERE customer_id = 'acme'`).Scan(&n))
	require.Equal(t, 1, n, "the duplicate was recognised")

	// Forged deliveries are refused; VOMO retries them and gives up.
	b.reset(t)
	require.NoError(t, s.SetWebhooks("acme", &sim.Webhooks{URL: b.srv.URL + "/webhooks/vomo/acme", Secret: "acme-secret",
		BadSignature: 1, Retries: []sim.Duration{sim.Duration(10 * time.Millisecond)}}))
	require.NoError(t, s.UpdateUser("acme", id))
	require.Eventually(t, func() bool {
		st, err := s.WebhookStatsOf("acme")
		require.NoError(t, err)
		return st.Dropped == 1 && st.Attempts == 4 // counters are the customer's, across configurations
	}, 10*time.Second, 20*time.Millisecond)
	require.Empty(t, b.due(t, "acme"))
}

func FuzzEventOf(f *testing.F) {
	f.Add([]byte(`{"type":"user.updated","data":{"id":1}}`))
	f.Add([]byte(`{"type":"form_completion.created","type":"x"}`))
	f.Add([]byte(`{"type":`))
	f.Fuzz(func(t *testing.T, body []byte) {
		typ, res := webhook.EventOf(body)
		if res != "" && !customer.KnownResource(res) {
			t.Fatalf("type %q maps to unknown resource %q", typ, res)
		}
	})
}

func TestServerRunsUntilCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&webhook.Server{Handler: b.h}).Serve(ctx, ln) }()
	body := []byte(`{"type":"project.created","data":{"id":3}}`)
	req, err := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/webhooks/vomo/acme", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set(webhook.SignatureHeader, sim.Sign("acme-secret", body))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, []string{"projects"}, b.due(t, "acme"))
	cancel()
	require.NoError(t, <-done)

	require.NoError(t, webhook.Settings{}.Validate(), "off by default")
	require.ErrorContains(t, webhook.Settings{Addr: "8082", MaxBody: 1 << 20, ReplayWindow: time.Hour}.Validate(), "WEBHOOK_ADDR")
	require.ErrorContains(t, webhook.Settings{Addr: ":8082", MaxBody: 1 << 30, ReplayWindow: time.Hour}.Validate(), "WEBHOOK_MAX_BODY")
}

// After a KEK rotation and a rewrap, the secret still verifies with only
// the new key configured; a secret copied to another customer never does.
func TestSecretsRotateAndStayBound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	body := []byte(`{"type":"group.updated","data":{"id":9}}`)

	_, err := b.owner.Exec(ctx, `UPDATE vomosync.webhook_secrets g SET ciphertext = a.ciphertext, wrapped_key = a.wrapped_key
		FROM vomosync.webhook_secrets a WHERE a.customer_id = 'acme' AND g.customer_id = 'globex'`)
	require.NoError(t, err)
	_, err = b.h.Deliver(ctx, "globex", body, sim.Sign("acme-secret", body))
	require.Error(t, err, "acme's sealed secret copied to globex does not open")
	_, err = b.owner.Exec(ctx, `DELETE FROM vomosync.webhook_secrets WHERE customer_id = 'globex'`)
	require.NoError(t, err)

	nb := make([]byte, 32)
	_, _ = rand.Read(nb)
	newKEK := base64.StdEncoding.EncodeToString(nb)
	rotating, err := secrets.NewKeyring(newKEK, b.kek)
	require.NoError(t, err)
	n, err := webhook.RewrapSecrets(ctx, b.owner, rotating)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	onlyNew, err := secrets.NewKeyring(newKEK)
	require.NoError(t, err)
	b.h.Keys = onlyNew
	out, err := b.h.Deliver(ctx, "acme", body, sim.Sign("acme-secret", body))
	require.NoError(t, err)
	require.Equal(t, webhook.Triggered, out)
}
