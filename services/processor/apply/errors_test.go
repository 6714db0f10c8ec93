package apply

import (
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/services/processor/destination"
)

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	pg := func(code string) error { return fmt.Errorf("batch: %w", &pgconn.PgError{Code: code}) }
	for _, tc := range []struct {
		name            string
		err             error
		transient, data bool
	}{
		{"serialization failure", pg("40001"), true, false},
		{"deadlock", pg("40P01"), true, false},
		{"admin shutdown", pg("57P01"), true, false},
		{"connection failure", pg("08006"), true, false},
		{"too many connections", pg("53300"), true, false},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true, false},
		{"unexpected EOF", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), true, false},
		{"unique violation", pg("23505"), false, true},
		{"foreign key", pg("23503"), false, true},
		{"check", pg("23514"), false, true},
		{"bad data", pg("22P02"), false, true},
		{"index row too big", pg("54000"), false, true},
		{"destination wraps it", fmt.Errorf("%w: write users: %w", destination.ErrRejected, &pgconn.PgError{Code: "23505"}), false, true},
		{"undefined table", pg("42P01"), false, false},
		{"plain", errors.New("boom"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.transient, transient(tc.err), "transient")
			require.Equal(t, tc.data, dataFault(tc.err), "data fault")
		})
	}
}
