// Package custfile reads a customer's configuration from YAML (the file
// `syncctl apply -f` takes), reports every bad field at once with its path,
// and diffs it against what is stored.
package custfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/vomosync/vomosync/pkg/customer"
)

// File is one customer's configuration: its id, enabled resources and
// settings (the fields of customer.Settings, at the top level).
type File struct {
	ID        string   `json:"id"`
	Resources []string `json:"resources"`
	customer.Settings
}

// ErrInvalid wraps every validation failure; the message lists each bad
// field on its own line.
var ErrInvalid = errors.New("invalid customer file")

// durationPaths are the fields that hold Go durations ("15m", "36h").
var durationPaths = []string{"overlap", "settle", "retry_after_cap", "recovery.window", "reconcile.daily_window", "reconcile.full_every"}

// MaxFileBytes bounds a customer file: a real one is a page of YAML.
const MaxFileBytes = 1 << 20

// Parse reads and validates a customer file.
func Parse(data []byte) (File, error) {
	var f File
	if len(data) > MaxFileBytes {
		return f, fmt.Errorf("%w: %d bytes, over %d", ErrInvalid, len(data), MaxFileBytes)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return f, fmt.Errorf("%w: not YAML: %v", ErrInvalid, err)
	}
	var problems []string
	// Durations first, from the generic tree: the decoder would stop at the
	// first one and not say where it was.
	var tree map[string]any
	if err := json.Unmarshal(js, &tree); err != nil || tree == nil {
		return f, fmt.Errorf("%w: the file must be a YAML mapping (id, resources, cadences, ...)", ErrInvalid)
	}
	// YAML 1.1 reads the key "on" of an action as the boolean true.
	if acts, ok := tree["actions"].([]any); ok {
		for _, a := range acts {
			if m, ok := a.(map[string]any); ok {
				if v, ok := m["true"]; ok && m["on"] == nil {
					m["on"] = v
					delete(m, "true")
				}
			}
		}
		if js, err = json.Marshal(tree); err != nil {
			return f, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	for _, p := range durationPaths {
		if v, ok := lookup(tree, p); ok {
			problems = append(problems, checkDuration(p, v)...)
		}
	}
	if c, ok := tree["cadences"].(map[string]any); ok {
		for r, v := range c {
			problems = append(problems, checkDuration("cadences."+r, v)...)
		}
	}
	if len(problems) == 0 {
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			problems = append(problems, decodeProblem(err))
		}
	}
	if len(problems) == 0 {
		problems = append(problems, f.check()...)
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return f, fmt.Errorf("%w:\n  %s", ErrInvalid, strings.Join(problems, "\n  "))
	}
	return f, nil
}

func lookup(tree map[string]any, path string) (any, bool) {
	var cur any = tree
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func checkDuration(path string, v any) []string {
	s, ok := v.(string)
	if !ok {
		return []string{fmt.Sprintf("%s: %v is not a duration; write it like \"15m\" or \"36h\"", path, v)}
	}
	if _, err := time.ParseDuration(s); err != nil {
		return []string{fmt.Sprintf("%s: %q is not a duration; write it like \"15m\" or \"36h\"", path, s)}
	}
	return nil
}

// decodeProblem turns a decoder error into "field: what is wrong".
func decodeProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s: expected %s, not a %s", te.Field, te.Type, te.Value)
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Sprintf("%s: unknown field (see docs/customer-settings.md)", strings.Trim(f, `"`))
	}
	return msg
}

// check validates the decoded file: the id, the resources, and every
// setting through customer.Settings.Validate.
func (f File) check() []string {
	var out []string
	if f.ID == "" {
		out = append(out, "id: required")
	}
	if len(f.Resources) == 0 {
		out = append(out, "resources: list at least one of "+strings.Join(customer.AllResources, ", "))
	}
	for i, r := range f.Resources {
		if !customer.KnownResource(r) {
			out = append(out, fmt.Sprintf("resources[%d]: %q is not one of %s", i, r, strings.Join(customer.AllResources, ", ")))
		}
	}
	for r := range f.Cadences {
		if customer.KnownResource(r) && !slices.Contains(f.Resources, r) {
			out = append(out, fmt.Sprintf("cadences.%s: the resource is not enabled in resources", r))
		}
	}
	if err := f.Settings.Validate(); err != nil {
		msg := strings.TrimPrefix(err.Error(), "invalid settings: ")
		out = append(out, strings.Split(msg, "; ")...)
	}
	return out
}

// Change is one field that differs.
type Change struct {
	Path string `json:"path"`
	Old  string `json:"old"` // "" = not set (default)
	New  string `json:"new"`
}

// Diff lists the fields that differ between the stored customer and f, by
// path, in order. Unset fields read as "(default: X)" with the effective value.
func Diff(stored customer.Customer, f File) ([]Change, error) {
	old, err := flatten(map[string]any{"resources": stored.Resources}, stored.Settings)
	if err != nil {
		return nil, err
	}
	nw, err := flatten(map[string]any{"resources": f.Resources}, f.Settings)
	if err != nil {
		return nil, err
	}
	eff, err := flatten(nil, f.Settings.Effective())
	if err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	for k := range old {
		keys[k] = true
	}
	for k := range nw {
		keys[k] = true
	}
	var out []Change
	for k := range keys {
		if old[k] == nw[k] {
			continue
		}
		c := Change{Path: k, Old: old[k], New: nw[k]}
		if c.New == "" {
			c.New = "(default: " + orNone(eff[k]) + ")"
		}
		if c.Old == "" {
			c.Old = "(default)"
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// flatten turns settings into path -> JSON value, skipping zero values.
func flatten(extra map[string]any, s customer.Settings) (map[string]string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode settings: %w", err)
	}
	var tree map[string]any
	if err := json.Unmarshal(b, &tree); err != nil {
		return nil, fmt.Errorf("decode settings: %w", err)
	}
	for k, v := range extra {
		tree[k] = v
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if v == nil || v == false || v == "" || v == float64(0) {
			return
		}
		switch x := v.(type) {
		case map[string]any:
			for k, vv := range x {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, vv)
			}
		case string:
			if x != "0s" {
				out[prefix] = x
			}
		default:
			vb, _ := json.Marshal(x)
			if string(vb) != "[]" {
				out[prefix] = string(vb)
			}
		}
	}
	walk("", tree)
	return out, nil
}
