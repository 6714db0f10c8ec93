package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"

	"github.com/vomosync/vomosync/tests/chaos/checker"
)

// Malformed records: the simulator only serves well-formed JSON (with the
// documented wire variants), so a middleware in front of it rewrites a few
// of customer c1's users in every list page and detail answer. Expected:
// each malformed record ends in a dead letter with its cause (or is applied
// as the raw record it is); every other record keeps flowing.

// malformed maps a c1 user id to how it is broken.
var malformed = map[string]string{
	"10007": "wrong-types",   // email a number, first_name an object, created_at a boolean
	"10023": "id-object",     // id an object
	"10038": "bad-timestamp", // updated_at not a time
	"10052": "deep-nesting",  // address nested 5,000 arrays deep
	"10066": "10MiB-body",    // a 10 MiB field: its page exceeds every sane body cap
}

func init() {
	Register(Scenario{
		Name: "malformed",
		Description: "5 malformed users of c1 (wrong types, an object id, a bad updated_at, 5,000-deep nesting, a 10 MiB field) " +
			"served in every list and detail answer: each must end as a dead letter with its cause, everything else must flow",
		Short:   true,
		Prepare: prepareMalformed(""),
		Verify:  verifyMalformed(""),
	})
	// One scenario per kind (long profile): which kinds the pipeline
	// survives, one at a time.
	for _, kind := range malformed {
		Register(Scenario{
			Name:        "malformed-" + kind,
			Description: "one malformed user of c1 (" + kind + ") in every list and detail answer: a dead letter with its cause, everything else flows",
			Prepare:     prepareMalformed(kind),
			Verify:      verifyMalformed(kind),
		})
	}
}

// active is the set of malformed ids a run serves ("" kind: all).
func activeMalformed(kind string) map[string]string {
	out := map[string]string{}
	for id, k := range malformed {
		if kind == "" || k == kind {
			out[id] = k
		}
	}
	return out
}

func prepareMalformed(kind string) func(context.Context, *Prep) (func(), error) {
	return func(_ context.Context, p *Prep) (func(), error) {
		bad := activeMalformed(kind)
		p.Options.WrapAPI = func(next http.Handler) http.Handler { return malform(next, bad) }
		for id := range bad {
			p.Skip["c1/"+id] = true
		}
		return nil, nil
	}
}

func malform(next http.Handler, bad map[string]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok-c1" || !strings.HasPrefix(r.URL.Path, "/v1/users") {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rec.Code == http.StatusOK {
			if b, err := rewrite(body, bad); err == nil {
				body = b
			}
		}
		for k, vs := range rec.Header() {
			if k == "Content-Length" {
				continue
			}
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}

// rewrite breaks the malformed records of a {"data": [...]} or
// {"data": {...}} envelope, leaving every other byte as it was.
func rewrite(body []byte, bad map[string]string) ([]byte, error) {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, err
	}
	data := bytes.TrimSpace(env["data"])
	if len(data) == 0 {
		return nil, fmt.Errorf("no data")
	}
	if data[0] == '{' {
		b, err := breakRecord(data, bad)
		if err != nil {
			return nil, err
		}
		env["data"] = b
		return json.Marshal(env)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, err
	}
	for i, rec := range list {
		b, err := breakRecord(rec, bad)
		if err != nil {
			return nil, err
		}
		list[i] = b
	}
	out, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	env["data"] = out
	return json.Marshal(env)
}

func breakRecord(rec json.RawMessage, bad map[string]string) (json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(rec, &fields); err != nil {
		return nil, err
	}
	id := strings.Trim(string(fields["id"]), `"`)
	kind, ok := bad[id]
	if !ok {
		return rec, nil
	}
	switch kind {
	case "wrong-types":
		fields["email"] = json.RawMessage(`12345`)
		fields["first_name"] = json.RawMessage(`{"given": ["not", "a", "string"]}`)
		fields["created_at"] = json.RawMessage(`true`)
	case "id-object":
		fields["id"] = json.RawMessage(`{"value": ` + id + `}`)
	case "bad-timestamp":
		fields["updated_at"] = json.RawMessage(`"yesterday at noon"`)
	case "deep-nesting":
		fields["address"] = json.RawMessage(strings.Repeat("[", 5000) + strings.Repeat("]", 5000))
	case "10MiB-body":
		fields["bio"] = json.RawMessage(`"` + strings.Repeat("x", 10<<20) + `"`)
	}
	return json.Marshal(fields)
}

func verifyMalformed(kind string) func(context.Context, *Env, *checker.Report) ([]string, error) {
	return func(ctx context.Context, e *Env, _ *checker.Report) ([]string, error) {
		return checkMalformed(ctx, e, activeMalformed(kind))
	}
}

func checkMalformed(ctx context.Context, e *Env, bad map[string]string) ([]string, error) {
	ids := make([]string, 0, len(bad))
	for id := range bad {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var v []string
	for _, id := range ids {
		var dlErr string
		var dl int
		// A record whose id is unreadable is dead-lettered under a
		// content-derived id ("malformed-<hash>"), its error naming the id field.
		err := e.Pool.QueryRow(ctx, `SELECT count(*), coalesce(max(error), '') FROM vomosync.dead_letters WHERE customer_id = 'c1'
			AND (record_id = $1 OR ($2 AND record_id LIKE 'malformed-%' AND error LIKE '%].id%'))`, id, bad[id] == "id-object").Scan(&dl, &dlErr)
		if err != nil {
			return nil, err
		}
		var applied int
		if err := e.Pool.QueryRow(ctx, `SELECT count(*) FROM vomosync.audit_log WHERE customer_id = 'c1' AND record_id = $1 AND outcome = 'applied'`, id).Scan(&applied); err != nil {
			return nil, err
		}
		switch {
		case dl > 0 && dlErr != "":
			e.Note("%s (%s): dead-lettered: %.160s", id, bad[id], dlErr)
		case applied > 0:
			e.Note("%s (%s): applied as served (no dead letter)", id, bad[id])
		default:
			v = append(v, fmt.Sprintf("malformed record c1/%s (%s) has neither a dead letter nor an applied version: it vanished without a cause", id, bad[id]))
		}
	}
	return v, nil
}
