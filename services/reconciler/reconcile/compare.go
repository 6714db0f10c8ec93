package reconcile

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vomosync/vomosync/pkg/vomo"
)

// session is the streaming comparison of one run. Source records arrive page
// by page; every BatchSize of them is compared with sync_state in one round
// trip, their ids are copied into a temp table (for deletion detection) and
// their gaps, with the raw record a repair needs, into another. Go memory is
// one batch plus the drift sample, whatever the customer's size; Postgres
// holds ~40 bytes per source record plus the raw of each gap, on disk.
type session struct {
	conn      *pgx.Conn
	customer  string
	resource  string
	res       *RunResult
	batchSize int

	batch []vomo.Record // filling, owned by the walk
	gaps  [][]any       // owned by the comparing goroutine

	// Full batches go to one goroutine that compares them on conn while
	// the walk fetches the next pages: the run costs about the longer of
	// the two, not their sum. Two batches queued at most (memory bound).
	queue    chan []vomo.Record
	done     chan error
	finished bool
	result   error

	// Reservoir sample of records that matched, for the detail comparison.
	sampleSize int

	// The Postgres destination table compared with sync_state (full runs;
	// "" when not compared) and whether it hard-deletes.
	dest     string
	destHard bool
	sample   []vomo.Record
	matched  int
}

func newSession(ctx context.Context, conn *pgx.Conn, cust, resource string, res *RunResult, batchSize, sampleSize int) (*session, error) {
	// Temp tables live on this connection only; drop leftovers of a run that
	// died on it.
	_, err := conn.Exec(ctx, `DROP TABLE IF EXISTS pg_temp.recon_seen, pg_temp.recon_gap;
		CREATE TEMP TABLE recon_seen (record_id text NOT NULL);
		CREATE TEMP TABLE recon_gap (
			record_id         text NOT NULL,
			class             text NOT NULL,
			source_updated_at timestamptz,
			dest_updated_at   timestamptz,
			dest_deleted      boolean NOT NULL DEFAULT false,
			raw               bytea,
			detail            text NOT NULL DEFAULT '');
		CREATE INDEX ON recon_gap (record_id)`)
	if err != nil {
		return nil, fmt.Errorf("create comparison tables: %w", err)
	}
	return &session{conn: conn, customer: cust, resource: resource, res: res, batchSize: batchSize,
		sampleSize: max(sampleSize, 0)}, nil
}

