package ops

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

func sortAPIErrors(es []APIError) {
	slices.SortFunc(es, func(a, b APIError) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return b.Last.Compare(a.Last)
	})
}

// Action is one operator action, recorded in vomosync.operator_actions.
type Action struct {
	ID       int64          `json:"id"`
	Actor    string         `json:"actor"`
	Via      string         `json:"via"` // console | syncctl
	Action   string         `json:"action"`
	Customer string         `json:"customer_id,omitempty"`
	Resource string         `json:"resource,omitempty"`
	Target   string         `json:"target,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Detail   map[string]any `json:"detail,omitempty"`
	At       time.Time      `json:"at"`
}

// Via values.
const (
	ViaConsole = "console"
	ViaSyncctl = "syncctl"
)

// Record writes a to the operator action audit.
func Record(ctx context.Context, db DBTX, a Action) error {
	detail, err := json.Marshal(a.Detail)
	if err != nil || a.Detail == nil {
		detail = []byte("{}")
	}
	_, err = db.Exec(ctx, `INSERT INTO vomosync.operator_actions (actor, via, action, customer_id, resource, target, reason, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, a.Actor, a.Via, a.Action, a.Customer, a.Resource, a.Target, a.Reason, detail)
	if err != nil {
		return fmt.Errorf("record operator action %s: %w", a.Action, err)
	}
	return nil
}

// Actions lists recorded actions, newest first, of one customer or all.
func Actions(ctx context.Context, db DBTX, customer string, before time.Time, limit int) ([]Action, error) {
	if limit <= 0 {
		limit = 50
	}
	if before.IsZero() {
		before = time.Now().Add(time.Hour)
	}
	rows, err := db.Query(ctx, `SELECT id, actor, via, action, customer_id, resource, target, reason, detail, at
		FROM vomosync.operator_actions WHERE ($1 = '' OR customer_id = $1) AND at < $2
		ORDER BY at DESC LIMIT $3`, customer, before, limit)
	if err != nil {
		return nil, fmt.Errorf("operator actions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Action, error) {
		var a Action
		var d []byte
		err := r.Scan(&a.ID, &a.Actor, &a.Via, &a.Action, &a.Customer, &a.Resource, &a.Target, &a.Reason, &d, &a.At)
		if err == nil {
			_ = json.Unmarshal(d, &a.Detail)
		}
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("operator actions: %w", err)
	}
	return out, nil
}

// Beginner starts a transaction (a *pgxpool.Pool).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Pause stops polling of a customer (resource "") or of one of its
// resources, with the reason in words, and records who did it. What it
// changed is returned for printing.
func Pause(ctx context.Context, db Beginner, actor, via, customer, resource, reason string) (string, error) {
	return setPaused(ctx, db, actor, via, customer, resource, reason, true)
}

// Resume restarts polling paused by Pause (or by the system: a token
// rejected, a checkpoint held); the next cycle is due at once.
func Resume(ctx context.Context, db Beginner, actor, via, customer, resource, reason string) (string, error) {
	return setPaused(ctx, db, actor, via, customer, resource, reason, false)
}

func setPaused(ctx context.Context, db Beginner, actor, via, customer, resource, reason string, pause bool) (string, error) {
	if reason == "" {
		return "", ErrNeedsReason
	}
	action := map[bool]string{true: "pause", false: "resume"}[pause]
	var changed string
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var tag interface{ RowsAffected() int64 }
		var err error
		switch {
		case resource == "" && pause:
			tag, err = tx.Exec(ctx, `UPDATE vomosync.customers SET status = 'paused', status_reason = $2, updated_at = now()
				WHERE id = $1 AND status <> 'disabled'`, customer, reason)
			changed = fmt.Sprintf("vomosync.customers[%s].status: paused (%s)", customer, reason)
		case resource == "":
			tag, err = tx.Exec(ctx, `UPDATE vomosync.customers SET status = 'active', status_reason = '', updated_at = now()
				WHERE id = $1 AND status <> 'disabled'`, customer)
			changed = fmt.Sprintf("vomosync.customers[%s].status: active", customer)
			if err == nil {
				_, err = tx.Exec(ctx, `UPDATE vomosync.schedules SET next_run_at = least(next_run_at, now())
					WHERE customer_id = $1 AND kind = 'poll'`, customer)
			}
		case pause:
			tag, err = tx.Exec(ctx, `UPDATE vomosync.schedules SET paused = true, paused_reason = $3
				WHERE customer_id = $1 AND resource = $2 AND kind = 'poll'`, customer, resource, reason)
			changed = fmt.Sprintf("vomosync.schedules[%s/%s/poll].paused: true (%s)", customer, resource, reason)
		default:
			tag, err = tx.Exec(ctx, `UPDATE vomosync.schedules SET paused = false, paused_reason = '', next_run_at = now()
				WHERE customer_id = $1 AND resource = $2 AND kind = 'poll'`, customer, resource)
			changed = fmt.Sprintf("vomosync.schedules[%s/%s/poll].paused: false", customer, resource)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", action, customer, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%s %s %s: %w (or the customer is disabled)", action, customer, resource, ErrNotFound)
		}
		return Record(ctx, tx, Action{Actor: actor, Via: via, Action: action, Customer: customer, Resource: resource, Reason: reason})
	})
	return changed, err
}
