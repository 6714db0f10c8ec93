// Package checkpoint owns the durable checkpoint of each customer and
// resource: the primary row in Postgres, the backup copy in a JetStream KV
// bucket, and the audited decisions that move it other than by a cycle.
package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"
)

// Epoch is the position of a customer that has never been synced.
var Epoch = time.Unix(0, 0).UTC()

// Sentinel errors.
var (
	ErrNotFound    = errors.New("checkpoint not found")
	ErrNoBackup    = errors.New("no checkpoint backup")
	ErrLeaseLost   = errors.New("poll lease lost: another poller owns this pair")
	ErrNeedsReason = errors.New("a reason is required")
)

// DBTX is what the store needs of a pool or a transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Checkpoint is the primary state of one pair.
type Checkpoint struct {
	CustomerID string
	Resource   string
	Position   time.Time
	// WalkedTo is the upper bound of the last successful cycle's window
	// (zero when unknown): every record updated before it was listed then.
	WalkedTo  time.Time
	Backfill  *Backfill
	UpdatedAt time.Time
}

// Backfill is the resume point of an unfinished walk from epoch.
type Backfill struct {
	To time.Time `json:"to"`
	// PathIndex is the list being walked when a resource spans several
	// (form completions: one list per form).
	PathIndex    int       `json:"path_index,omitempty"`
	NextPage     int       `json:"next_page"`
	Total        int       `json:"total"`
	MaxPublished time.Time `json:"max_published"`
	Changed      bool      `json:"changed"`
	Reason       string    `json:"reason,omitempty"`
}

// Get reads the primary checkpoint.
func Get(ctx context.Context, db DBTX, customer, resource string) (Checkpoint, error) {
	c := Checkpoint{CustomerID: customer, Resource: resource}
	var bf []byte
	var walked *time.Time
	err := db.QueryRow(ctx, `SELECT position, walked_to, backfill, updated_at FROM vomosync.checkpoints WHERE customer_id = $1 AND resource = $2`,
		customer, resource).Scan(&c.Position, &walked, &bf, &c.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("%w: %s/%s", ErrNotFound, customer, resource)
	}
	if err != nil {
		return c, fmt.Errorf("read checkpoint %s/%s: %w", customer, resource, err)
	}
	c.Position = c.Position.UTC()
	if walked != nil {
		c.WalkedTo = walked.UTC()
	}
	if len(bf) > 0 {
		c.Backfill = &Backfill{}
		if err := json.Unmarshal(bf, c.Backfill); err != nil {
			return c, fmt.Errorf("checkpoint %s/%s backfill cursor: %w", customer, resource, err)
		}
	}
	return c, nil
}

