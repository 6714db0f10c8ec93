package poll_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/apiclient"
	"github.com/vomosync/vomosync/pkg/checkpoint"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/pkg/natstest"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/pkg/secrets"
	"github.com/vomosync/vomosync/pkg/vomo"
	"github.com/vomosync/vomosync/services/poller/poll"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

type bundle struct {
	ctx    context.Context
	pool   *pgxpool.Pool
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	sim    *sim.Sim
	store  *customer.Store
	cycler *poll.Cycler
	url    string
}

func setup(t *testing.T, users int) *bundle {
	t.Helper()
	return setupWith(t, users, sim.Options{Seed: 7})
}

// setupWith is setup with the simulator's options (a clock of the test's own).
func setupWith(t *testing.T, users int, opts sim.Options) *bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	db := pgtest.New(t)
	natsURL, _ := natstest.Start(t)
	nc, js, err := messaging.Connect(ctx, natsURL, "test", 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	require.NoError(t, messaging.EnsureStreams(ctx, js, messaging.Settings{Replicas: 1, DuplicateWindow: time.Minute, MaxAge: time.Hour, MaxBytes: -1}))
	kv, err := messaging.EnsureCheckpointBucket(ctx, js, 1)
	require.NoError(t, err)
	s := sim.New(opts)
	require.NoError(t, s.AddCustomer(sim.CustomerSpec{ID: "acme", Token: "tok-acme", Users: users}))
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	kb := make([]byte, 32)
	_, _ = rand.Read(kb)
	keys, err := secrets.NewKeyring(base64.StdEncoding.EncodeToString(kb))
	require.NoError(t, err)
	store := customer.NewStore(db.Pool, keys)
	require.NoError(t, store.Add(ctx, customer.New{ID: "acme", APIBaseURL: srv.URL + "/v1", Token: "tok-acme",
		Settings: customer.Settings{Settle: customer.Duration(time.Millisecond), BudgetPerMinute: -1}}))
	return &bundle{ctx: ctx, pool: db.Pool, js: js, kv: kv, sim: s, store: store, url: srv.URL,
		cycler: &poll.Cycler{DB: db.Pool, Backup: &checkpoint.Backup{KV: kv}, Log: zerolog.Nop(), FlushEvery: 5}}
}

func (b *bundle) cycle(t *testing.T) *poll.Result {
	t.Helper()
	res, err := b.cycleErr(b.ctx)
	require.NoError(t, err)
	return res
}

func (b *bundle) cycleErr(ctx context.Context) (*poll.Result, error) {
	cust, err := b.store.Get(b.ctx, "acme")
	if err != nil {
		return nil, err
	}
	tok, err := b.store.Token(b.ctx, "acme")
	if err != nil {
		return nil, err
	}
	cl, err := apiclient.New(b.pool, cust, tok, nil, vomo.WithBackoff(5*time.Millisecond, 50*time.Millisecond),
		vomo.WithRequestTimeout(2*time.Second))
	if err != nil {
		return nil, err
	}
	return b.cycler.Run(ctx, poll.Request{Customer: cust, Resource: "users", Source: cl, Sink: poll.NewJetStreamSink(b.js)})
}

// streamIDs returns the record ids of every stored change event.
func (b *bundle) streamIDs(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for k := range b.streamVersions(t) {
		out[k[:strings.IndexByte(k, '@')]]++
	}
	return out
}

