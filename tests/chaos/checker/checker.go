// Package checker decides whether a chaos run kept its promises. It
// compares the source truth (the simulator), what was published (the
// change stream), the destination tables, the audit log, the outbox and the
// sampled checkpoints, and classifies every record:
//
//   - ok: the destination holds the source's version (or its tombstone)
//   - lost: at the source, missing or deleted at the destination
//   - stale: the destination holds an older version, or the same version
//     with different fields
//   - unexpected: live at the destination, gone (or never) at the source,
//     or newer at the destination than at the source
//   - duplicated: a one-time side effect enqueued more than once (two
//     outbox rows, so two Idempotency-Keys, for one record and action)
//
// A side effect delivered again under the same Idempotency-Key (the sender
// crashed between the POST and marking it sent) is counted as Redelivered
// and is not a violation: delivery is at least once by design, the key is
// what makes the effect happen once at a receiver that honours it, and no
// sender can close that window without the receiver's help.
//
// and checks three invariants beside them: no checkpoint was ever ahead of
// what was in the stream, every stored event has an audit row, and every
// record first seen has exactly one side effect, delivered.
package checker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/services/vomosim/sim"
)

// Class is the verdict on one record.
type Class string

// Record classes.
const (
	OK         Class = "ok"
	Lost       Class = "lost"
	Duplicated Class = "duplicated"
	Stale      Class = "stale"
	Unexpected Class = "unexpected"
)

// Classes in report order.
var Classes = []Class{OK, Lost, Duplicated, Stale, Unexpected}

// Version is one version of one source record.
type Version struct {
	Customer string
	ID       string
	At       int64 // source updated_at, Unix microseconds
}

func (v Version) String() string {
	return fmt.Sprintf("%s/%s@%s", v.Customer, v.ID, time.UnixMicro(v.At).UTC().Format(time.RFC3339Nano))
}

// Source is the simulator's truth (satisfied by *sim.Sim).
type Source interface {
	EachTruth(customerID, resource string, withFields bool, fn func(sim.TruthRecord) error) error
}

// Input is everything a check looks at.
type Input struct {
	Customers []string
	Resource  string // default users
	Source    Source
	Pool      *pgxpool.Pool
	// DestSchema of the Postgres destination (default vomo_dest).
	DestSchema string
	// Published counts every version in the change stream (ReadStream).
	Published map[Version]int
	// Claimed are the versions sampled checkpoints claimed were published.
	Claimed map[Version]time.Time
	// Samples is the number of checkpoint samples taken.
	Samples int
	// Exempt versions count as published although they are not in the
	// stream now: messages the scenario itself removed (planted loss, a
	// purge).
	Exempt map[Version]bool
	// Actions are the first_seen action names configured for Resource.
	Actions []string
	// Deliveries per Idempotency-Key at the action endpoint.
	Deliveries map[string]int
	// EffectsSince, when set, requires a side effect only of records first
	// seen after it (the action was configured during the run).
	EffectsSince time.Time
	// VersionsOnly compares versions, not fields (a cheaper Diff while
	// waiting for polling to catch up).
	VersionsOnly bool
	// Skip leaves records ("customer/id") out of the comparison, the
	// checkpoint check and the audit check: records a scenario made
	// malformed on purpose.
	Skip map[string]bool
}

// Report is the outcome of one check.
type Report struct {
	Records int
	Counts  map[Class]int

	Samples         int
	Claimed         int
	CheckpointAhead int

	Published    int
	AuditMissing int

	Outbox         int
	DupEnqueued    int
	Redelivered    int
	EffectsMissing int
	Undelivered    int

	Examples []string
}

