package processor_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/services/processor"
)

// TestRunsAsApplicationRole: the processor connected as a login of
// vomosync_app (row-level security applies, the role owns nothing) creates
// the destination schema and audit partitions through the owner's
// functions, applies, audits and dead-letters like the owner does.
func TestRunsAsApplicationRole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.addCustomer("acme", customer.Settings{})
	var evs []ev
	for i := 1; i <= 120; i++ {
		evs = append(evs, user("acme", strconv.Itoa(i), t0.Add(time.Duration(i)*time.Second)))
	}
	b.publish(evs...)
	pool := b.db.AppPool(t, false)
	var super bool
	require.NoError(t, pool.QueryRow(b.ctx, `SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user`).Scan(&super))
	require.False(t, super, "the test must run as a role subject to row-level security")

	p, err := processor.New(testConfig(), processor.Deps{Pool: pool, JS: b.js, Log: zerolog.Nop()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	b.eventually("audit rows", func() bool { return b.auditCount() == len(evs) })
	b.publish(evs[:20]...)
	b.eventually("redelivered versions audited", func() bool { return b.auditCount() == len(evs)+20 })
	require.Equal(t, 120, b.count(`SELECT count(*) FROM vomo_dest.users WHERE customer_id = 'acme'`))
	require.Equal(t, 120, b.count(`SELECT count(*) FROM vomosync.audit_log WHERE outcome = 'applied'`))
	require.Equal(t, 20, b.count(`SELECT count(*) FROM vomosync.audit_log WHERE outcome = 'skipped_stale'`))
}
