package processor_test

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/services/processor"
	"github.com/vomosync/vomosync/services/processor/deadletter"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestDefaultConfigIsValid(t *testing.T) {
	t.Parallel()
	cfg := processor.DefaultConfig()
	require.NoError(t, cfg.Validate())
	require.Equal(t, 500, cfg.BatchSize)
	require.Equal(t, 2, cfg.Workers)
	require.Equal(t, 5, cfg.MaxDeliver)
	require.Equal(t, 20*time.Second, cfg.DrainTimeout)
	cc := processor.ConsumerConfig(cfg)
	require.Equal(t, messaging.ConsumerName, cc.Durable)
	require.Equal(t, "vomosync.changes.>", cc.FilterSubject)
	require.Equal(t, 4000, cc.MaxAckPending, "workers × batch × 4")
	require.Empty(t, cc.BackOff, "a BackOff would stretch every NakWithDelay after the first redelivery")
	require.Greater(t, cc.MaxDeliver, cfg.MaxDeliver)
}

// One record's journey: applied to the destination table, sync state and
// one audit row each, with the trace id of the cycle that published it.
func TestAppliesBatchWithStateAuditAndTrace(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.addCustomer("acme", customer.Settings{})
	var evs []ev
	for i := 1; i <= 250; i++ {
		evs = append(evs, user("acme", strconv.Itoa(i), t0.Add(time.Duration(i)*time.Second)))
	}
	evs = append(evs, user("acme", "7", t0.Add(time.Hour), "first_name", "Seven"))
	evs = append(evs, ev{customer: "acme", resource: "users", id: "9", at: t0.Add(time.Hour), del: true})
	trace := b.publish(evs...)
	cfg := testConfig()
	cfg.BatchSize = 500 // one batch: repeats collapse to the newest
	b.start(cfg, processor.Hooks{})
	b.eventually("audit rows", func() bool { return b.auditCount() == len(evs) })

	require.Equal(t, 250, b.count(`SELECT count(*) FROM vomo_dest.users WHERE customer_id = 'acme'`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM vomo_dest.users WHERE deleted AND external_id = 'vomo-9'`))
	var first, email string
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT first_name, email FROM vomo_dest.users WHERE external_id = 'vomo-7'`).Scan(&first, &email))
	require.Equal(t, "Seven", first)
	require.Equal(t, "u7@example.org", email)

	require.Equal(t, 250, b.count(`SELECT count(*) FROM vomosync.sync_state WHERE customer_id = 'acme' AND external_id = 'vomo-' || record_id`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM vomosync.sync_state WHERE record_id = '9' AND deleted AND source_updated_at = $1`, t0.Add(time.Hour)))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM vomosync.sync_state WHERE record_id = '7' AND source_updated_at = $1`, t0.Add(time.Hour)))

	require.Equal(t, len(evs), b.count(`SELECT count(*) FROM vomosync.audit_log WHERE trace_id = $1`, trace), "audit trace id is the publishing cycle's")
	require.Equal(t, len(evs), b.count(`SELECT count(*) FROM vomosync.audit_log WHERE origin = 'poll' AND cycle_id <> ''`))
	// Record 7 and 9 were in the batch twice: the older versions are stale.
	require.Equal(t, 2, b.count(`SELECT count(*) FROM vomosync.audit_log WHERE outcome = 'skipped_stale'`))
	require.Equal(t, 250, b.count(`SELECT count(*) FROM vomosync.audit_log WHERE outcome = 'applied'`))
	var changed []string
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT changed_fields FROM vomosync.audit_log
		WHERE record_id = '3' AND outcome = 'applied'`).Scan(&changed))
	require.ElementsMatch(t, []string{"id", "type", "first_name", "last_name", "email", "updated_at"}, changed)
}

// Redelivery: the same versions delivered again change nothing, and the
// audit log shows both attempts.
func TestRedeliveryChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.addCustomer("acme", customer.Settings{})
	var evs []ev
	for i := 1; i <= 50; i++ {
		evs = append(evs, user("acme", strconv.Itoa(i), t0.Add(time.Duration(i)*time.Minute)))
	}
	b.publish(evs...)
	b.start(testConfig(), processor.Hooks{})
	b.eventually("first delivery", func() bool { return b.auditCount() == 50 })
	var before string
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT string_agg(external_id || record::text || synced_at::text, ',' ORDER BY external_id) FROM vomo_dest.users`).Scan(&before))

	b.publish(evs...)
	b.eventually("second delivery", func() bool { return b.auditCount() == 100 })
	var after string
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT string_agg(external_id || record::text || synced_at::text, ',' ORDER BY external_id) FROM vomo_dest.users`).Scan(&after))
	require.Equal(t, before, after, "destination untouched")
	require.Equal(t, 50, b.count(`SELECT count(*) FROM vomo_dest.users`))
	require.Equal(t, 50, b.count(`SELECT count(*) FROM vomosync.audit_log WHERE outcome = 'applied'`))
	require.Equal(t, 50, b.count(`SELECT count(*) FROM vomosync.audit_log WHERE outcome = 'skipped_stale'`))
	require.Equal(t, 50, b.count(`SELECT count(DISTINCT record_id) FROM vomosync.audit_log WHERE outcome = 'skipped_stale'`))
}

// A poison message and a record failing validation are dead-lettered at
// once with their reasons; the rest of the batch flows.
func TestPoisonAndInvalidAreDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.addCustomer("acme", customer.Settings{})
	good1 := user("acme", "1", t0)
	bad := user("acme", "2", t0)
	bad.record["id"] = 3 // the record says it is someone else
	good2 := user("acme", "4", t0)
	// Valid JSON that jsonb refuses is caught before the database.
	nul := user("acme", "6", t0, "first_name", "a\x00b")
	// Valid JSON the database refuses (a number beyond numeric's range):
	// the batch statement fails, the records are retried one by one and
	// only this one is rejected.
	huge := user("acme", "7", t0)
	huge.record["score"] = json.Number("1e1000000")
	b.publish(good1)
	b.publishRaw(messaging.ChangeSubject("acme", "users"), []byte{0xff, 0xfe, 0x01})
	b.publish(bad, good2, user("nobody", "5", t0), nul, huge)
	b.start(testConfig(), processor.Hooks{})
	b.eventually("dead letters", func() bool {
		return b.count(`SELECT count(*) FROM vomosync.dead_letters`) == 5 && b.auditCount() == 7
	})
	require.Equal(t, 1, b.count(`SELECT count(*) FROM vomosync.dead_letters WHERE error_class = 'validation' AND record_id = '6' AND error LIKE '%u0000%'`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM vomosync.dead_letters WHERE error_class = 'destination_rejected' AND record_id = '7'`))
	require.Equal(t, 0, b.count(`SELECT count(*) FROM vomosync.sync_state WHERE record_id IN ('6', '7')`), "not believed delivered")
	require.Equal(t, 2, b.count(`SELECT count(*) FROM vomo_dest.users`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM vomosync.dead_letters WHERE error_class = 'invalid' AND error LIKE '%undecodable%' AND customer_id = 'acme' AND stream_seq IS NOT NULL`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM vomosync.dead_letters WHERE error_class = 'validation' AND record_id = '2' AND error LIKE '%does not match%'`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM vomosync.dead_letters WHERE error_class = 'unknown_customer' AND customer_id = 'nobody'`))
	require.Equal(t, 5, b.count(`SELECT count(*) FROM vomosync.audit_log WHERE outcome = 'dead_lettered'`))

	st, err := b.js.Stream(b.ctx, messaging.StreamDLQ)
	require.NoError(t, err)
	b.eventually("dlq stream", func() bool {
		info, err := st.Info(b.ctx)
		return err == nil && info.State.Msgs == 5
	})
	msg, err := st.GetLastMsgForSubject(b.ctx, messaging.DLQSubject("acme", "users"))
	require.NoError(t, err)
	require.NotEmpty(t, msg.Header.Get(messaging.HeaderError))
	require.Equal(t, "1", msg.Header.Get(messaging.HeaderAttempts))

	// Terminated, not redelivered: the consumer has nothing pending.
	cons, err := b.js.Consumer(b.ctx, messaging.StreamChanges, messaging.ConsumerName)
	require.NoError(t, err)
	b.eventually("all answered", func() bool {
		info, err := cons.Info(b.ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	})
	// An undecodable payload cannot be retried, only discarded with a reason.
	store := &deadletter.Store{DB: b.db.Pool, JS: b.js}
	invalid, err := store.List(b.ctx, deadletter.Filter{CustomerID: "acme", ErrorClass: "invalid"})
	require.NoError(t, err)
	require.Len(t, invalid, 1)
	require.ErrorIs(t, store.Retry(b.ctx, invalid[0].ID, "ops"), deadletter.ErrUndecodable)
	require.ErrorIs(t, store.Discard(b.ctx, invalid[0].ID, "ops", ""), deadletter.ErrNoReason)
	require.NoError(t, store.Discard(b.ctx, invalid[0].ID, "ops", "garbage from a test publisher"))
	got, err := store.Get(b.ctx, invalid[0].ID)
	require.NoError(t, err)
	require.Equal(t, "discarded", got.Status)
	require.Equal(t, "garbage from a test publisher", got.ResolvedReason)

	var headers map[string][]string
	var raw []byte
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT headers FROM vomosync.dead_letters WHERE error_class = 'validation'`).Scan(&raw))
	require.NoError(t, json.Unmarshal(raw, &headers))
	require.NotEmpty(t, headers["traceparent"])
}