// Violations lists every broken promise in words; empty means the run passed.
func (r Report) Violations() []string {
	var v []string
	add := func(n int, what string) {
		if n > 0 {
			v = append(v, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(r.Counts[Lost], "records lost")
	add(r.Counts[Stale], "records stale")
	add(r.Counts[Unexpected], "records unexpected at the destination")
	add(r.DupEnqueued, "side effects enqueued more than once")
	add(r.EffectsMissing, "records first seen without their side effect")
	add(r.Undelivered, "side effects not delivered")
	add(r.CheckpointAhead, "versions claimed by a checkpoint before they were in the stream")
	add(r.AuditMissing, "stored events without an audit row")
	if r.Samples == 0 && r.Claimed == 0 {
		// A check without samples cannot say the checkpoint was never ahead.
		v = append(v, "no checkpoint samples taken")
	}
	return v
}

func (r *Report) example(format string, args ...any) {
	if len(r.Examples) < 12 {
		r.Examples = append(r.Examples, fmt.Sprintf(format, args...))
	}
}

func (in *Input) defaults() {
	if in.Resource == "" {
		in.Resource = "users"
	}
	if in.DestSchema == "" {
		in.DestSchema = "vomo_dest"
	}
}

// Check runs every comparison.
func Check(ctx context.Context, in Input) (Report, error) {
	in.defaults()
	r := Report{Counts: map[Class]int{}, Samples: in.Samples, Claimed: len(in.Claimed)}
	dup, err := effects(ctx, in, &r)
	if err != nil {
		return r, err
	}
	if err := compare(ctx, in, &r, dup); err != nil {
		return r, err
	}
	for v := range in.Claimed {
		// A skipped record is served malformed: its true version (or id)
		// cannot be in the stream; the scenario checks its dead letter.
		if in.Skip[v.Customer+"/"+v.ID] {
			continue
		}
		if in.Published[v] == 0 && !in.Exempt[v] {
			r.CheckpointAhead++
			r.example("checkpoint ahead: %s claimed at %s, not in the stream", v, in.Claimed[v].Format(time.RFC3339Nano))
		}
	}
	if err := audit(ctx, in, &r); err != nil {
		return r, err
	}
	return r, nil
}

// Diff compares source and destination only (lost, stale, unexpected): the
// cheap check a run polls while it waits to converge.
func Diff(ctx context.Context, in Input) (Report, error) {
	in.defaults()
	r := Report{Counts: map[Class]int{}}
	return r, compare(ctx, in, &r, nil)
}

type destRow struct {
	at      time.Time
	deleted bool
	record  []byte
}

func compare(ctx context.Context, in Input, r *Report, dup map[string]bool) error {
	for _, c := range in.Customers {
		dest, err := destination(ctx, in, c)
		if err != nil {
			return err
		}
		seen := make(map[string]bool, len(dest))
		err = in.Source.EachTruth(c, in.Resource, !in.VersionsOnly, func(t sim.TruthRecord) error {
			seen[t.ID] = true
			if in.Skip[c+"/"+t.ID] {
				return nil
			}
			cls := classify(t, dest[t.ID], r, c, in.VersionsOnly)
			if cls == OK && dup[c+"/"+t.ID] {
				cls = Duplicated
			}
			r.Counts[cls]++
			r.Records++
			return nil
		})
		if err != nil {
			return fmt.Errorf("source truth of %s: %w", c, err)
		}
		for id, d := range dest {
			if seen[id] || in.Skip[c+"/"+id] {
				continue
			}
			r.Records++
			switch {
			case !d.deleted:
				r.Counts[Unexpected]++
				r.example("unexpected: %s/%s live at the destination, not at the source", c, id)
			case dup[c+"/"+id]:
				r.Counts[Duplicated]++
			default:
				r.Counts[OK]++
			}
		}
	}
	return nil
}

func classify(t sim.TruthRecord, d *destRow, r *Report, c string, versionsOnly bool) Class {
	switch {
	case d == nil || d.deleted:
		r.example("lost: %s/%s (source %s)", c, t.ID, t.UpdatedAt.Format(time.RFC3339))
		return Lost
	case d.at.Truncate(time.Second).Before(t.UpdatedAt):
		r.example("stale: %s/%s destination %s, source %s", c, t.ID, d.at.Format(time.RFC3339Nano), t.UpdatedAt.Format(time.RFC3339))
		return Stale
	case d.at.Truncate(time.Second).After(t.UpdatedAt):
		r.example("unexpected: %s/%s destination %s is newer than the source %s", c, t.ID, d.at.Format(time.RFC3339Nano), t.UpdatedAt.Format(time.RFC3339))
		return Unexpected
	case !versionsOnly && !sameJSON(d.record, t.Fields):
		r.example("stale: %s/%s same version %s, different fields", c, t.ID, t.UpdatedAt.Format(time.RFC3339))
		return Stale
	}
	return OK
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// destination reads the customer's destination rows keyed by source record
// id (through the external-id mapping in sync_state).
func destination(ctx context.Context, in Input, c string) (map[string]*destRow, error) {
	record := "d.record"
	if in.VersionsOnly {
		record = "NULL::jsonb"
	}
	q := fmt.Sprintf(`SELECT s.record_id, d.source_updated_at, d.deleted, %s
		FROM %s.%s d JOIN vomosync.sync_state s
		  ON s.customer_id = d.customer_id AND s.resource = $2 AND s.external_id = d.external_id
		WHERE d.customer_id = $1`, record, quoteIdent(in.DestSchema), quoteIdent(in.Resource))
	rows, err := in.Pool.Query(ctx, q, c, in.Resource)
	if err != nil {
		return nil, fmt.Errorf("read destination of %s: %w", c, err)
	}
	defer rows.Close()
	out := map[string]*destRow{}
	for rows.Next() {
		var id string
		d := &destRow{}
		if err := rows.Scan(&id, &d.at, &d.deleted, &d.record); err != nil {
			return nil, err
		}
		out[id] = d
	}
	return out, rows.Err()
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// effects checks the outbox and the deliveries and returns the records
// whose side effect was duplicated.
func effects(ctx context.Context, in Input, r *Report) (map[string]bool, error) {
	dup := map[string]bool{}
	if len(in.Actions) == 0 {
		return dup, nil
	}
	rows, err := in.Pool.Query(ctx, `SELECT o.customer_id, o.record_id, o.action, o.dedup_key, o.status
		FROM vomosync.outbox o WHERE o.customer_id = ANY($1) AND o.resource = $2`, in.Customers, in.Resource)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	type key struct{ c, id, action string }
	enq := map[key]int{}
	for rows.Next() {
		var c, id, action, dk, status string
		if err := rows.Scan(&c, &id, &action, &dk, &status); err != nil {
			rows.Close()
			return nil, err
		}
		r.Outbox++
		enq[key{c, id, action}]++
		if status != "delivered" || in.Deliveries[dk] == 0 {
			r.Undelivered++
			r.example("undelivered: %s (outbox status %s, %d deliveries)", dk, status, in.Deliveries[dk])
		}
		if n := in.Deliveries[dk]; n > 1 {
			r.Redelivered++
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for k, n := range enq {
		if n > 1 {
			r.DupEnqueued++
			dup[k.c+"/"+k.id] = true
			r.example("duplicated: %s/%s action %s enqueued %d times", k.c, k.id, k.action, n)
		}
	}
	// Every record ever first seen has its effect enqueued.
	srows, err := in.Pool.Query(ctx, `SELECT customer_id, record_id FROM vomosync.sync_state
		WHERE customer_id = ANY($1) AND resource = $2 AND first_seen_at >= $3`, in.Customers, in.Resource, in.EffectsSince)
	if err != nil {
		return nil, fmt.Errorf("read sync_state: %w", err)
	}
	defer srows.Close()
	for srows.Next() {
		var c, id string
		if err := srows.Scan(&c, &id); err != nil {
			return nil, err
		}
		for _, a := range in.Actions {
			if enq[key{c, id, a}] == 0 {
				r.EffectsMissing++
				r.example("effect missing: %s/%s action %s", c, id, a)
			}
		}
	}
	return dup, srows.Err()
}

// audit requires an audit row for every version in the stream.
func audit(ctx context.Context, in Input, r *Report) error {
	byCustomer := map[string][]Version{}
	for v := range in.Published {
		if in.Skip[v.Customer+"/"+v.ID] {
			continue
		}
		byCustomer[v.Customer] = append(byCustomer[v.Customer], v)
	}
	for _, c := range in.Customers {
		vs := byCustomer[c]
		r.Published += len(vs)
		if len(vs) == 0 {
			continue
		}
		ids := make([]string, len(vs))
		ats := make([]time.Time, len(vs))
		for i, v := range vs {
			ids[i], ats[i] = v.ID, time.UnixMicro(v.At).UTC()
		}
		rows, err := in.Pool.Query(ctx, `SELECT v.id, v.at FROM unnest($2::text[], $3::timestamptz[]) AS v(id, at)
			WHERE NOT EXISTS (SELECT 1 FROM vomosync.audit_log a
				WHERE a.customer_id = $1 AND a.resource = $4 AND a.record_id = v.id AND a.record_updated_at = v.at)`,
			c, ids, ats, in.Resource)
		if err != nil {
			return fmt.Errorf("audit of %s: %w", c, err)
		}
		var missing []string
		for rows.Next() {
			var id string
			var at time.Time
			if err := rows.Scan(&id, &at); err != nil {
				rows.Close()
				return err
			}
			missing = append(missing, Version{c, id, at.UnixMicro()}.String())
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		sort.Strings(missing)
		r.AuditMissing += len(missing)
		for _, m := range missing {
			r.example("audit missing: %s", m)
		}
	}
	return nil
}

// StreamContents is what ReadStream found.
type StreamContents struct {
	Versions map[Version]int
	// Undecodable counts messages that are not change events.
	Undecodable int
	Messages    int
}

// ReadStream reads every change event of resource in the change stream.
func ReadStream(ctx context.Context, js jetstream.JetStream, resource string) (StreamContents, error) {
	out := StreamContents{Versions: map[Version]int{}}
	st, err := js.Stream(ctx, messaging.StreamChanges)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("stream %s: %w", messaging.StreamChanges, err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{messaging.ChangesPrefix + ".*." + resource}})
	if err != nil {
		return out, fmt.Errorf("ordered consumer: %w", err)
	}
	for {
		batch, err := cons.Fetch(5000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return out, fmt.Errorf("fetch: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			out.Messages++
			ev, err := messaging.Decode(m.Data())
			if err != nil {
				out.Undecodable++
				continue
			}
			out.Versions[Version{Customer: ev.GetCustomerId(), ID: ev.GetRecordId(), At: ev.GetSourceUpdatedAt().AsTime().UnixMicro()}]++
		}
		if err := batch.Error(); err != nil {
			return out, fmt.Errorf("fetch: %w", err)
		}
		if n == 0 {
			return out, nil
		}
	}
}
