package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// requireNoSecrets checks that no API token and no bearer header reached any
// service log (run at debug level) or any row of the database.
func (s *stack) requireNoSecrets(t *testing.T, tokens ...string) {
	t.Helper()
	needles := append([]string{"Bearer "}, tokens...)
	s.mu.Lock()
	for name, p := range s.procs {
		for _, line := range p.logs.lines() {
			for _, n := range needles {
				require.NotContains(t, line, n, "%s logged a secret", name)
			}
		}
	}
	s.mu.Unlock()
	out, err := exec.Command("pg_dump", "--data-only", s.db.URL).CombinedOutput()
	require.NoError(t, err, string(out))
	dump := string(out)
	require.Contains(t, dump, "vomosync", "the dump holds data")
	for _, n := range needles {
		require.False(t, strings.Contains(dump, n), "the database holds %q in clear", n)
	}
}