// streamVersions returns "id@updated_at" of every stored change event.
func (b *bundle) streamVersions(t *testing.T) map[string]bool {
	t.Helper()
	st, err := b.js.Stream(b.ctx, messaging.StreamChanges)
	require.NoError(t, err)
	cons, err := st.OrderedConsumer(b.ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	info, err := st.Info(b.ctx)
	require.NoError(t, err)
	out := map[string]bool{}
	for range info.State.Msgs {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(t, err)
		ev, err := messaging.Decode(m.Data())
		require.NoError(t, err)
		out[ev.GetRecordId()+"@"+ev.GetSourceUpdatedAt().AsTime().UTC().Format(time.RFC3339)] = true
	}
	return out
}

func (b *bundle) position(t *testing.T) time.Time {
	t.Helper()
	cp, err := checkpoint.Get(b.ctx, b.pool, "acme", "users")
	require.NoError(t, err)
	return cp.Position
}

// requireCheckpointCovered: every source record at or before the checkpoint
// was published (invariant 1).
func (b *bundle) requireCheckpointCovered(t *testing.T) {
	t.Helper()
	pos := b.position(t)
	published := b.streamIDs(t)
	truth, err := b.sim.Truth("acme", "users")
	require.NoError(t, err)
	for _, r := range truth {
		if !r.UpdatedAt.After(pos) {
			require.Contains(t, published, r.ID, "record %s (updated %s) is behind checkpoint %s but was never published", r.ID, r.UpdatedAt, pos)
		}
	}
}

func TestBackfillThenIncremental(t *testing.T) {
	t.Parallel()
	b := setup(t, 200)
	res := b.cycle(t)
	require.Equal(t, poll.OutcomeSuccess, res.Outcome)
	require.Equal(t, "backfill", res.Origin)
	require.Equal(t, 200, res.RecordsPublished)
	require.Len(t, b.streamIDs(t), 200)
	b.requireCheckpointCovered(t)
	before := b.position(t)
	require.True(t, before.After(checkpoint.Epoch))

	id := b.sim.CreateUser("acme")
	time.Sleep(1100 * time.Millisecond) // updated_at has 1-second precision
	res = b.cycle(t)
	require.Equal(t, poll.OutcomeSuccess, res.Outcome)
	require.Equal(t, "poll", res.Origin)
	require.Contains(t, b.streamIDs(t), id)
	require.Less(t, res.RecordsSeen, 200, "incremental cycles read only the window")
	b.requireCheckpointCovered(t)

	var rows int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM vomosync.poll_cycles WHERE outcome = 'success' AND trace_id <> ''`).Scan(&rows))
	require.Equal(t, 2, rows)
	pos, _, err := (&checkpoint.Backup{KV: b.kv}).Get(b.ctx, "acme", "users")
	require.NoError(t, err)
	require.Equal(t, b.position(t), pos.UTC(), "backup follows the primary")
}

// A cycle cancelled mid-walk (a poller killed mid-cycle) leaves the
// checkpoint where it was and records itself as interrupted; the next cycle
// completes the window.
func TestInterruptedCycleKeepsCheckpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, 600)
	ctx, cancel := context.WithCancel(b.ctx)
	b.cycler.FlushEvery = 1000
	go func() {
		time.Sleep(5 * time.Millisecond)
		cancel()
	}()
	res, err := b.cycleErr(ctx)
	require.Error(t, err)
	require.Equal(t, poll.OutcomeInterrupted, res.Outcome)
	require.Equal(t, checkpoint.Epoch, b.position(t))
	var outcome string
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT outcome FROM vomosync.poll_cycles WHERE id = $1`, res.ID).Scan(&outcome))
	require.Equal(t, "interrupted", outcome)

	res = b.cycle(t)
	require.Equal(t, poll.OutcomeSuccess, res.Outcome)
	require.Len(t, b.streamIDs(t), 600)
	b.requireCheckpointCovered(t)
}

func TestLostCheckpointStrategies(t *testing.T) {
	t.Parallel()
	for _, strategy := range []string{customer.RecoverRestoreBackup, customer.RecoverEpoch, customer.RecoverWindow, customer.RecoverHold} {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			b := setup(t, 30)
			b.cycle(t)
			synced := b.position(t)
			cust, err := b.store.Get(b.ctx, "acme")
			require.NoError(t, err)
			st := cust.Settings
			st.Recovery.Strategy = strategy
			require.NoError(t, b.store.SetSettings(b.ctx, "acme", cust.Resources, st))
			_, err = b.pool.Exec(b.ctx, `DELETE FROM vomosync.checkpoints WHERE customer_id = 'acme'`)
			require.NoError(t, err)

			res, err := b.cycleErr(b.ctx)
			var got string
			require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT strategy FROM vomosync.checkpoint_decisions WHERE customer_id = 'acme'`).Scan(&got))
			require.Equal(t, strategy, got, "the decision is recorded")
			switch strategy {
			case customer.RecoverHold:
				require.ErrorIs(t, err, poll.ErrHeld)
				var paused bool
				require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT paused FROM vomosync.schedules WHERE customer_id = 'acme' AND kind = 'poll'`).Scan(&paused))
				require.True(t, paused)
			case customer.RecoverRestoreBackup:
				require.NoError(t, err)
				require.Equal(t, synced, res.CheckpointBefore)
			case customer.RecoverEpoch:
				require.NoError(t, err)
				require.Equal(t, "backfill", res.Origin)
			case customer.RecoverWindow:
				require.NoError(t, err)
				require.WithinDuration(t, time.Now().Add(-7*24*time.Hour), res.CheckpointBefore, time.Minute)
			}
		})
	}
}
