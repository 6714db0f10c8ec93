package destination

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Postgres writes one table per resource in a schema of the vomosync
// database (vomosync.ensure_destination_schema creates them). Upserts and
// soft deletes keep the newest source version per (customer, external id);
// hard deletes remove the row.
type Postgres struct {
	schema     string
	hardDelete bool
}

var schemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// NewPostgres returns the destination for schema. It fails for a schema that
// is not a plain lower-case identifier.
func NewPostgres(schema string, hardDelete bool) (*Postgres, error) {
	if !schemaRE.MatchString(schema) {
		return nil, fmt.Errorf("%w: destination schema %q is not a plain lower-case identifier", ErrRejected, schema)
	}
	return &Postgres{schema: schema, hardDelete: hardDelete}, nil
}

// EnsureSchema creates the schema's tables when missing (idempotent).
func EnsureSchema(ctx context.Context, db interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, schema string) error {
	// Serialised by an advisory lock held until the statement commits:
	// concurrent CREATE ... IF NOT EXISTS of the same tables fails with
	// "tuple concurrently updated" (workers or replicas starting together).
	if _, err := db.Exec(ctx, `SELECT vomosync.ensure_destination_schema($1)
		FROM (SELECT pg_advisory_xact_lock(hashtext('vomosync.ensure_destination_schema'))) AS serialised`, schema); err != nil {
		return fmt.Errorf("ensure destination schema %s: %w", schema, err)
	}
	return nil
}

