package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vomosync/vomosync/pkg/vomo"
)

// checkDrift fetches the sampled matching records in detail and compares
// them field by field with the record last delivered (sync_state.record,
// kept by the processor). A field that differs while updated_at is the same
// is a change the source made without moving updated_at: polling never sees
// it. The listed records were already compared whole during the walk; the
// detail read also catches a list that serves stale fields.
func (r *Reconciler) checkDrift(ctx context.Context, src Source, s *session) error {
	res := s.res
	if len(s.sample) == 0 {
		return nil
	}
	ids := make([]string, len(s.sample))
	for i, rec := range s.sample {
		ids[i] = rec.ID
	}
	rows, err := r.DB.Query(ctx, `SELECT record_id, record FROM vomosync.sync_state
		WHERE customer_id = $1 AND resource = $2 AND record_id = ANY($3) AND record IS NOT NULL`, res.CustomerID, res.Resource, ids)
	if err != nil {
		return fmt.Errorf("read delivered records: %w", err)
	}
	delivered := map[string]json.RawMessage{}
	var id string
	var rec json.RawMessage
	if _, err := pgx.ForEachRow(rows, []any{&id, &rec}, func() error {
		delivered[id] = append(json.RawMessage(nil), rec...)
		return nil
	}); err != nil {
		return fmt.Errorf("read delivered records: %w", err)
	}
	for _, rec := range s.sample {
		d, ok := delivered[rec.ID]
		if !ok {
			continue
		}
		detail, err := src.Get(ctx, "/"+res.Resource+"/"+rec.ID)
		res.Requests++
		alive(ctx)
		switch {
		case errors.Is(err, vomo.ErrNotFound):
			continue // deleted since the walk; the next full run sees it
		case err != nil && ctx.Err() != nil:
			return err
		case err != nil:
			res.note("drift check stopped after %d records: %v", res.DriftChecked, err)
			return nil
		}
		res.DriftChecked++
		diffs, moved, err := compareFields(d, detail)
		if moved || (err == nil && len(diffs) == 0) {
			continue // changed normally since the walk, or no drift
		}
		raw, perr := project(rec.Raw, detail)
		if perr != nil {
			raw = rec.Raw
		}
		_, err = s.conn.Exec(ctx, `INSERT INTO pg_temp.recon_gap (record_id, class, source_updated_at, dest_updated_at, raw, detail)
			VALUES ($1, 'field_drift', $2, $2, $3, $4)`, rec.ID, rec.UpdatedAt.UTC(), raw, driftDetail(diffs, err, "detail"))
		if err != nil {
			return fmt.Errorf("record field drift: %w", err)
		}
		res.DriftFound++
	}
	return nil
}

func driftDetail(diffs []string, err error, what string) string {
	if err != nil {
		return fmt.Sprintf("the %s record cannot be compared with the delivered one: %v", what, err)
	}
	return fmt.Sprintf("the %s record differs from the delivered one with the same updated_at in: %s", what, strings.Join(diffs, ", "))
}

// compareFields compares every field of the delivered record that the
// detail record also has (the detail adds fields the list never carries).
// moved reports that updated_at itself differs: a normal change, not drift.
func compareFields(delivered, detail json.RawMessage) (diffs []string, moved bool, err error) {
	var a, b map[string]json.RawMessage
	if err := json.Unmarshal(delivered, &a); err != nil {
		return nil, false, fmt.Errorf("delivered record is not a JSON object: %w", err)
	}
	if err := json.Unmarshal(detail, &b); err != nil {
		return nil, false, fmt.Errorf("detail record is not a JSON object: %w", err)
	}
	for k, av := range a {
		bv, ok := b[k]
		if !ok || sameValue(av, bv) {
			continue
		}
		if k == "updated_at" {
			return nil, true, nil
		}
		diffs = append(diffs, k)
	}
	slices.Sort(diffs)
	return diffs, false, nil
}

// project returns the list-shaped record with every field the detail record
// also has replaced by the detail's value: what a repair publishes.
func project(list, detail json.RawMessage) ([]byte, error) {
	var l, d map[string]json.RawMessage
	if err := json.Unmarshal(list, &l); err != nil {
		return nil, fmt.Errorf("listed record is not a JSON object: %w", err)
	}
	if err := json.Unmarshal(detail, &d); err != nil {
		return nil, fmt.Errorf("detail record is not a JSON object: %w", err)
	}
	for k := range l {
		if v, ok := d[k]; ok {
			l[k] = v
		}
	}
	return json.Marshal(l)
}

// sameValue compares two JSON values modulo VOMO's wire variants: ids as
// numbers or strings, booleans as 0/1, timestamps in any documented layout.
func sameValue(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	if decode(a, &x) != nil || decode(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(normalize(x), normalize(y))
}

func decode(b []byte, v *any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.000000Z", "2006-01-02 15:04:05"}

func normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		return x.String()
	case bool:
		if x {
			return "1"
		}
		return "0"
	case string:
		for _, l := range timeLayouts {
			if t, err := time.Parse(l, x); err == nil {
				return t.UTC().Format(time.RFC3339Nano)
			}
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	default:
		return v
	}
}
