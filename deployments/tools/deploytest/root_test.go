package deploytest

import (
	"os"
	"path/filepath"
	"testing"
)

// repoRoot finds the repository from the test's directory
// (deployments/tools/deploytest).
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(wd, "..", "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root not found from %s: %v", wd, err)
	}
	return root
}
