// Package e2e drives the console in a real headless Chromium: an operator
// logs in, goes from the fleet summary to a customer to one record, and a
// customer opens its own page; what each page shows is checked against the
// database, and screenshots are kept under .artifacts/console-e2e.
package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/services/console/consoletest"
	"github.com/vomosync/vomosync/services/console/ops"
)

// chromium finds the browser. Absent, the test skips on a developer's
// machine (with the command that installs it) and fails on CI.
func chromium(t *testing.T) string {
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed and CI is set: the browser test must run on CI (make console-e2e installs the Debian package chromium)")
	}
	t.Skip("chromium is not installed: `make console-e2e` installs the Debian package chromium and runs this test")
	return ""
}

func artifacts(t *testing.T) string {
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", ".artifacts")
	}
	dir = filepath.Join(dir, "console-e2e")
	require.NoError(t, os.MkdirAll(dir, 0o750))
	return dir
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), png, 0o600))
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	require.NoError(t, err, sel)
	return strings.TrimSpace(s)
}

func TestBrowserSummaryCustomerRecord(t *testing.T) {
	exe := chromium(t)
	f := consoletest.Seed(t)
	const jaeger = "http://jaeger.example:16686"
	srv := consoletest.Server(t, f, jaeger)
	dir := artifacts(t)
	dbctx := context.Background()

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first call starts the browser: no timeout on it (chromedp.Run).
	require.NoError(t, chromedp.Do(bctx))
	ctx, cancelT := context.WithTimeout(bctx, 90*time.Second)
	defer cancelT()

	// Log in and land on the summary.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), f.Operator),
		chromedp.SendKeys(chromedp.CSS("#password"), f.Password),
		chromedp.Click(chromedp.CSS("#submit")),
		chromedp.WaitVisible(chromedp.CSS("#n-customers")),
	))
	require.Equal(t, f.Operator, text(t, ctx, "#who"))
	var nCustomers int
	require.NoError(t, f.Pool.QueryRow(dbctx, `SELECT count(*) FROM vomosync.customers`).Scan(&nCustomers))
	sum, err := ops.FleetSummary(dbctx, f.Pool, ops.SummaryQuery{})
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(nCustomers), text(t, ctx, "#n-customers"))
	require.Equal(t, strconv.Itoa(sum.Healthy), text(t, ctx, "#n-healthy"))
	require.Equal(t, strconv.Itoa(sum.Anomalous), text(t, ctx, "#n-anomalous"))
	require.NotEmpty(t, sum.Page)
	listed := text(t, ctx, "#customers")
	for _, c := range sum.Page {
		require.Contains(t, listed, c.ID)
		for _, p := range c.Problems {
			require.Contains(t, listed, p, "the reason in words")
		}
	}
	screenshot(t, ctx, dir, "1-summary.png")

	// Every customer, then acme.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`input[name="all"]`)),
		chromedp.Click(chromedp.CSS(`form.search button`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-customer="acme"] a`)),
		chromedp.Click(chromedp.CSS(`tr[data-customer="acme"] a`)),
		chromedp.WaitVisible(chromedp.CSS("#customer-title")),
	))
	var dbStatus string
	var dbDLQ int
	require.NoError(t, f.Pool.QueryRow(dbctx, `SELECT status, (SELECT count(*) FROM vomosync.dead_letters
		WHERE customer_id = 'acme' AND resource = 'users' AND status = 'open') FROM vomosync.customers WHERE id = 'acme'`).Scan(&dbStatus, &dbDLQ))
	require.Equal(t, dbStatus, text(t, ctx, "#status"))
	require.Equal(t, strconv.Itoa(dbDLQ), text(t, ctx, `tr[data-resource="users"] td.dlq`))
	screenshot(t, ctx, dir, "2-customer.png")

	// One record: its attempts and the links to their traces.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a.record-link`)),
		chromedp.WaitVisible(chromedp.CSS("#record-title")),
	))
	require.Equal(t, "acme / users / "+f.AcmeRecord, text(t, ctx, "#record-title"))
	outcomes, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("#attempts td.outcome")].map(e => e.textContent.trim())`))
	require.NoError(t, err)
	traces, err := chromedp.Run(ctx, chromedp.AttributesAll(chromedp.CSSAll(`#attempts td.trace a`)))
	require.NoError(t, err)
	rows, err := f.Pool.Query(dbctx, `SELECT outcome, trace_id FROM vomosync.audit_log
		WHERE customer_id = 'acme' AND resource = 'users' AND record_id = $1 ORDER BY processed_at DESC`, f.AcmeRecord)
	require.NoError(t, err)
	var want, wantTraces []string
	for rows.Next() {
		var o, tr string
		require.NoError(t, rows.Scan(&o, &tr))
		want, wantTraces = append(want, o), append(wantTraces, jaeger+"/trace/"+tr)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, want, outcomes, "every attempt, newest first")
	require.Len(t, traces, len(wantTraces))
	for i, a := range traces {
		require.Equal(t, wantTraces[i], a["href"])
	}
	screenshot(t, ctx, dir, "3-record.png")

	// The customer's own page, in a fresh browser context: acme only.
	cbctx, ccancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	defer ccancel()
	require.NoError(t, chromedp.Do(cbctx))
	cctx, ccancelT := context.WithTimeout(cbctx, 60*time.Second)
	defer ccancelT()
	require.NoError(t, chromedp.Do(cctx,
		chromedp.Navigate(srv.URL+"/portal"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), f.AcmeToken),
		chromedp.Click(chromedp.CSS("#submit")),
		chromedp.WaitVisible(chromedp.CSS("#customer-title")),
	))
	page := text(t, cctx, "body")
	require.Contains(t, page, "Acme Volunteers")
	require.NotContains(t, page, "globex")
	require.NotContains(t, page, "Globex")
	screenshot(t, cctx, dir, "4-portal.png")
	t.Logf("screenshots in %s", dir)
}
