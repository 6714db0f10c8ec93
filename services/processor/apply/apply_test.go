package apply_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/pgtest"
	"github.com/vomosync/vomosync/pkg/secrets"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
	"github.com/vomosync/vomosync/services/processor/apply"
	"github.com/vomosync/vomosync/services/processor/destination"
)

func event(id string, at time.Time, record string) apply.Message {
	ev := &eventsv1.ChangeEvent{CustomerId: "acme", Resource: "users", RecordId: id,
		Operation: eventsv1.Operation_OPERATION_UPSERT, SourceUpdatedAt: timestamppb.New(at),
		Record: []byte(record), Origin: eventsv1.Origin_ORIGIN_REPLAY}
	return apply.Message{Ctx: context.Background(), Event: ev, Subject: "vomosync.changes.acme.users", Attempt: 1}
}

// Replay runs the applier against the dry-run destination in a transaction
// that is rolled back: it shows what would run and changes nothing.
func TestDryRunReplayChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	keys, err := secrets.NewKeyring(base64.StdEncoding.EncodeToString(kek))
	require.NoError(t, err)
	store := customer.NewStore(db.Pool, keys)
	require.NoError(t, store.Add(ctx, customer.New{ID: "acme", Token: "t"}))
	t0 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)

	live := &apply.Applier{DB: db.Pool, Customers: store, Destinations: &destination.Resolver{DB: db.Pool}}
	res, err := live.Apply(ctx, []apply.Message{event("1", t0, `{"id":1,"first_name":"a"}`)})
	require.NoError(t, err)
	require.Equal(t, apply.Applied, res[0].Outcome)
	require.True(t, res[0].FirstSeen)

	dry := &destination.DryRun{}
	replay := &apply.Applier{DB: db.Pool, Customers: store, DryRun: true,
		Destinations: &destination.Resolver{DryRun: dry, ForceDryRun: true}}
	res, err = replay.Apply(ctx, []apply.Message{
		event("1", t0, `{"id":1,"first_name":"a"}`),                // already applied
		event("1", t0.Add(time.Hour), `{"id":1,"first_name":"b"}`), // newer: would apply
		event("2", t0, `{"id":2}`),                                 // new
	})
	require.NoError(t, err)
	require.Equal(t, apply.SkippedStale, res[0].Outcome, "superseded in the batch")
	require.Equal(t, apply.Applied, res[1].Outcome)
	require.Equal(t, []string{"first_name"}, res[1].ChangedFields)
	require.Equal(t, apply.Applied, res[2].Outcome)
	require.True(t, res[2].FirstSeen)
	require.Len(t, dry.Ops(), 2)

	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM vomosync.sync_state) + (SELECT count(*) FROM vomosync.audit_log)
		+ (SELECT count(*) FROM vomo_dest.users)`).Scan(&n))
	require.Equal(t, 3, n, "only the live run's state, audit row and destination row")
	var first string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT record->>'first_name' FROM vomosync.sync_state WHERE record_id = '1'`).Scan(&first))
	require.Equal(t, "a", first)
}
