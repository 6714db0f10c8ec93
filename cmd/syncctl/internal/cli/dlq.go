package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vomosync/vomosync/pkg/messaging"
	"github.com/vomosync/vomosync/services/console/ops"
	"github.com/vomosync/vomosync/services/processor/deadletter"
)

type letterRow struct {
	ID         int64  `json:"id"`
	Customer   string `json:"customer_id"`
	Resource   string `json:"resource"`
	RecordID   string `json:"record_id"`
	ErrorClass string `json:"error_class"`
	Error      string `json:"error"`
	Attempts   int    `json:"attempts"`
	LastFailed string `json:"last_failed_at"`
	Status     string `json:"status"`
	ResolvedBy string `json:"resolved_by,omitempty"`
	Reason     string `json:"resolved_reason,omitempty"`
	TraceID    string `json:"trace_id"`
}

func toRow(l deadletter.Letter) letterRow {
	return letterRow{l.ID, l.CustomerID, l.Resource, l.RecordID, l.ErrorClass, l.Error, l.Attempts, ts(&l.LastFailedAt),
		l.Status, l.ResolvedBy, l.ResolvedReason, l.TraceID}
}

func parseIDs(args []string) ([]int64, error) {
	ids := make([]int64, 0, len(args))
	for _, a := range args {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("usage: dead letter id %q is not a number", a)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (a *app) dlqCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "The dead-letter queue: list, show, retry (re-publish through the normal path) or discard with a reason"}
	var f deadletter.Filter
	list := &cobra.Command{
		Use: "list", Short: "Dead letters, newest first (open by default)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, _, err := a.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			ls, err := (&deadletter.Store{DB: pool}).List(a.ctx, f)
			if err != nil {
				return err
			}
			out := make([]letterRow, 0, len(ls))
			rows := make([][]string, 0, len(ls))
			for _, l := range ls {
				r := toRow(l)
				out = append(out, r)
				rows = append(rows, []string{fmt.Sprint(r.ID), r.Customer, r.Resource, r.RecordID, r.ErrorClass, short(r.Error, 60),
					fmt.Sprint(r.Attempts), r.LastFailed, r.Status, r.TraceID})
			}
			return a.print(out, []string{"ID", "CUSTOMER", "RESOURCE", "RECORD", "CLASS", "ERROR", "ATTEMPTS", "LAST FAILED", "STATUS", "TRACE"}, rows)
		},
	}
	list.Flags().StringVar(&f.CustomerID, "customer", "", "only this customer")
	list.Flags().StringVar(&f.Resource, "resource", "", "only this resource")
	list.Flags().StringVar(&f.Status, "status", "open", "open, retried, redriven, discarded or all")
	list.Flags().StringVar(&f.ErrorClass, "class", "", "only this error class (validation, destination_rejected, ...)")
	list.Flags().IntVar(&f.Limit, "limit", 100, "how many")

	show := &cobra.Command{
		Use: "show ID", Short: "One dead letter: the error, its trace id, and the record it carried", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseIDs(args)
			if err != nil {
				return err
			}
			pool, _, err := a.pool()
			if err != nil {
				return err
			}
			defer pool.Close()
			l, err := (&deadletter.Store{DB: pool}).Get(a.ctx, ids[0])
			if err != nil {
				return err
			}
			out := struct {
				letterRow
				MsgID   string              `json:"msg_id"`
				Subject string              `json:"subject"`
				Headers map[string][]string `json:"headers"`
				Record  json.RawMessage     `json:"record,omitempty"`
				Decode  string              `json:"decode_error,omitempty"`
			}{letterRow: toRow(l), MsgID: l.MsgID, Subject: l.Subject, Headers: l.Headers}
			if ev, err := messaging.Decode(l.Payload); err == nil {
				if json.Valid(ev.GetRecord()) {
					out.Record = ev.GetRecord()
				}
			} else {
				out.Decode = err.Error()
			}
			if a.output == "json" {
				return a.print(out, nil, nil)
			}
			for _, kv := range [][2]string{{"id", fmt.Sprint(l.ID)}, {"customer", l.CustomerID}, {"resource", l.Resource},
				{"record", l.RecordID}, {"version", ts(l.RecordUpdatedAt)}, {"status", l.Status}, {"class", l.ErrorClass},
				{"error", l.Error}, {"attempts", fmt.Sprint(l.Attempts)}, {"first failed", ts(&l.FirstFailedAt)},
				{"last failed", ts(&l.LastFailedAt)}, {"trace", l.TraceID}, {"msg id", l.MsgID}, {"resolved by", l.ResolvedBy},
				{"reason", l.ResolvedReason}, {"payload", out.Decode}} {
				if kv[1] != "" {
					fmt.Fprintf(a.out, "%-13s %s\n", kv[0]+":", kv[1])
				}
			}
			if out.Record != nil {
				fmt.Fprintf(a.out, "record:       %s\n", out.Record)
			}
			return nil
		},
	}

	var rf deadletter.Filter
	var yes bool
	retry := &cobra.Command{
		Use:   "retry [ID...]",
		Short: "Re-publish dead letters through the normal path (origin redrive, a fresh message id); by id or every open one of --customer",
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.resolveLetters(args, rf, yes, "retry", "")
		},
	}
	retry.Flags().StringVar(&rf.CustomerID, "customer", "", "every open dead letter of this customer (with --resource/--class)")
	retry.Flags().StringVar(&rf.Resource, "resource", "", "only this resource")
	retry.Flags().StringVar(&rf.ErrorClass, "class", "", "only this error class")
	retry.Flags().BoolVar(&yes, "yes", false, "do not ask")

	var reason string
	var df deadletter.Filter
	discard := &cobra.Command{
		Use:   "discard [ID...] --reason TEXT",
		Short: "Close dead letters without retrying them; the reason is recorded",
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.resolveLetters(args, df, yes, "discard", reason)
		},
	}
	discard.Flags().StringVar(&reason, "reason", "", "why (required; recorded on the dead letter and in the action audit)")
	discard.Flags().StringVar(&df.CustomerID, "customer", "", "every open dead letter of this customer (with --resource/--class)")
	discard.Flags().StringVar(&df.Resource, "resource", "", "only this resource")
	discard.Flags().StringVar(&df.ErrorClass, "class", "", "only this error class")
	discard.Flags().BoolVar(&yes, "yes", false, "do not ask")
	_ = discard.MarkFlagRequired("reason")
	cmd.AddCommand(list, show, retry, discard)
	return cmd
}

