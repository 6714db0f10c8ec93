package chaos

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestShortProfile runs the short profile (every scenario marked Short,
// scaled down) once: this is the chaos suite's place in `make test`.
// CHAOS_SCENARIO narrows it to matching scenarios while developing one.
func TestShortProfile(t *testing.T) {
	if testing.Short() {
		t.Skip("the short chaos profile takes a few minutes; run without -short (or `make chaos`)")
	}
	var re *regexp.Regexp
	if p := os.Getenv("CHAOS_SCENARIO"); p != "" {
		re = regexp.MustCompile(p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	results, err := RunProfile(ctx, Config{Profile: Profiles["short"], Seed: 1, Pattern: re, Out: &lineLogger{t: t}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Failed() {
			t.Errorf("scenario %s: %s %v %v", r.Scenario.Name, r.Verdict(), r.Err, r.Violations)
		}
	}
}

// lineLogger sends the runner's output to t.Log line by line, so `go test
// -v` shows progress and a timeout still shows how far it got.
type lineLogger struct {
	t   *testing.T
	rem string
}

func (l *lineLogger) Write(p []byte) (int, error) {
	lines := strings.Split(l.rem+string(p), "\n")
	l.rem = lines[len(lines)-1]
	for _, line := range lines[:len(lines)-1] {
		l.t.Log(line)
	}
	return len(p), nil
}