// Apply implements Destination: one statement per resource and kind.
func (p *Postgres) Apply(ctx context.Context, tx pgx.Tx, ops []Op) ([]error, error) {
	if tx == nil {
		return nil, errors.New("postgres destination needs the batch transaction")
	}
	res := make([]error, len(ops))
	type group struct {
		resource string
		del      bool
	}
	idx := map[group][]int{}
	var order []group
	for i, op := range ops {
		g := group{op.Resource, op.Delete}
		if _, ok := idx[g]; !ok {
			order = append(order, g)
		}
		idx[g] = append(idx[g], i)
	}
	// A fixed order of statements keeps lock order equal across replicas.
	slices.SortFunc(order, func(a, b group) int {
		if a.resource != b.resource {
			if a.resource < b.resource {
				return -1
			}
			return 1
		}
		if a.del == b.del {
			return 0
		}
		if !a.del {
			return -1
		}
		return 1
	})
	for _, g := range order {
		if err := p.write(ctx, tx, g.resource, g.del, ops, idx[g], res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// ApplyStaged is Apply for the processor's fast path: the records are not
// sent again but copied from stage, the batch's temporary table in the same
// transaction (columns idx, customer_id, external_id, source_updated_at,
// record, trace_id); rows[i] is the stage row of ops[i], and news[i] says
// that the caller's state write found no earlier version of it. Deletes take
// the ordinary path. When some upsert finds a newer version in place it returns
// an error wrapping ErrStale without saying which, and a row already there
// for a record news calls new fails the insert (ErrRejected): either way the
// caller rolls back and uses Apply, which settles each record.
func (p *Postgres) ApplyStaged(ctx context.Context, tx pgx.Tx, stage string, rows []int32, news []bool, ops []Op) ([]error, error) {
	if len(rows) != len(ops) || len(news) != len(ops) {
		return nil, fmt.Errorf("%d stage rows and %d flags for %d ops", len(rows), len(news), len(ops))
	}
	res := make([]error, len(ops))
	byResource := map[string][]int{}
	var resources []string
	var deletes []Op
	var deleteAt []int
	for i, op := range ops {
		if op.Delete {
			deletes, deleteAt = append(deletes, op), append(deleteAt, i)
			continue
		}
		if _, ok := byResource[op.Resource]; !ok {
			resources = append(resources, op.Resource)
		}
		byResource[op.Resource] = append(byResource[op.Resource], i)
	}
	slices.Sort(resources)
	for _, resource := range resources {
		var fresh, seen []int32
		for _, i := range byResource[resource] {
			if news[i] {
				fresh = append(fresh, rows[i])
			} else {
				seen = append(seen, rows[i])
			}
		}
		table := pgx.Identifier{p.schema, resource}.Sanitize()
		// Both cached as generic plans: they join only the small stage table.
		insert := `INSERT INTO ` + table + ` AS d (customer_id, external_id, source_updated_at, deleted, deleted_at, record, trace_id, synced_at)
			SELECT s.customer_id, s.external_id, s.source_updated_at, false, NULL, s.record, s.trace_id, now()
			FROM ` + stage + ` s JOIN unnest($1::int[]) AS w(idx) ON w.idx = s.idx
			ORDER BY s.customer_id, s.external_id`
		if len(fresh) > 0 {
			// Records the state write inserted have no destination row yet: a
			// plain insert skips ON CONFLICT's extra probe of the key index
			// (a row there anyway fails the batch over to the general path).
			if _, err := tx.Exec(ctx, insert, fresh); err != nil {
				return nil, classify(resource, err)
			}
		}
		if len(seen) == 0 {
			continue
		}
		tag, err := tx.Exec(ctx, insert+`
			ON CONFLICT (customer_id, external_id) DO UPDATE SET source_updated_at = EXCLUDED.source_updated_at,
				deleted = false, deleted_at = NULL, record = EXCLUDED.record, trace_id = EXCLUDED.trace_id, synced_at = now()
			WHERE d.source_updated_at < EXCLUDED.source_updated_at`, seen)
		if err != nil {
			return nil, classify(resource, err)
		}
		if n := int(tag.RowsAffected()); n != len(seen) {
			return nil, fmt.Errorf("%w: %d of %d %s rows found a newer version in place", ErrStale, len(seen)-n, len(seen), resource)
		}
	}
	if len(deletes) > 0 {
		r, err := p.Apply(ctx, tx, deletes)
		if err != nil {
			return nil, err
		}
		for j, i := range deleteAt {
			res[i] = r[j]
		}
	}
	return res, nil
}

func (p *Postgres) write(ctx context.Context, tx pgx.Tx, resource string, del bool, ops []Op, which []int, res []error) error {
	n := len(which)
	cust, ext, trace := make([]string, n), make([]string, n), make([]string, n)
	upd := make([]time.Time, n)
	recs := make([][]byte, n)
	for j, i := range which {
		op := ops[i]
		cust[j], ext[j], upd[j], trace[j] = op.CustomerID, op.ExternalID, op.SourceUpdatedAt, op.TraceID
		recs[j] = op.Record
	}
	table := pgx.Identifier{p.schema, resource}.Sanitize()
	var sql string
	args := []any{cust, ext, upd}
	switch {
	case !del:
		sql = `INSERT INTO ` + table + ` AS d (customer_id, external_id, source_updated_at, deleted, deleted_at, record, trace_id, synced_at)
			SELECT c, e, u, false, NULL, r, t, now() FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::jsonb[], $5::text[]) AS x(c, e, u, r, t)
			ON CONFLICT (customer_id, external_id) DO UPDATE SET source_updated_at = EXCLUDED.source_updated_at,
				deleted = false, deleted_at = NULL, record = EXCLUDED.record, trace_id = EXCLUDED.trace_id, synced_at = now()
			WHERE d.source_updated_at < EXCLUDED.source_updated_at
			RETURNING external_id, customer_id`
		args = append(args, recs, trace)
	case p.hardDelete:
		sql = `DELETE FROM ` + table + ` AS d USING unnest($1::text[], $2::text[], $3::timestamptz[]) AS x(c, e, u)
			WHERE d.customer_id = x.c AND d.external_id = x.e AND d.source_updated_at < x.u
			RETURNING d.external_id, d.customer_id`
	default:
		// A soft delete keeps the last record; a delete of a row never
		// written leaves a tombstone so an older upsert cannot resurrect it.
		sql = `INSERT INTO ` + table + ` AS d (customer_id, external_id, source_updated_at, deleted, deleted_at, record, trace_id, synced_at)
			SELECT c, e, u, true, u, NULL, t, now() FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS x(c, e, u, t)
			ON CONFLICT (customer_id, external_id) DO UPDATE SET source_updated_at = EXCLUDED.source_updated_at,
				deleted = true, deleted_at = EXCLUDED.source_updated_at, trace_id = EXCLUDED.trace_id, synced_at = now()
			WHERE d.source_updated_at < EXCLUDED.source_updated_at
			RETURNING external_id, customer_id`
		args = append(args, trace)
	}
	// Planned with the actual arrays each time: a generic plan cached while
	// the table was small would keep scanning it whole once it is large.
	rows, err := tx.Query(ctx, sql, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
	if err != nil {
		return classify(resource, err)
	}
	written := make(map[[2]string]bool, n)
	for rows.Next() {
		var e, c string
		if err := rows.Scan(&e, &c); err != nil {
			rows.Close()
			return classify(resource, err)
		}
		written[[2]string{c, e}] = true
	}
	if err := rows.Err(); err != nil {
		return classify(resource, err)
	}
	for j, i := range which {
		// A hard delete of an absent row is done; anything else not written
		// found a newer version in place.
		if !written[[2]string{cust[j], ext[j]}] && !(del && p.hardDelete) {
			res[i] = ErrStale
		}
	}
	return nil
}

// classify maps driver errors: bad data is the record's fault (permanent),
// anything else (connection, lock, timeout) is worth retrying.
func classify(resource string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "22", "23", "54": // data exception, integrity violation, a value over a limit
			return fmt.Errorf("%w: write %s: %s (%s)", ErrRejected, resource, pgErr.Message, pgErr.Code)
		case "42": // undefined table: schema not set up, fixable by configuration
			return fmt.Errorf("%w: write %s: %s (%s)", ErrUnavailable, resource, pgErr.Message, pgErr.Code)
		}
		if pgErr.Code == "40P01" || pgErr.Code == "40001" {
			return err // the batch is retried whole
		}
	}
	return fmt.Errorf("%w: write %s: %w", ErrUnavailable, resource, err)
}