// resolveLetters retries or discards the letters named by id, or every open
// letter matching f, after saying what it will do.
func (a *app) resolveLetters(args []string, f deadletter.Filter, yes bool, op, reason string) error {
	ids, err := parseIDs(args)
	if err != nil {
		return err
	}
	if (len(ids) == 0) == (f.CustomerID == "") {
		return errors.New("usage: name dead letter ids, or --customer for every open one (not both)")
	}
	if op == "discard" && strings.TrimSpace(reason) == "" {
		return errors.New("usage: --reason is required")
	}
	pool, _, err := a.pool()
	if err != nil {
		return err
	}
	defer pool.Close()
	st := &deadletter.Store{DB: pool}
	if len(ids) == 0 {
		f.Status, f.Limit = "open", 100000
		ls, err := st.List(a.ctx, f)
		if err != nil {
			return err
		}
		for _, l := range ls {
			ids = append(ids, l.ID)
		}
		if len(ids) == 0 {
			fmt.Fprintln(a.out, "no open dead letter matches")
			return nil
		}
	}
	if op == "retry" {
		nc, js, err := a.jetStream(a.ctx)
		if err != nil {
			return err
		}
		defer nc.Close()
		st.JS = js
	}
	fmt.Fprintf(a.out, "will %s %d dead letter(s)", op, len(ids))
	if len(ids) <= 20 {
		fmt.Fprintf(a.out, " %v", ids)
	}
	fmt.Fprintln(a.out)
	if !yes && !a.confirm() {
		return errors.New("not confirmed; nothing changed")
	}
	actor := operator()
	bar := a.bar(len(ids), op)
	var done []int64
	var failed []string
	for i, id := range ids {
		var err error
		if op == "retry" {
			err = st.Retry(a.ctx, id, actor)
		} else {
			err = st.Discard(a.ctx, id, actor, reason)
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("%d: %v", id, err))
		} else {
			done = append(done, id)
		}
		barSet(bar, i+1)
	}
	barDone(bar)
	if len(done) > 0 {
		detail := map[string]any{"ids": done}
		if err := ops.Record(a.ctx, pool, ops.Action{Actor: actor, Via: ops.ViaSyncctl, Action: "dlq_" + op, Customer: f.CustomerID,
			Target: fmt.Sprint(done[0]) + map[bool]string{true: fmt.Sprintf(" (+%d)", len(done)-1), false: ""}[len(done) > 1],
			Reason: reason, Detail: detail}); err != nil {
			return err
		}
	}
	if a.output == "json" {
		if err := a.print(map[string]any{"done": done, "failed": failed}, nil, nil); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.out, "%s: %d done, %d failed\n", op, len(done), len(failed))
		for _, f := range failed {
			fmt.Fprintln(a.out, "  failed", f)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d dead letter(s) not resolved", len(failed))
	}
	return nil
}
