package poll

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vomosync/vomosync/pkg/faults"
	"github.com/vomosync/vomosync/pkg/vomo"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
)

// Default participation windows: dates that started up to 30 days ago (hours
// and check-outs are still being entered) and those starting in the next 60
// (sign-ups). Older dates are settled; reconciliation covers them.
const (
	DefaultParticipationRecent   = 30 * 24 * time.Hour
	DefaultParticipationUpcoming = 60 * 24 * time.Hour
)

// Detailer reads one record; participations need project and date details.
type Detailer interface {
	Get(ctx context.Context, path string) (json.RawMessage, error)
}

type projectDetail struct {
	AllDates []struct {
		ID       vomo.ID   `json:"id"`
		StartsAt vomo.Time `json:"starts_at"`
	} `json:"all_dates"`
}

type dateDetail struct {
	ID           vomo.ID           `json:"id"`
	Participants []json.RawMessage `json:"participants"`
}

type participant struct {
	UserID vomo.ID `json:"user_id"`
}

type partState struct {
	dateID string
	hash   []byte
}

// participations derives participation changes from the participants of
// recent and upcoming project dates: a participant added or changed (check
// in/out, hours, verification) is an upsert, one gone from a date read in
// full is a delete. The observation's server time is the version the
// processor's guard orders on.
func (w *walk) participations(ctx context.Context) error {
	det, ok := w.req.Source.(Detailer)
	if !ok {
		return fmt.Errorf("participations need a source that reads details")
	}
	var projects []string
	var observed time.Time
	stats, err := w.req.Source.Walk(ctx, "/projects", url.Values{}, func(_ context.Context, p vomo.Page) error {
		w.c.Faults.Point(faults.PollerAfterFetch)
		if observed.IsZero() {
			observed = p.ServerTime.UTC()
		}
		for _, r := range p.Records {
			projects = append(projects, r.ID)
		}
		return nil
	})
	w.count(stats)
	if err != nil {
		return fmt.Errorf("list projects: %w", err)
	}
	w.to = observed
	prev, err := loadParticipations(ctx, w.c.DB, w.req.Customer.ID)
	if err != nil {
		return err
	}
	seen := map[string]partState{}
	readDates := map[string]bool{}
	for _, pid := range projects {
		raw, err := det.Get(ctx, "/projects/"+url.PathEscape(pid))
		w.res.Requests++
		if err != nil {
			return fmt.Errorf("project %s: %w", pid, err)
		}
		var pd projectDetail
		if err := json.Unmarshal(raw, &pd); err != nil {
			return fmt.Errorf("project %s: %w", pid, err)
		}
		for _, d := range pd.AllDates {
			if d.StartsAt.Before(observed.Add(-w.c.recent())) || d.StartsAt.After(observed.Add(w.c.upcoming())) {
				continue
			}
			raw, err := det.Get(ctx, "/projects/date/"+url.PathEscape(string(d.ID)))
			w.res.Requests++
			if err != nil {
				return fmt.Errorf("project date %s: %w", d.ID, err)
			}
			var dd dateDetail
			if err := json.Unmarshal(raw, &dd); err != nil {
				return fmt.Errorf("project date %s: %w", d.ID, err)
			}
			readDates[string(d.ID)] = true
			for _, praw := range dd.Participants {
				var p participant
				if err := json.Unmarshal(praw, &p); err != nil {
					return fmt.Errorf("participant of date %s: %w", d.ID, err)
				}
				key := string(d.ID) + ":" + string(p.UserID)
				sum := sha256.Sum256(praw)
				seen[key] = partState{dateID: string(d.ID), hash: sum[:]}
				w.res.RecordsSeen++
				if old, ok := prev[key]; ok && bytes.Equal(old.hash, sum[:]) {
					continue
				}
				if err := w.emit(ctx, key, eventsv1.Operation_OPERATION_UPSERT, observed, praw); err != nil {
					return err
				}
			}
		}
	}
	var gone []string
	for key, old := range prev {
		if _, ok := seen[key]; !ok && readDates[old.dateID] {
			gone = append(gone, key)
			if err := w.emit(ctx, key, eventsv1.Operation_OPERATION_DELETE, observed, nil); err != nil {
				return err
			}
		}
	}
	if err := w.flush(ctx); err != nil {
		return err
	}
	w.trusted = stats.Trusted
	if !stats.Trusted {
		w.reason = stats.Reason
		return nil
	}
	w.maxPublished = observed
	if w.c.DryRun {
		return nil
	}
	// Published and acknowledged: remember what was handed on.
	return saveParticipations(ctx, w.c.DB, w.req.Customer.ID, seen, prev, gone, observed)
}

func (w *walk) emit(ctx context.Context, key string, op eventsv1.Operation, at time.Time, raw []byte) error {
	return w.req.Sink.Add(ctx, &eventsv1.ChangeEvent{
		CustomerId: w.req.Customer.ID, Resource: w.req.Resource, RecordId: key, Operation: op,
		SourceUpdatedAt: timestamppb.New(at), Record: raw, Origin: originOf(w.origin),
		CycleId: w.res.ID, ObservedAt: timestamppb.New(w.c.now()),
	})
}

func loadParticipations(ctx context.Context, db interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, cust string) (map[string]partState, error) {
	rows, err := db.Query(ctx, `SELECT key, date_id, content_hash FROM vomosync.participation_state WHERE customer_id = $1`, cust)
	if err != nil {
		return nil, fmt.Errorf("load participations: %w", err)
	}
	defer rows.Close()
	out := map[string]partState{}
	for rows.Next() {
		var k string
		var s partState
		if err := rows.Scan(&k, &s.dateID, &s.hash); err != nil {
			return nil, fmt.Errorf("load participations: %w", err)
		}
		out[k] = s
	}
	return out, rows.Err()
}

func saveParticipations(ctx context.Context, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}, cust string, seen, prev map[string]partState, gone []string, at time.Time) error {
	var keys, dates []string
	var hashes [][]byte
	for k, s := range seen {
		if old, ok := prev[k]; ok && bytes.Equal(old.hash, s.hash) {
			continue
		}
		keys, dates, hashes = append(keys, k), append(dates, s.dateID), append(hashes, s.hash)
	}
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO vomosync.participation_state (customer_id, key, date_id, content_hash, seen_at)
			SELECT $1, k, d, h, $5 FROM unnest($2::text[], $3::text[], $4::bytea[]) AS t(k, d, h)
			ON CONFLICT (customer_id, key) DO UPDATE SET content_hash = EXCLUDED.content_hash, seen_at = EXCLUDED.seen_at`,
			cust, keys, dates, hashes, at); err != nil {
			return fmt.Errorf("save participations: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM vomosync.participation_state WHERE customer_id = $1 AND key = ANY($2)`, cust, gone); err != nil {
			return fmt.Errorf("save participations: %w", err)
		}
		return nil
	})
}

func (c *Cycler) recent() time.Duration {
	if c.ParticipationRecent > 0 {
		return c.ParticipationRecent
	}
	return DefaultParticipationRecent
}

func (c *Cycler) upcoming() time.Duration {
	if c.ParticipationUpcoming > 0 {
		return c.ParticipationUpcoming
	}
	return DefaultParticipationUpcoming
}