// A stop (SIGTERM) stops pulling, finishes and acks what the workers hold,
// naks what it fetched and could not hand over, and returns nil. Nothing is
// left unanswered: with an ack wait longer than the test's patience, a
// second processor still finishes the stream.
func TestStopLeavesNothingUnanswered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.addCustomer("acme", customer.Settings{})
	var evs []ev
	for i := 1; i <= 3000; i++ {
		evs = append(evs, user("acme", strconv.Itoa(i), t0))
	}
	b.publish(evs...)
	cfg := testConfig()
	cfg.AckWait = 2 * time.Minute
	r := b.start(cfg, processor.Hooks{})
	b.eventually("processing under way", func() bool { return b.auditCount() > 0 })
	require.NoError(t, r.stop())
	require.Less(t, b.auditCount(), 3000, "stopped midway")
	b.start(cfg, processor.Hooks{})
	b.eventually("the rest applied without waiting for an ack timeout", func() bool { return b.auditCount() >= 3000 })
	require.Equal(t, 3000, b.count(`SELECT count(*) FROM vomo_dest.users`))
}

// Destination rows with no state row (a state table restored from an older
// backup, a destination filled by hand): the fast path's plain insert of
// records new to the state meets them and hands the batch to the general
// path, which updates the older rows, keeps the newer one and loses nothing.
func TestDestinationRowsWithoutStateAreMerged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.addCustomer("acme", customer.Settings{})
	var evs []ev
	for i := 1; i <= 20; i++ {
		evs = append(evs, user("acme", strconv.Itoa(i), t0.Add(time.Hour), "first_name", "new"))
	}
	// Records 1-5 are in the destination at an older version, record 6 at a newer one.
	_, err := b.db.Pool.Exec(b.ctx, `INSERT INTO vomo_dest.users (customer_id, external_id, source_updated_at, record)
		SELECT 'acme', 'vomo-' || i, $1::timestamptz, jsonb_build_object('id', i, 'first_name', 'old')
		FROM generate_series(1, 5) i
		UNION ALL SELECT 'acme', 'vomo-6', $2::timestamptz, '{"id": 6, "first_name": "newer"}'`, t0, t0.Add(2*time.Hour))
	require.NoError(t, err)
	b.publish(evs...)
	r := b.start(testConfig(), processor.Hooks{})
	b.eventually("all settled", func() bool { return b.auditCount() == 20 && b.consumerIdle() })

	require.Positive(t, r.p.Applier().Stats().Unstaged.Load(), "the fast path handed the batch on")
	require.Equal(t, 20, b.count(`SELECT count(*) FROM vomo_dest.users`))
	require.Equal(t, 19, b.count(`SELECT count(*) FROM vomo_dest.users WHERE first_name = 'new' AND source_updated_at = $1`, t0.Add(time.Hour)))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM vomo_dest.users WHERE external_id = 'vomo-6' AND first_name = 'newer'`))
	require.Equal(t, 0, b.count(`SELECT count(*) FROM vomosync.dead_letters`))
	require.Equal(t, 0, b.count(`SELECT count(*) FROM vomosync.audit_log WHERE outcome NOT IN ('applied', 'skipped_stale')`))
}
