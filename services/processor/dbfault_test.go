package processor_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/services/processor"
)

// Statement triggers in the test's database raise serialization failures
// and deadlocks on a share of the batch statements (state, destination,
// audit): batches are retried in-process and, past the bound, nak'd and
// redelivered; everything converges with one effect per record version, and
// nothing is dead-lettered for a transient error.
func TestTransientDatabaseErrorsAreRetried(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sink := newHookSink(t)
	b.addCustomer("acme", customer.Settings{Actions: []customer.Action{
		{Name: "welcome", On: "first_seen", Resource: "users", URL: sink.srv.URL}}, Destination: customer.Destination{AllowPrivate: true}})
	_, err := b.db.Pool.Exec(b.ctx, `
		CREATE FUNCTION public.inject_fault() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF random() < 0.15 THEN
				RAISE EXCEPTION 'injected serialization failure' USING ERRCODE = '40001';
			ELSIF random() < 0.1 THEN
				RAISE EXCEPTION 'injected deadlock' USING ERRCODE = '40P01';
			END IF;
			RETURN NULL;
		END $$;
		CREATE TRIGGER inject_fault BEFORE INSERT OR UPDATE ON vomosync.sync_state
			FOR EACH STATEMENT EXECUTE FUNCTION public.inject_fault();
		CREATE TRIGGER inject_fault BEFORE INSERT OR UPDATE ON vomo_dest.users
			FOR EACH STATEMENT EXECUTE FUNCTION public.inject_fault();
		CREATE TRIGGER inject_fault BEFORE INSERT ON vomosync.audit_log
			FOR EACH STATEMENT EXECUTE FUNCTION public.inject_fault();`)
	require.NoError(t, err)

	const records, versions = 50, 3
	var evs []ev
	for v := 1; v <= versions; v++ {
		for r := 1; r <= records; r++ {
			evs = append(evs, user("acme", strconv.Itoa(r), t0.Add(time.Duration(v)*time.Minute), "first_name", "v"+strconv.Itoa(v)))
		}
	}
	cfg := testConfig()
	cfg.BatchSize = 40
	cfg.MaxDeliver = 50 // a transient error must never exhaust a record
	r := b.start(cfg, processor.Hooks{})
	for i := 0; i < len(evs); i += 30 {
		b.publish(evs[i:min(i+30, len(evs))]...)
	}
	b.eventually("every version audited and the consumer idle", func() bool {
		return b.count(`SELECT count(DISTINCT (record_id, record_updated_at)) FROM vomosync.audit_log`) == len(evs) &&
			b.consumerIdle()
	})

	newest := t0.Add(versions * time.Minute)
	require.Equal(t, records, b.count(`SELECT count(*) FROM vomo_dest.users WHERE source_updated_at = $1 AND first_name = $2`, newest, "v"+strconv.Itoa(versions)))
	require.Equal(t, records, b.count(`SELECT count(*) FROM vomosync.sync_state WHERE source_updated_at = $1`, newest))
	require.Equal(t, 0, b.count(`SELECT count(*) FROM (SELECT record_id, record_updated_at FROM vomosync.audit_log
		WHERE outcome = 'applied' GROUP BY 1, 2 HAVING count(*) > 1) d`), "one effect per record version")
	require.Equal(t, 0, b.count(`SELECT count(*) FROM vomosync.dead_letters`))
	require.Equal(t, records, b.count(`SELECT count(*) FROM vomosync.outbox`), "each dedup key enqueued once")
	require.Positive(t, r.p.Applier().Stats().TxRetries.Load(), "the faults were retried in-process")
}

// A unique index on a destination column that two records collide on: the
// second written is dead-lettered at once (first attempt) with the reason,
// the rest commits. (Which is second depends on the workers' batches.)
func TestDestinationConstraintDeadLettersTheRecordAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.addCustomer("acme", customer.Settings{})
	_, err := b.db.Pool.Exec(b.ctx, `CREATE UNIQUE INDEX users_email_unique ON vomo_dest.users (email)`)
	require.NoError(t, err)
	var evs []ev
	for i := 1; i <= 30; i++ {
		evs = append(evs, user("acme", strconv.Itoa(i), t0))
	}
	evs[11].record["email"] = evs[4].record["email"] // record 12 takes record 5's address
	b.publish(evs...)
	b.start(testConfig(), processor.Hooks{})
	b.eventually("all settled", func() bool { return b.auditCount() == 30 })

	b.logRows(`SELECT record_id, attempts, error_class, error FROM vomosync.dead_letters`)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM vomosync.dead_letters WHERE record_id IN ('5', '12') AND attempts = 1
		AND error_class = 'destination_rejected' AND error LIKE '%users_email_unique%'`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM vomosync.dead_letters`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM vomosync.audit_log WHERE outcome = 'dead_lettered'`))
	require.Equal(t, 29, b.count(`SELECT count(*) FROM vomo_dest.users`))
	require.Equal(t, 29, b.count(`SELECT count(*) FROM vomosync.sync_state`), "the refused record is not believed delivered")
	require.Equal(t, 0, b.count(`SELECT count(*) FROM vomosync.sync_state s JOIN vomosync.dead_letters d USING (record_id)`))
}

// A data error inside the state statements (here a check constraint on
// sync_state in the test's database) no longer fails the whole batch to its
// delivery limit: the batch is split until the record is alone, which is
// dead-lettered at once with the cause; the rest commits.
func TestStateDataErrorIsolatesTheRecord(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.addCustomer("acme", customer.Settings{})
	_, err := b.db.Pool.Exec(b.ctx, `ALTER TABLE vomosync.sync_state ADD CONSTRAINT no_seventeen CHECK (record_id <> '17')`)
	require.NoError(t, err)
	var evs []ev
	for i := 1; i <= 40; i++ {
		evs = append(evs, user("acme", strconv.Itoa(i), t0))
	}
	b.publish(evs...)
	cfg := testConfig()
	cfg.BatchSize = 40
	r := b.start(cfg, processor.Hooks{})
	b.eventually("all settled", func() bool { return b.auditCount() == 40 })

	require.Equal(t, 1, b.count(`SELECT count(*) FROM vomosync.dead_letters WHERE record_id = '17' AND attempts = 1
		AND error LIKE '%no_seventeen%' AND error LIKE '%23514%'`))
	require.Equal(t, 39, b.count(`SELECT count(*) FROM vomosync.audit_log WHERE outcome = 'applied'`))
	require.Equal(t, 39, b.count(`SELECT count(*) FROM vomo_dest.users`))
	require.Positive(t, r.p.Applier().Stats().Splits.Load())
}
