package chaos

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vomosync/vomosync/tests/chaos/checker"
)

// Verdict is PASS, FAIL, SKIP, ERROR or KNOWN FAILURE.
func (r Result) Verdict() string {
	switch {
	case r.Skipped != "":
		return "SKIP"
	case r.Err != nil && r.Scenario.KnownFailure == "":
		return "ERROR"
	case (r.Err != nil || len(r.Violations) > 0) && r.Scenario.KnownFailure != "":
		return "KNOWN FAILURE"
	case len(r.Violations) > 0:
		return "FAIL"
	}
	return "PASS"
}

// PrintResult writes one scenario's table.
func PrintResult(w io.Writer, r Result) {
	if w == nil {
		return
	}
	fmt.Fprintf(w, "-- %s [%s]\n", r.Scenario.Name, r.Verdict())
	if r.Skipped != "" {
		fmt.Fprintf(w, "   %s\n", r.Skipped)
		return
	}
	fmt.Fprintf(w, "   workload: %s\n", r.Workload)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "   records\t")
	for _, c := range checker.Classes {
		fmt.Fprintf(tw, "%s\t", c)
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "   %d\t", r.Report.Records)
	for _, c := range checker.Classes {
		fmt.Fprintf(tw, "%d\t", r.Report.Counts[c])
	}
	fmt.Fprintln(tw)
	_ = tw.Flush()
	rep := r.Report
	fmt.Fprintf(w, "   checkpoints: %d samples, %d versions claimed, %d ahead of the stream\n", rep.Samples, rep.Claimed, rep.CheckpointAhead)
	fmt.Fprintf(w, "   stream: %d versions, %d without an audit row\n", rep.Published, rep.AuditMissing)
	fmt.Fprintf(w, "   side effects: %d enqueued, %d enqueued twice, %d missing, %d undelivered; %d redelivered under the same Idempotency-Key\n",
		rep.Outbox, rep.DupEnqueued, rep.EffectsMissing, rep.Undelivered, rep.Redelivered)
	fmt.Fprintf(w, "   faults injected: %s", r.Faults)
	if r.Deaths != "" {
		fmt.Fprintf(w, "; unplanned exits restarted: %s", r.Deaths)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "   time to converge: %s%s\n", r.Duration.Round(100*time.Millisecond), ratio(r))
	for _, n := range r.Notes {
		fmt.Fprintf(w, "   note: %s\n", n)
	}
	if r.Err != nil {
		fmt.Fprintf(w, "   error: %v\n", r.Err)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(w, "   VIOLATION: %s\n", v)
	}
	if len(r.Violations) > 0 || r.Err != nil {
		for _, ex := range rep.Examples {
			fmt.Fprintf(w, "   e.g. %s\n", ex)
		}
	}
	if r.Scenario.KnownFailure != "" && r.Verdict() == "KNOWN FAILURE" {
		fmt.Fprintf(w, "   known failure: %s\n", r.Scenario.KnownFailure)
	}
}

func ratio(r Result) string {
	if r.Baseline <= 0 || r.Scenario.Name == BaselineName || r.Duration == 0 {
		return ""
	}
	return fmt.Sprintf(" (fault-free %s, %.2f×)", r.Baseline.Round(100*time.Millisecond), float64(r.Duration)/float64(r.Baseline))
}

// PrintSummary writes one line per scenario (the table in docs/chaos.md).
func PrintSummary(w io.Writer, results []Result) {
	if w == nil {
		return
	}
	fmt.Fprintln(w, "\n| scenario | verdict | records | ok | lost | dup | stale | unexp | ckpt ahead | audit missing | faults | time | × baseline |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		x := ""
		if r.Baseline > 0 && r.Duration > 0 && r.Scenario.Name != BaselineName {
			x = fmt.Sprintf("%.2f", float64(r.Duration)/float64(r.Baseline))
		}
		c := r.Report.Counts
		fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s | %s |\n", r.Scenario.Name, r.Verdict(),
			r.Report.Records, c[checker.OK], c[checker.Lost], c[checker.Duplicated], c[checker.Stale], c[checker.Unexpected],
			r.Report.CheckpointAhead, r.Report.AuditMissing, strings.ReplaceAll(r.Faults, "|", "/"), r.Duration.Round(100*time.Millisecond), x)
	}
}
