package chaos

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/tests/chaos/checker"
	"github.com/vomosync/vomosync/tests/chaos/harness"
)

// Planted loss: once the destination matches the source, damage is planted
// where polling cannot see it, and the full reconciliation must report
// exactly what was planted (by class) and repair it.

func init() {
	Register(Scenario{
		Name: "planted-loss",
		Description: "after convergence, per customer: messages dropped from the stream before processing (stale), " +
			"destination and state rows deleted (missing), silent source deletes (deleted), silent field changes (field_drift); " +
			"the reconciler must report exactly those counts and repair them",
		Short: true,
		AfterConverge: func(ctx context.Context, e *Env) error {
			k := max(3, e.Workload.Users/150)
			return plant(ctx, e, plantSpec{dropped: k, lostRows: k, silentDeletes: k, silentChanges: k})
		},
		Verify: verifyPlanted,
	})

	Register(Scenario{
		Name: "planted-corruption",
		Description: "after convergence, destination rows corrupted in place (a field changed in vomo_dest, sync_state untouched): " +
			"the reconciler must find and repair them",
		Short: true,
		AfterConverge: func(ctx context.Context, e *Env) error {
			return plant(ctx, e, plantSpec{corrupted: max(3, e.Workload.Users/150)})
		},
		Verify: verifyPlanted,
	})

	Register(Scenario{
		Name:        "kill-reconciler",
		Description: "destination rows deleted after convergence so there is repair work; the reconciler kills itself mid-repair (VOMOSYNC_FAULTS reconciler.mid_repair=1) and is restarted",
		Short:       true,
		Prepare: func(_ context.Context, p *Prep) (func(), error) {
			p.ServiceEnv["reconciler"] = append(p.ServiceEnv["reconciler"],
				"VOMOSYNC_FAULTS=reconciler.mid_repair=1", fmt.Sprintf("VOMOSYNC_FAULT_SEED=%d", p.Options.SimSeed))
			return nil, nil
		},
		AfterConverge: func(ctx context.Context, e *Env) error {
			// At most one repair chunk per customer: the process dies after
			// every chunk, and each new life walks the whole source again, so
			// the long size's 5,000 rows took ten lives a customer and broke
			// the time rule without testing anything more.
			return plant(ctx, e, plantSpec{lostRows: min(max(3, e.Workload.Users/10), 400)})
		},
		Verify: func(_ context.Context, e *Env, _ *checker.Report) ([]string, error) {
			n := e.Service("reconciler").Deaths()
			e.Add("reconciler mid-repair deaths", n)
			if n == 0 {
				return []string{"the reconciler never died mid-repair: VOMOSYNC_FAULTS had no effect"}, nil
			}
			return nil, nil
		},
	})
}

// plantSpec is how many records of each customer get each kind of damage.
type plantSpec struct {
	dropped, lostRows, silentDeletes, silentChanges, corrupted int
}

// planted is what plant did, for Verify: expected gap counts by class per
// customer, and when the planting finished.
type planted struct {
	at     time.Time
	expect map[string]map[string]int // customer → recon gap class → count
}

func plant(ctx context.Context, e *Env, spec plantSpec) error {
	pl := &planted{expect: map[string]map[string]int{}}
	// Deletions the churn made are still to be reconciled: they are
	// expected as "deleted" gaps too.
	for _, c := range e.CustomerIDs() {
		rep, err := checker.Diff(ctx, checker.Input{Customers: []string{c}, Source: e.Sim, Pool: e.Pool})
		if err != nil {
			return err
		}
		pl.expect[c] = map[string]int{"deleted": rep.Counts[checker.Unexpected]}
	}
	if spec.dropped > 0 {
		// The processor is stopped so the dropped messages are never seen.
		e.StopService("processor")
	}
	cutoff := time.Now().Add(-10 * time.Minute) // older than the poller's overlap: polling never re-reads them
	for _, c := range e.CustomerIDs() {
		truth, err := e.Sim.Truth(c, "users")
		if err != nil {
			return err
		}
		var old []string
		for _, r := range truth {
			if r.UpdatedAt.Before(cutoff) {
				old = append(old, r.ID)
			}
		}
		e.Rand.Shuffle(len(old), func(i, j int) { old[i], old[j] = old[j], old[i] })
		take := func(n int) []string {
			n = min(n, len(old))
			out := old[:n]
			old = old[n:]
			return out
		}
		if ids := take(spec.lostRows); len(ids) > 0 {
			if _, err := e.Pool.Exec(ctx, `WITH s AS (DELETE FROM vomosync.sync_state WHERE customer_id = $1 AND resource = 'users' AND record_id = ANY($2) RETURNING external_id)
				DELETE FROM vomo_dest.users d USING s WHERE d.customer_id = $1 AND d.external_id = s.external_id`, c, ids); err != nil {
				return fmt.Errorf("plant lost rows: %w", err)
			}
			pl.expect[c]["missing"] += len(ids)
			e.Add("destination+state rows deleted", len(ids))
		}
		if ids := take(spec.corrupted); len(ids) > 0 {
			if _, err := e.Pool.Exec(ctx, `UPDATE vomo_dest.users d SET record = d.record || '{"email": "corrupted@example.invalid"}'::jsonb
				FROM vomosync.sync_state s WHERE s.customer_id = $1 AND s.resource = 'users' AND s.record_id = ANY($2)
				AND d.customer_id = s.customer_id AND d.external_id = s.external_id`, c, ids); err != nil {
				return fmt.Errorf("plant corrupted rows: %w", err)
			}
			pl.expect[c]["destination_drift"] += len(ids)
			e.Add("destination rows corrupted", len(ids))
		}
		for _, id := range take(spec.silentDeletes) {
			if err := e.Sim.DeleteUser(c, id); err != nil {
				return err
			}
			pl.expect[c]["deleted"]++
			e.Count("silent source deletes")
		}
		for _, id := range take(spec.silentChanges) {
			if err := e.Sim.SilentUpdate(c, "users", id); err != nil {
				return err
			}
			pl.expect[c]["field_drift"]++
			e.Count("silent source field changes")
		}
		if ids := take(spec.dropped); len(ids) > 0 {
			if err := dropUpdates(ctx, e, c, ids); err != nil {
				return err
			}
			pl.expect[c]["stale"] += len(ids)
		}
	}
	if spec.dropped > 0 {
		if _, err := e.Stack.Start("processor", "processor"); err != nil {
			return err
		}
	}
	pl.at = time.Now()
	e.Set("planted", pl)
	return nil
}

