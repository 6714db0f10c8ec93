package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// DurabilityWarnings lists server settings weaker than the production
// profile (docs/durability.md): a commit vomosync acknowledges (and acks a
// JetStream message after) must survive a crash of the database machine.
func DurabilityWarnings(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	var w []string
	for setting, want := range map[string]string{"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"} {
		var v string
		if err := pool.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&v); err != nil {
			return nil, fmt.Errorf("read %s: %w", setting, err)
		}
		if v != want && !(setting == "synchronous_commit" && (v == "remote_write" || v == "remote_apply")) {
			w = append(w, fmt.Sprintf("postgres %s=%s: committed rows may be lost on a crash; production needs %s", setting, v, want))
		}
	}
	return w, nil
}