// List reads every checkpoint of a customer ("" = all customers).
func List(ctx context.Context, db DBTX, customer string) ([]Checkpoint, error) {
	rows, err := db.Query(ctx, `SELECT customer_id, resource, position, updated_at FROM vomosync.checkpoints
		WHERE $1 = '' OR customer_id = $1 ORDER BY customer_id, resource`, customer)
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	defer rows.Close()
	var out []Checkpoint
	for rows.Next() {
		var c Checkpoint
		if err := rows.Scan(&c.CustomerID, &c.Resource, &c.Position, &c.UpdatedAt); err != nil {
			return nil, fmt.Errorf("list checkpoints: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// CheckLease fails with ErrLeaseLost unless owner holds the poll lease of the
// pair; it locks the schedule row so the check holds until commit (fencing).
func CheckLease(ctx context.Context, tx pgx.Tx, customer, resource, owner string) error {
	var ok bool
	err := tx.QueryRow(ctx, `SELECT lease_owner = $3 AND lease_until > now() FROM vomosync.schedules
		WHERE customer_id = $1 AND resource = $2 AND kind = 'poll' FOR UPDATE`, customer, resource, owner).Scan(&ok)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("check lease %s/%s: %w", customer, resource, err)
	}
	if !ok {
		return fmt.Errorf("%w: %s/%s", ErrLeaseLost, customer, resource)
	}
	return nil
}

// Advance moves the primary checkpoint inside tx. position may equal the
// current one (nothing new); it never moves backwards here, and neither
// does walkedTo (zero: left as it is).
func Advance(ctx context.Context, tx pgx.Tx, customer, resource string, position, walkedTo time.Time, bf *Backfill, cycleID string) error {
	var bfJSON []byte
	if bf != nil {
		var err error
		if bfJSON, err = json.Marshal(bf); err != nil {
			return fmt.Errorf("encode backfill cursor: %w", err)
		}
	}
	var walked *time.Time
	if !walkedTo.IsZero() {
		w := walkedTo.UTC()
		walked = &w
	}
	_, err := tx.Exec(ctx, `INSERT INTO vomosync.checkpoints (customer_id, resource, position, walked_to, backfill, cycle_id, updated_at)
		VALUES ($1, $2, $3, $6, $4, $5::uuid, now())
		ON CONFLICT (customer_id, resource) DO UPDATE SET
			position = greatest(vomosync.checkpoints.position, EXCLUDED.position),
			walked_to = greatest(vomosync.checkpoints.walked_to, EXCLUDED.walked_to),
			backfill = EXCLUDED.backfill, cycle_id = EXCLUDED.cycle_id, updated_at = now()`,
		customer, resource, position.UTC(), bfJSON, nullUUID(cycleID), walked)
	if err != nil {
		return fmt.Errorf("advance checkpoint %s/%s: %w", customer, resource, err)
	}
	return nil
}

// SaveBackfill stores the resume point of a walk without moving the position.
func SaveBackfill(ctx context.Context, db DBTX, customer, resource string, bf *Backfill) error {
	var bfJSON []byte
	if bf != nil {
		var err error
		if bfJSON, err = json.Marshal(bf); err != nil {
			return fmt.Errorf("encode backfill cursor: %w", err)
		}
	}
	_, err := db.Exec(ctx, `UPDATE vomosync.checkpoints SET backfill = $3, updated_at = now() WHERE customer_id = $1 AND resource = $2`,
		customer, resource, bfJSON)
	if err != nil {
		return fmt.Errorf("save backfill cursor %s/%s: %w", customer, resource, err)
	}
	return nil
}

// Decision is a checkpoint change made by a person or a recovery strategy.
type Decision struct {
	CustomerID string
	Resource   string
	Actor      string // "operator:<name>" or "poller:<id>"
	Strategy   string // set, restore_backup, epoch, window, hold, reset
	Reason     string
	Old        *time.Time
	New        *time.Time
}

// Decide applies d in one transaction: the checkpoint row (set, or removed
// when New is nil) and the audit row. Strategy hold only records.
func Decide(ctx context.Context, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}, d Decision) error {
	if d.Reason == "" {
		return ErrNeedsReason
	}
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var old *time.Time
		var pos time.Time
		err := tx.QueryRow(ctx, `SELECT position FROM vomosync.checkpoints WHERE customer_id = $1 AND resource = $2 FOR UPDATE`,
			d.CustomerID, d.Resource).Scan(&pos)
		if err == nil {
			old = &pos
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read checkpoint: %w", err)
		}
		if d.New != nil {
			_, err = tx.Exec(ctx, `INSERT INTO vomosync.checkpoints (customer_id, resource, position, backfill, updated_at)
				VALUES ($1, $2, $3, NULL, now())
				ON CONFLICT (customer_id, resource) DO UPDATE SET position = EXCLUDED.position, walked_to = NULL, backfill = NULL, updated_at = now()`,
				d.CustomerID, d.Resource, d.New.UTC())
			if err != nil {
				return fmt.Errorf("set checkpoint: %w", err)
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO vomosync.checkpoint_decisions (customer_id, resource, actor, strategy, reason, old_position, new_position)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, d.CustomerID, d.Resource, d.Actor, d.Strategy, d.Reason, old, d.New)
		if err != nil {
			return fmt.Errorf("record checkpoint decision: %w", err)
		}
		return nil
	})
}

func nullUUID(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Backup is the copy of checkpoints in a JetStream KV bucket, written after
// the primary commits. It is a second store of another kind, so losing the
// primary row does not force a re-sync from epoch.
type Backup struct {
	KV jetstream.KeyValue
}

type backupValue struct {
	Position time.Time `json:"position"`
	SavedAt  time.Time `json:"saved_at"`
}

func backupKey(customer, resource string) string { return customer + "." + resource }

// Put writes the backup copy.
func (b Backup) Put(ctx context.Context, customer, resource string, position time.Time) error {
	v, _ := json.Marshal(backupValue{Position: position.UTC(), SavedAt: time.Now().UTC()})
	if _, err := b.KV.Put(ctx, backupKey(customer, resource), v); err != nil {
		return fmt.Errorf("backup checkpoint %s/%s: %w", customer, resource, err)
	}
	return nil
}

// Get reads the backup copy and when it was saved.
func (b Backup) Get(ctx context.Context, customer, resource string) (time.Time, time.Time, error) {
	e, err := b.KV.Get(ctx, backupKey(customer, resource))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: %s/%s", ErrNoBackup, customer, resource)
	}
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("read checkpoint backup %s/%s: %w", customer, resource, err)
	}
	var v backupValue
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("checkpoint backup %s/%s is corrupt: %w", customer, resource, err)
	}
	return v.Position, v.SavedAt, nil
}
