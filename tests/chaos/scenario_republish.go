package chaos

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/tests/chaos/checker"
	"github.com/vomosync/vomosync/tests/chaos/harness"
)

// republishN is how many stored events are published again.
const republishN = 200

func init() {
	Register(Scenario{
		Name: "republish",
		Description: "200 stored events published again with their message ids after the duplicate window, " +
			"then again after a stream purge and a kill -9 restart of the server: still one effect each",
		Short: true,
		// Its time is deliberate waits (the poller stopped until the
		// duplicate window passes, nats-server restarted after the purge),
		// not recovery: 2.06x of an 8.5 s baseline failed CI once.
		NoTimeLimit:   true,
		AfterConverge: republish,
		Verify:        verifyRepublish,
	})
}

type republished struct {
	at         time.Time
	customers  []string // customer and record id of each republished event
	ids        []string
	outbox     int
	deliveries int
}

func republish(ctx context.Context, e *Env) error {
	nc, js, err := e.Connect(ctx)
	if err != nil {
		return err
	}
	msgs, err := harness.ReadChanges(ctx, js, messaging.ChangesPrefix+".*.users")
	nc.Close()
	if err != nil {
		return err
	}
	var pick []harness.StoredMsg
	for _, i := range e.Rand.Perm(len(msgs)) {
		if msgs[i].Event != nil && msgs[i].Header.Get(nats.MsgIdHdr) != "" {
			pick = append(pick, msgs[i])
		}
		if len(pick) == republishN {
			break
		}
	}
	rp := &republished{at: time.Now()}
	for _, m := range pick {
		rp.customers = append(rp.customers, m.Event.GetCustomerId())
		rp.ids = append(rp.ids, m.Event.GetRecordId())
	}
	if err := e.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.outbox`).Scan(&rp.outbox); err != nil {
		return err
	}
	for _, n := range e.Hook.Deliveries() {
		rp.deliveries += n
	}
	e.Set("republished", rp)
	// The poller re-reads its overlap every cycle, refreshing the same
	// message ids: stop it so only our copies arrive. Then shrink the
	// duplicate window to one second and wait it out, so the server
	// stores the copies (a window of minutes would make the run slow).
	e.StopService("poller")
	if err := setDuplicateWindow(ctx, e, time.Second); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	if err := publishAgain(ctx, e, pick, "after the duplicate window"); err != nil {
		return err
	}
	if err := setDuplicateWindow(ctx, e, time.Minute); err != nil {
		return err
	}
	if err := e.WaitConsumerIdle(ctx, time.Minute); err != nil {
		return err
	}
	// Purge (everything in the stream counts as published: it was, and the
	// purge is ours), then a hard restart of the server.
	nc, js, err = e.Connect(ctx)
	if err != nil {
		return err
	}
	all, err := harness.ReadChanges(ctx, js, messaging.ChangesPrefix+".>")
	if err != nil {
		nc.Close()
		return err
	}
	for _, m := range all {
		if m.Event != nil {
			e.Exempt(checker.Version{Customer: m.Event.GetCustomerId(), ID: m.Event.GetRecordId(), At: m.Event.GetSourceUpdatedAt().AsTime().UnixMicro()})
		}
	}
	st, err := js.Stream(ctx, messaging.StreamChanges)
	if err == nil {
		err = st.Purge(ctx)
	}
	nc.Close()
	if err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	e.Count("stream purge")
	e.NATS.Kill()
	e.Count("kill -9 nats-server")
	if err := e.NATS.Start(ctx); err != nil {
		return err
	}
	if err := publishAgain(ctx, e, pick, "after purge and restart"); err != nil {
		return err
	}
	if err := e.WaitConsumerIdle(ctx, time.Minute); err != nil {
		return err
	}
	_, err = e.Stack.Start("poller", "poller")
	return err
}

func setDuplicateWindow(ctx context.Context, e *Env, d time.Duration) error {
	nc, js, err := e.Connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	st, err := js.Stream(ctx, messaging.StreamChanges)
	if err != nil {
		return err
	}
	cfg := st.CachedInfo().Config
	cfg.Duplicates = d
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("set duplicate window: %w", err)
	}
	return nil
}

func publishAgain(ctx context.Context, e *Env, msgs []harness.StoredMsg, when string) error {
	nc, js, err := e.Connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	stored := 0
	for _, m := range msgs {
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject, Data: m.Data, Header: m.Header})
		if err != nil {
			return fmt.Errorf("republish %s: %w", when, err)
		}
		if !ack.Duplicate {
			stored++
		}
	}
	e.Add("events republished "+when, len(msgs))
	if stored < len(msgs) {
		e.Note("%d of %d republished events %s were dropped as duplicates", len(msgs)-stored, len(msgs), when)
	}
	return nil
}

func verifyRepublish(ctx context.Context, e *Env, _ *checker.Report) ([]string, error) {
	rp, _ := e.Get("republished").(*republished)
	if rp == nil {
		return []string{"republish did not run"}, nil
	}
	var v []string
	var outbox int
	if err := e.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.outbox`).Scan(&outbox); err != nil {
		return nil, err
	}
	// The reconciliation after the republish may first-see nothing new:
	// every record already had its effect.
	if outbox != rp.outbox {
		v = append(v, fmt.Sprintf("outbox grew from %d to %d rows after republishing", rp.outbox, outbox))
	}
	// Every republished copy was processed and changed nothing.
	customers, ids := rp.customers, rp.ids
	var applied, seen int
	err := e.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE a.outcome = 'applied' AND a.origin NOT IN ('reconcile', 'redrive')), count(*)
		FROM vomosync.audit_log a JOIN unnest($1::text[], $2::text[]) AS r(c, id) ON a.customer_id = r.c AND a.record_id = r.id
		WHERE a.processed_at >= $3`, customers, ids, rp.at).Scan(&applied, &seen)
	if err != nil {
		return nil, err
	}
	if seen < 2*len(ids) {
		v = append(v, fmt.Sprintf("%d audit rows for %d events republished twice: some copies were never processed", seen, len(ids)))
	}
	if applied > 0 {
		v = append(v, fmt.Sprintf("%d republished copies were applied again (want skipped_stale)", applied))
	}
	e.Note("republished %d events twice: %d audit rows since, %d applied", len(ids), seen, applied)
	return v, nil
}
