package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/deployments/tools/contract"
)

// TestDockerfile parses the Dockerfile with BuildKit's own parser and lint
// rules (what `docker build --check` starts with), then checks what compose
// and Kubernetes rely on: the SERVICE argument, a non-root distroless
// runtime, and the binary at /app.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	f, err := os.Open(filepath.Join(repoRoot(t), "deployments/docker/Dockerfile"))
	require.NoError(t, err)
	defer f.Close()
	ast, err := parser.Parse(f)
	require.NoError(t, err)
	for _, w := range ast.Warnings {
		t.Errorf("parser: %s", w.Short)
	}
	var lint []string
	stages, _, err := instructions.Parse(ast.AST, linter.New(&linter.Config{
		Warn: func(rule, _, _, msg string, _ []parser.Range) { lint = append(lint, rule+": "+msg) },
	}))
	require.NoError(t, err)
	assert.Empty(t, lint, "BuildKit lint")
	require.Len(t, stages, 2, "a build stage and a runtime stage")

	runtime := stages[len(stages)-1]
	assert.Equal(t, "gcr.io/distroless/static-debian12:nonroot", runtime.BaseName)
	var user string
	var entrypoint []string
	for _, cmd := range runtime.Commands {
		switch c := cmd.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.EntrypointCommand:
			entrypoint = c.CmdLine
		}
	}
	assert.True(t, strings.HasPrefix(user, "nonroot"), "runtime USER %q", user)
	assert.Equal(t, []string{"/app"}, entrypoint, "compose runs /app -healthcheck; Kubernetes passes args to /app")

	build := stages[0]
	var args []string
	for _, cmd := range build.Commands {
		if a, ok := cmd.(*instructions.ArgCommand); ok {
			for _, kv := range a.Args {
				args = append(args, kv.Key)
			}
		}
	}
	assert.Contains(t, args, "SERVICE")
	assert.Contains(t, args, "VERSION")
}

// TestModulesBuildAlone resolves each image's main package the way the
// Dockerfile builds it: inside its module, GOWORK=off, go.mod and go.sum as
// committed. A dependency that only the workspace provides fails here
// instead of in `docker build`.
func TestModulesBuildAlone(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	for _, b := range contract.Binaries {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(root, b.Module)
			main := "."
			if _, err := os.Stat(filepath.Join(dir, "cmd", filepath.Base(b.Module))); err == nil {
				main = "./cmd/" + filepath.Base(b.Module)
			}
			cmd := exec.Command("go", "list", "-deps", "-f", "{{if .Error}}{{.ImportPath}}: {{.Error}}{{end}}", main)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "CGO_ENABLED=0")
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s: GOWORK=off go list %s:\n%s", b.Module, main, out)
			// "go: downloading ..." is the module cache filling, not an error.
			var errs []string
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if l != "" && !strings.HasPrefix(l, "go: downloading ") {
					errs = append(errs, l)
				}
			}
			require.Empty(t, errs, "%s: package errors", b.Module)
			name := exec.Command("go", "list", "-f", "{{.Name}}", main)
			name.Dir, name.Env = dir, cmd.Env
			out, err = name.CombinedOutput()
			require.NoError(t, err, string(out))
			require.Equal(t, "main", strings.TrimSpace(string(out)), "%s: %s is not a main package", b.Module, main)
		})
	}
}
