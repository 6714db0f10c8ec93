package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Database errors of the batch transaction fall in three kinds:
//
//   - transient: serialization failures (40001), deadlocks (40P01), a lost or
//     refused connection (class 08, I/O errors, admin or crash shutdown
//     57P01-57P03, too many connections 53300). The whole transaction is
//     retried in-process with backoff, then the batch is nak'd with delay.
//     Nothing is acked before a commit succeeded.
//   - a record's data: data exceptions (22xxx), integrity violations (23xxx:
//     a unique index of the destination other than its key, a foreign key, a
//     check) and values over a limit (54xxx). The batch is split until the
//     record at fault is alone; it is dead-lettered at once with the cause
//     and the rest commits.
//   - anything else: the batch is nak'd and retried later.

// txAttempts bounds the in-process attempts of a batch transaction.
const txAttempts = 5

// transient reports errors a fresh attempt of the transaction usually
// avoids.
func transient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return transientCode(pgErr.Code)
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

func transientCode(code string) bool {
	switch code {
	case "40001", "40P01", "57P01", "57P02", "57P03", "53300":
		return true
	}
	return len(code) == 5 && code[:2] == "08"
}

// abortsTx reports whether a destination error inside the transaction must
// end it: a transient database error, or its connection is gone. Other
// errors (an HTTP endpoint down) stay the failure of the ops concerned.
func abortsTx(tx pgx.Tx, err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && transientCode(pgErr.Code) {
		return true
	}
	return tx.Conn().IsClosed()
}

// dataFault reports an error one record's data causes.
func dataFault(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) != 5 {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", "23", "54":
		return true
	}
	return false
}

// dataFaultText is the dead-letter reason of a record the database refused.
func dataFaultText(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		msg := pgErr.Message
		if pgErr.ConstraintName != "" {
			msg += " (constraint " + pgErr.ConstraintName + ")"
		}
		if pgErr.Detail != "" {
			msg += ": " + pgErr.Detail
		}
		return fmt.Errorf("the database refused the record: %s (SQLSTATE %s)", msg, pgErr.Code)
	}
	return err
}

// txBackoff sleeps before in-process attempt n+1: 25ms doubling to 400ms,
// jittered. It returns false when ctx ended.
func txBackoff(ctx context.Context, n int) bool {
	d := 25 * time.Millisecond << min(n-1, 4)
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
