package reconcile

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// CompareFields exposes compareFields to the external tests.
var CompareFields = compareFields

// ExplainDeletions plans the deletion-candidate query as a run does after
// its walk listed ids: the session records and indexes them with its own
// code, then EXPLAIN shows the plan.
func ExplainDeletions(ctx context.Context, conn *pgx.Conn, cust, resource string, ids []string) (string, error) {
	s, err := newSession(ctx, conn, cust, resource, &RunResult{}, 500, 0)
	if err != nil {
		return "", err
	}
	defer s.close()
	if err := s.recordSeen(ctx, ids); err != nil {
		return "", err
	}
	if _, err := s.sourceRecords(ctx); err != nil {
		return "", err
	}
	rows, err := conn.Query(ctx, `EXPLAIN SELECT d.record_id `+deletionCandidates, cust, resource, time.Now())
	if err != nil {
		return "", err
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return strings.Join(plan, "\n"), err
}