// dropUpdates updates ids at the source, waits until the poller published
// the new versions and deletes those messages from the stream.
func dropUpdates(ctx context.Context, e *Env, c string, ids []string) error {
	want := map[string]bool{}
	for _, id := range ids {
		if err := e.Sim.UpdateUser(c, id); err != nil {
			return err
		}
	}
	truth, err := e.Sim.Truth(c, "users")
	if err != nil {
		return err
	}
	at := map[string]int64{}
	for _, r := range truth {
		at[r.ID] = r.UpdatedAt.UnixMicro()
	}
	for _, id := range ids {
		want[id] = true
	}
	nc, js, err := e.Connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	var seqs []uint64
	err = harness.Wait(ctx, time.Minute, 300*time.Millisecond, "poller publishes the updates to drop", func(ctx context.Context) (bool, string, error) {
		msgs, err := harness.ReadChanges(ctx, js, messaging.ChangeSubject(c, "users"))
		if err != nil {
			return false, "", err
		}
		seqs = seqs[:0]
		found := map[string]bool{}
		for _, m := range msgs {
			if m.Event != nil && want[m.Event.GetRecordId()] && m.Event.GetSourceUpdatedAt().AsTime().UnixMicro() == at[m.Event.GetRecordId()] {
				seqs = append(seqs, m.Seq)
				found[m.Event.GetRecordId()] = true
			}
		}
		return len(found) == len(ids), fmt.Sprintf("%d of %d published", len(found), len(ids)), nil
	})
	if err != nil {
		return err
	}
	st, err := js.Stream(ctx, messaging.StreamChanges)
	if err != nil {
		return err
	}
	for _, seq := range seqs {
		if err := st.DeleteMsg(ctx, seq); err != nil {
			return fmt.Errorf("drop message %d: %w", seq, err)
		}
	}
	for _, id := range ids {
		e.Exempt(checker.Version{Customer: c, ID: id, At: at[id]})
	}
	e.Add("messages dropped before processing", len(ids))
	return nil
}

func verifyPlanted(ctx context.Context, e *Env, _ *checker.Report) ([]string, error) {
	pl, _ := e.Get("planted").(*planted)
	if pl == nil {
		return []string{"nothing was planted"}, nil
	}
	var v []string
	for _, c := range e.CustomerIDs() {
		got := map[string]int{}
		var run string
		err := e.Pool.QueryRow(ctx, `SELECT id::text FROM vomosync.recon_runs WHERE customer_id = $1 AND kind = 'full' AND outcome = 'success'
			AND started_at >= $2 ORDER BY started_at LIMIT 1`, c, pl.at).Scan(&run)
		if err != nil {
			return nil, fmt.Errorf("first full run of %s after planting: %w", c, err)
		}
		rows, err := e.Pool.Query(ctx, `SELECT class, count(*) FROM vomosync.recon_gaps WHERE run_id = $1 GROUP BY class`, run)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var class string
			var n int
			if err := rows.Scan(&class, &n); err != nil {
				rows.Close()
				return nil, err
			}
			got[class] = n
		}
		rows.Close()
		want := pl.expect[c]
		// A corrupted row may be reported as drift or as stale; both repair it.
		if n := want["field_drift|stale"]; n > 0 {
			delete(want, "field_drift|stale")
			want = mergeCounts(want, nil)
			if got["field_drift"]+got["stale"]-want["field_drift"]-want["stale"] != n {
				v = append(v, fmt.Sprintf("%s: %d corrupted destination rows planted, reconciler found field_drift=%d stale=%d", c, n, got["field_drift"], got["stale"]))
			}
			got["field_drift"], got["stale"] = want["field_drift"], want["stale"]
		}
		for _, class := range classUnion(want, got) {
			if want[class] != got[class] {
				v = append(v, fmt.Sprintf("%s: planted %d %s gaps, the reconciler reported %d (run %s)", c, want[class], class, got[class], run))
			}
		}
		e.Note("%s: planted %v, reconciler reported %v", c, want, got)
	}
	return v, nil
}

func mergeCounts(a, b map[string]int) map[string]int {
	out := map[string]int{}
	for k, n := range a {
		out[k] += n
	}
	for k, n := range b {
		out[k] += n
	}
	return out
}

func classUnion(a, b map[string]int) []string {
	set := map[string]bool{}
	for k := range a {
		set[k] = true
	}
	for k := range b {
		set[k] = true
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