func (s *session) close() {
	// A run that ends early (cancelled, failed) must stop the comparison
	// before the connection is used again.
	if s.queue != nil && !s.finished {
		close(s.queue)
		<-s.done
		s.finished = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.conn.Exec(ctx, `DROP TABLE IF EXISTS pg_temp.recon_seen, pg_temp.recon_gap`); err != nil {
		// A connection that cannot drop its temp tables is not reused.
		_ = s.conn.Close(ctx)
	}
}

// add queues one source record; a full batch goes to the comparison.
func (s *session) add(ctx context.Context, rec vomo.Record) error {
	s.batch = append(s.batch, rec)
	if len(s.batch) < s.batchSize {
		return nil
	}
	return s.send(ctx)
}

func (s *session) send(ctx context.Context) error {
	if s.finished {
		return s.result
	}
	if s.queue == nil {
		s.start(ctx)
	}
	select {
	case s.queue <- s.batch:
		s.batch = make([]vomo.Record, 0, s.batchSize)
		return nil
	case err := <-s.done:
		// The comparison failed: stop it and the walk.
		close(s.queue)
		s.finished, s.result = true, err
		return err
	}
}

// start runs the comparing goroutine. It sends exactly one result on done:
// the first failure at once (later batches are drained, not compared), or
// nil once the queue is closed.
func (s *session) start(ctx context.Context) {
	q, done := make(chan []vomo.Record, 1), make(chan error, 1)
	s.queue, s.done = q, done
	go func() {
		var err error
		for batch := range q {
			if err != nil {
				continue
			}
			if err = s.compare(ctx, batch); err != nil {
				done <- err
			}
		}
		if err == nil {
			done <- nil
		}
	}()
}

// flush compares what is queued and waits for the comparison to finish. It
// may be called more than once.
func (s *session) flush(ctx context.Context) error {
	if s.finished {
		return s.result
	}
	if len(s.batch) > 0 {
		if err := s.send(ctx); err != nil {
			return err
		}
	}
	if s.queue == nil {
		return nil
	}
	close(s.queue)
	s.finished, s.result = true, <-s.done
	return s.result
}

// compareBatch looks a batch up in sync_state. The delivered record comes
// back only when it differs from the listed one as jsonb (rare), so the
// comparison of every field of every record costs no extra traffic.
const compareBatch = `
SELECT s.ord, d.source_updated_at, d.deleted,
	CASE WHEN d.record IS NOT NULL AND d.record <> s.raw::jsonb THEN d.record END
FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS s(id, raw, ord)
JOIN vomosync.sync_state d ON d.customer_id = $1 AND d.resource = $2 AND d.record_id = s.id`

type destRow struct {
	updatedAt time.Time
	deleted   bool
	differs   []byte // the delivered record when it differs from the listed one
}

// compare compares one batch with the destination.
func (s *session) compare(ctx context.Context, batch []vomo.Record) error {
	ids := make([]string, len(batch))
	raws := make([]string, len(batch))
	for i, r := range batch {
		ids[i], raws[i] = r.ID, string(r.Raw)
	}
	rows, err := s.conn.Query(ctx, compareBatch, s.customer, s.resource, ids, raws)
	if err != nil {
		return fmt.Errorf("compare batch: %w", err)
	}
	dest := make([]*destRow, len(batch))
	for rows.Next() {
		var ord int
		d := &destRow{}
		if err := rows.Scan(&ord, &d.updatedAt, &d.deleted, &d.differs); err != nil {
			rows.Close()
			return fmt.Errorf("compare batch: %w", err)
		}
		dest[ord-1] = d
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("compare batch: %w", err)
	}
	horizon := s.res.Horizon
	for i, rec := range batch {
		u := version(rec.UpdatedAt)
		if u.After(horizon) {
			// Newer than the checkpoint: the poller has not handed it on yet.
			s.res.Pending++
			continue
		}
		s.res.Compared++
		d := dest[i]
		switch {
		case d == nil:
			s.gap(rec, ClassMissing, nil, false, "")
		case d.deleted:
			s.gap(rec, ClassMissing, &d.updatedAt, true, "the destination marks it deleted")
		case version(d.updatedAt).Before(u):
			s.gap(rec, ClassStale, &d.updatedAt, false, "")
		case version(d.updatedAt).Equal(u) && d.differs != nil:
			// Same version, other bytes: wire variants (ids as strings,
			// timestamp layouts) are not drift; changed values are.
			diffs, _, err := compareFields(d.differs, rec.Raw)
			if err != nil || len(diffs) > 0 {
				s.gap(rec, ClassFieldDrift, &d.updatedAt, false, driftDetail(diffs, err, "listed"))
				continue
			}
			s.offerSample(rec)
		default:
			s.offerSample(rec)
		}
	}
	if err := s.recordSeen(ctx, ids); err != nil {
		return err
	}
	if len(s.gaps) > 0 {
		if _, err := s.conn.CopyFrom(ctx, pgx.Identifier{"recon_gap"},
			[]string{"record_id", "class", "source_updated_at", "dest_updated_at", "dest_deleted", "raw", "detail"},
			pgx.CopyFromRows(s.gaps)); err != nil {
			return fmt.Errorf("record gap candidates: %w", err)
		}
	}
	s.gaps = s.gaps[:0]
	return nil
}

// recordSeen adds ids the walk listed to recon_seen.
func (s *session) recordSeen(ctx context.Context, ids []string) error {
	seen := make([][]any, len(ids))
	for i, id := range ids {
		seen[i] = []any{id}
	}
	if _, err := s.conn.CopyFrom(ctx, pgx.Identifier{"recon_seen"}, []string{"record_id"}, pgx.CopyFromRows(seen)); err != nil {
		return fmt.Errorf("record seen ids: %w", err)
	}
	return nil
}

// version is the comparable form of an updated_at. VOMO stamps whole
// seconds; a drift repair is stamped a microsecond after the version it
// corrects (see repair), and is still that version.
func version(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

func (s *session) gap(rec vomo.Record, class string, destAt *time.Time, destDeleted bool, detail string) {
	s.gaps = append(s.gaps, []any{rec.ID, class, rec.UpdatedAt.UTC(), destAt, destDeleted, []byte(rec.Raw), detail})
}

// offerSample keeps a uniform random sample of matching records
// (reservoir sampling), so the drift check sees every part of the walk.
func (s *session) offerSample(rec vomo.Record) {
	s.matched++
	if s.sampleSize == 0 {
		return
	}
	keep := vomo.Record{ID: rec.ID, UpdatedAt: rec.UpdatedAt, Raw: append([]byte(nil), rec.Raw...)}
	if len(s.sample) < s.sampleSize {
		s.sample = append(s.sample, keep)
		return
	}
	if j := rand.IntN(s.matched); j < s.sampleSize {
		s.sample[j] = keep
	}
}

// sourceRecords counts distinct records the walk listed.
// The seen ids are indexed (built once, after the walk) as recon_gap is
// from the start: the anti-joins against them must never scan them once per
// sync_state row. They did when sync_state had no statistics (never
// analyzed: autovacuum had been cut short by repeated crashes), and a
// 50,000-record run planned as a nested loop was still running after 14
// minutes.
func (s *session) sourceRecords(ctx context.Context) (int, error) {
	if _, err := s.conn.Exec(ctx, `CREATE INDEX IF NOT EXISTS recon_seen_id ON pg_temp.recon_seen (record_id);
		ANALYZE pg_temp.recon_seen`); err != nil {
		return 0, fmt.Errorf("index seen ids: %w", err)
	}
	var n int
	if err := s.conn.QueryRow(ctx, `SELECT count(DISTINCT record_id) FROM pg_temp.recon_seen`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count seen ids: %w", err)
	}
	return n, nil
}

const deletionCandidates = `
FROM vomosync.sync_state d
WHERE d.customer_id = $1 AND d.resource = $2 AND NOT d.deleted AND d.source_updated_at < $3
  AND NOT EXISTS (SELECT 1 FROM pg_temp.recon_seen s WHERE s.record_id = d.record_id)`

// deletions finds destination records a complete, trusted walk did not list.
// Each candidate (or a random sample of ConfirmDeletes when there are more)
// is confirmed by a detail read answering 404 before anything is inferred:
// a record the walk skipped must never look deleted. Records written at the
// source after the walk started (source_updated_at >= walkStart) are left alone.
func (s *session) deletions(ctx context.Context, src Source, walkStart time.Time, limit int) error {
	var n int
	if err := s.conn.QueryRow(ctx, `SELECT count(*) `+deletionCandidates, s.customer, s.resource, walkStart).Scan(&n); err != nil {
		return fmt.Errorf("count deletion candidates: %w", err)
	}
	if n == 0 {
		return nil
	}
	rows, err := s.conn.Query(ctx, `SELECT d.record_id `+deletionCandidates+` ORDER BY random() LIMIT $4`,
		s.customer, s.resource, walkStart, limit)
	if err != nil {
		return fmt.Errorf("sample deletion candidates: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("sample deletion candidates: %w", err)
	}
	for _, id := range ids {
		_, err := src.Get(ctx, "/"+s.resource+"/"+id)
		s.res.Requests++
		alive(ctx)
		switch {
		case errors.Is(err, vomo.ErrNotFound):
			continue
		case err == nil:
			s.res.Trusted = false
			s.res.Untrusted = fmt.Sprintf("record %s is at the source but the walk did not list it: no deletion inferred", id)
			return nil
		case ctx.Err() != nil:
			return err
		default:
			s.res.Trusted = false
			s.res.Untrusted = fmt.Sprintf("could not confirm that record %s was deleted: %v", id, err)
			return nil
		}
	}
	if n > len(ids) {
		s.res.note("%d deletion candidates, %d confirmed by a detail read (sample)", n, len(ids))
	}
	_, err = s.conn.Exec(ctx, `INSERT INTO pg_temp.recon_gap (record_id, class, dest_updated_at)
		SELECT d.record_id, 'deleted', d.source_updated_at `+deletionCandidates, s.customer, s.resource, walkStart)
	if err != nil {
		return fmt.Errorf("record deletions: %w", err)
	}
	return nil
}

// addUntrusted records the untrusted walk itself as a gap (record_id "*").
func (s *session) addUntrusted(ctx context.Context, reason string) error {
	_, err := s.conn.Exec(ctx, `INSERT INTO pg_temp.recon_gap (record_id, class, detail) VALUES ('*', 'untrusted_walk', $1)`, reason)
	if err != nil {
		return fmt.Errorf("record untrusted walk: %w", err)
	}
	return nil
}

// reverify drops candidates the processor applied while the run walked.
func (s *session) reverify(ctx context.Context) (int, error) {
	tag, err := s.conn.Exec(ctx, `DELETE FROM pg_temp.recon_gap g USING vomosync.sync_state d
		WHERE g.class IN ('missing', 'stale') AND d.customer_id = $1 AND d.resource = $2 AND d.record_id = g.record_id
		  AND NOT d.deleted AND d.source_updated_at >= g.source_updated_at`, s.customer, s.resource)
	if err != nil {
		return 0, fmt.Errorf("re-verify candidates: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
