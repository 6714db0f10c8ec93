package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vomosync/vomosync/cmd/syncctl/internal/replay"
	"github.com/vomosync/vomosync/pkg/apiclient"
	"github.com/vomosync/vomosync/pkg/customer"
	"github.com/vomosync/vomosync/pkg/logging"
	eventsv1 "github.com/vomosync/vomosync/proto/events/v1"
	"github.com/vomosync/vomosync/services/console/ops"
	"github.com/vomosync/vomosync/services/poller/poll"
)

func parseTime(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return t, fmt.Errorf("usage: --%s must be RFC 3339 (2026-01-02T15:04:05Z): %w", flag, err)
	}
	return t, nil
}

func (a *app) replayCmd() *cobra.Command {
	var cust, res, from, to string
	var publish, yes bool
	var show int
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Re-run polling over a past window against a dry-run destination and print what would run; changes nothing unless --publish",
		Long: `replay walks VOMO for the window with the poller's own code, then plans every event with the
processor's own code in transactions that are rolled back: it prints the writes, deletes, skips,
dead letters and one-time side effects that would run, and where the checkpoint would move. No
checkpoint, cycle, destination row, sync state, audit row or outbox entry is written. It spends real
requests from the customer's shared API budget.

--publish then re-publishes the events for real (after confirmation): origin replay, message ids
unique to this replay so JetStream's duplicate window keeps them; the processor applies them like any
event (older versions are skipped as stale).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseTime("from", from)
			if err != nil {
				return err
			}
			t, err := parseTime("to", to)
			if err != nil {
				return err
			}
			pool, keys, err := a.poolAndKeys()
			if err != nil {
				return err
			}
			defer pool.Close()
			store := customer.NewStore(pool, keys)
			c, err := store.Get(a.ctx, cust)
			if err != nil {
				return err
			}
			if !customer.KnownResource(res) {
				return fmt.Errorf("usage: --resource %q is not one of %s", res, strings.Join(customer.AllResources, ", "))
			}
			token, err := store.Token(a.ctx, cust)
			if err != nil {
				return err
			}
			client, err := apiclient.New(pool, c, token, nil)
			if err != nil {
				return err
			}
			bar := a.bar(-1, "walking "+cust+"/"+res)
			planner := &replay.Planner{DB: pool, Customers: store, Log: logging.New("syncctl", "warn", a.errOut)}
			plan, err := planner.Plan(a.ctx, replay.Request{Customer: c, Resource: res, From: f, To: t, Source: client,
				Walked: func(n int) { barSet(bar, n) },
				Planned: func(done, total int) {
					barMax(bar, total)
					barSet(bar, done)
				}})
			barDone(bar)
			if err != nil {
				return err
			}
			if err := a.printPlan(plan, show); err != nil {
				return err
			}
			if !publish {
				return nil
			}
			return a.publishReplay(plan, yes)
		},
	}
	cmd.Flags().StringVar(&cust, "customer", "", "customer id")
	cmd.Flags().StringVar(&res, "resource", "", "resource")
	cmd.Flags().StringVar(&from, "from", "", "window start, RFC 3339 (records updated after it)")
	cmd.Flags().StringVar(&to, "to", "", "window end, RFC 3339 (default: the source's clock minus the settle time)")
	cmd.Flags().BoolVar(&publish, "publish", false, "after the dry run, re-publish the events for real (asks first)")
	cmd.Flags().BoolVar(&yes, "yes", false, "publish without asking")
	cmd.Flags().IntVar(&show, "show", 200, "operations to list in table output (0: all)")
	for _, n := range []string{"customer", "resource", "from"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func (a *app) printPlan(p *replay.Plan, show int) error {
	if a.output == "json" {
		return a.print(p, nil, nil)
	}
	c := p.Cycle
	fmt.Fprintf(a.out, "replay of %s/%s (dry run, nothing changed)\n", p.CustomerID, p.Resource)
	fmt.Fprintf(a.out, "  window        %s .. %s\n", ts(&c.WindowFrom), ts(&c.WindowTo))
	fmt.Fprintf(a.out, "  walk          %s: %d pages, %d requests, %d records seen, %d events", c.Outcome, c.Pages, c.Requests, c.RecordsSeen, len(p.Events))
	if c.Note != "" {
		fmt.Fprintf(a.out, " (%s)", c.Note)
	}
	fmt.Fprintln(a.out)
	fmt.Fprintf(a.out, "  would write   %d insert(s), %d update(s), %d delete(s); %d skipped as stale; %d dead letter(s)\n",
		p.Inserts, p.Updates, p.Deletes, p.Skipped, p.DeadLetters)
	fmt.Fprintf(a.out, "  side effects  %d one-time action(s)\n", p.SideEffects)
	switch {
	case p.CheckpointNow == nil:
		fmt.Fprintf(a.out, "  checkpoint    missing now; a cycle over this window would set it to %s\n", ts(p.CheckpointWould))
	case p.CheckpointWould != nil && p.CheckpointWould.After(*p.CheckpointNow):
		fmt.Fprintf(a.out, "  checkpoint    %s now; a cycle over this window would move it to %s\n", ts(p.CheckpointNow), ts(p.CheckpointWould))
	default:
		fmt.Fprintf(a.out, "  checkpoint    %s now; a cycle over this window would leave it there (the window is behind it)\n", ts(p.CheckpointNow))
	}
	fmt.Fprintln(a.out)
	ops := p.Ops
	if show > 0 && len(ops) > show {
		ops = ops[:show]
	}
	rows := make([][]string, 0, len(ops))
	for _, o := range ops {
		rows = append(rows, []string{o.RecordID, o.Version.UTC().Format(time.RFC3339Nano), o.Operation, o.Write, o.Outcome,
			strings.Join(o.ChangedFields, ","), strings.Join(o.SideEffects, ","), short(o.Reason, 60)})
	}
	if err := a.print(nil, []string{"RECORD", "VERSION", "OPERATION", "WRITE", "OUTCOME", "CHANGED", "SIDE EFFECTS", "REASON"}, rows); err != nil {
		return err
	}
	if len(ops) < len(p.Ops) {
		fmt.Fprintf(a.out, "... %d more (--show 0 lists all, -o json prints everything)\n", len(p.Ops)-len(ops))
	}
	return nil
}

// publishReplay re-publishes the plan's events after confirmation.
func (a *app) publishReplay(p *replay.Plan, yes bool) error {
	if len(p.Events) == 0 {
		fmt.Fprintln(a.errOut, "nothing to publish")
		return nil
	}
	suffix := "replay-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	fmt.Fprintf(a.errOut, "will publish %d event(s) to vomosync.changes.%s.%s with origin replay and message ids ending %q\n",
		len(p.Events), p.CustomerID, p.Resource, suffix)
	if !yes && (a.output == "json" || !a.confirmOn(a.errOut)) {
		return errors.New("not confirmed; nothing published (pass --yes)")
	}
	nc, js, err := a.jetStream(a.ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	sink := poll.NewJetStreamSink(js)
	sink.Suffix = suffix
	bar := a.bar(len(p.Events), "publishing")
	for i, ev := range p.Events {
		ev.Origin = eventsv1.Origin_ORIGIN_REPLAY
		if err := sink.Add(a.ctx, ev); err != nil {
			return fmt.Errorf("publish replay: %w", err)
		}
		barSet(bar, i+1)
	}
	n, err := sink.Flush(a.ctx)
	barDone(bar)
	if err != nil {
		return fmt.Errorf("publish replay: %d of %d acknowledged: %w", n, len(p.Events), err)
	}
	pool, _, err := a.pool()
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := ops.Record(a.ctx, pool, ops.Action{Actor: operator(), Via: ops.ViaSyncctl, Action: "replay_publish", Customer: p.CustomerID,
		Resource: p.Resource, Target: suffix, Detail: map[string]any{"events": n, "from": p.Cycle.WindowFrom, "to": p.Cycle.WindowTo}}); err != nil {
		return err
	}
	fmt.Fprintf(a.errOut, "published %d event(s) (%d already in the duplicate window)\n", n, sink.Duplicates())
	return nil
}
