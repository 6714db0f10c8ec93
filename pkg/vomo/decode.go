package vomo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// DecodeError says what was wrong with a response and where: the page URL
// and the JSON field. A malformed page is rejected whole, never half-used.
type DecodeError struct {
	URL    string // the page or detail URL (never carries the token)
	Field  string // e.g. "data[3].updated_at", "meta.total"; "" for the body
	Reason string
	Err    error // underlying error, if any
}

func (e *DecodeError) Error() string {
	where := e.URL
	if e.Field != "" {
		where += ": " + e.Field
	}
	if e.Err != nil {
		return "vomo: decode " + where + ": " + e.Reason + ": " + e.Err.Error()
	}
	return "vomo: decode " + where + ": " + e.Reason
}

func (e *DecodeError) Unwrap() error { return e.Err }

// MaxDepth is how deeply a response may nest objects and arrays, envelope
// included. VOMO's records are a few levels deep; a deeper body is rejected
// before any decoder (or, downstream, the processor and a destination)
// walks it.
const MaxDepth = 64

// ErrTooDeep is the Err of the *DecodeError for a body nested deeper than
// MaxDepth.
var ErrTooDeep = errors.New("nested deeper than the limit")

// tooDeep reports whether JSON b nests deeper than limit. It scans bytes
// (strings skipped) without decoding; malformed JSON is the decoder's to
// reject.
func tooDeep(b []byte, limit int) bool {
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > limit {
				return true
			}
		case '}', ']':
			depth--
		}
	}
	return false
}

func depthError(u string) *DecodeError {
	return &DecodeError{URL: u, Reason: fmt.Sprintf("over %d levels of nesting", MaxDepth), Err: ErrTooDeep}
}

// ID is a record id sent as a JSON number or string; it is kept as a string.
type ID string

// UnmarshalJSON accepts 8205 and "8205".
func (id *ID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*id = ID(s)
	case len(b) > 0 && (b[0] == '-' || b[0] >= '0' && b[0] <= '9'):
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		if _, err := strconv.ParseInt(string(n), 10, 64); err != nil {
			return fmt.Errorf("id %s is not an integer", n)
		}
		*id = ID(n)
	case string(b) == "null":
		*id = ""
	default:
		return fmt.Errorf("id must be a number or a string, got %.20s", b)
	}
	return nil
}

// Int is an integer sent as a JSON number or a numeric string; null is 0.
type Int int

// UnmarshalJSON accepts 15, "15" and null.
func (n *Int) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*n = 0
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(s)
	}
	v, err := strconv.Atoi(string(b))
	if err != nil {
		return fmt.Errorf("want an integer, got %.20q", b)
	}
	*n = Int(v)
	return nil
}

// Bool is a boolean sent as true/false, 0/1 or their string forms; null is false.
type Bool bool

// UnmarshalJSON accepts true, false, 0, 1, "0", "1", "true", "false" and null.
func (v *Bool) UnmarshalJSON(b []byte) error {
	switch string(bytes.TrimSpace(b)) {
	case "true", "1", `"1"`, `"true"`:
		*v = true
	case "false", "0", `"0"`, `"false"`, "null", `""`:
		*v = false
	default:
		return fmt.Errorf("want a boolean or 0/1, got %.20s", b)
	}
	return nil
}

// Time is a timestamp in any layout VOMO sends: 2025-11-19T10:15:00+00:00,
// 2021-03-30T15:29:03.000000Z, or 2021-03-29 21:25:37 (read as UTC).
// null and "" are the zero time.
type Time struct{ time.Time }

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04:05.999999999"}

// ParseTime parses one VOMO timestamp.
func ParseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("timestamp %.40q in no known layout", s)
}

// UnmarshalJSON accepts the three layouts and null.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp must be a string, got %.20s", b)
	}
	if s == "" {
		t.Time = time.Time{}
		return nil
	}
	p, err := ParseTime(s)
	if err != nil {
		return err
	}
	t.Time = p
	return nil
}

// Record is one list item: the fields every resource has, and the item's
// raw JSON as served (the processor and destinations read the rest).
type Record struct {
	ID        string
	UpdatedAt time.Time
	CreatedAt time.Time // zero when the resource has none
	Raw       json.RawMessage
}

// Links are the envelope's navigation URLs; "" where VOMO sent null.
type Links struct {
	First, Last, Prev, Next string
}

// Meta is the envelope's paginator state. From and To are 0 on an empty page.
type Meta struct {
	CurrentPage int
	From, To    int
	Path        string
	PerPage     int
	Total       int
	LastPage    int // 0 when absent (VOMO's docs do not promise it)
}

// Page is one decoded list page.
type Page struct {
	URL     string
	Records []Record
	// Malformed are the items of data that could not be read as records:
	// one bad record must not block the rest of the page, nor every page
	// after it, so it is handed on (to the dead letters) instead.
	Malformed  []Malformed
	Links      Links
	Meta       Meta
	ServerTime time.Time // from the response's Date header
}

type wirePage struct {
	Data  *[]json.RawMessage `json:"data"`
	Links *struct {
		First, Last, Prev, Next *string
	} `json:"links"`
	Meta *struct {
		CurrentPage json.RawMessage `json:"current_page"`
		From        json.RawMessage `json:"from"`
		To          json.RawMessage `json:"to"`
		Path        *string         `json:"path"`
		PerPage     json.RawMessage `json:"per_page"`
		Total       json.RawMessage `json:"total"`
		LastPage    json.RawMessage `json:"last_page"`
	} `json:"meta"`
}

type wireRecord struct {
	ID        json.RawMessage `json:"id"`
	UpdatedAt json.RawMessage `json:"updated_at"`
	CreatedAt json.RawMessage `json:"created_at"`
}

// Malformed is one item of a list page that is not a readable record. ID
// and UpdatedAt are set when those fields could be read; Raw is the item,
// cut to MaxMalformedRaw bytes.
type Malformed struct {
	Index     int
	ID        string
	UpdatedAt time.Time
	Raw       json.RawMessage
	Size      int
	Err       *DecodeError
}

// ErrRecordTooLarge is the Err of a Malformed record over MaxRecordBytes.
var ErrRecordTooLarge = errors.New("record too large")

// Record limits. A record nested deeper than MaxDepth or larger than
// MaxRecordBytes is malformed (a change event must fit a NATS message);
// a page nested deeper than MaxPageDepth is rejected whole.
const (
	MaxRecordBytes  = 512 << 10
	MaxMalformedRaw = 64 << 10
	MaxPageDepth    = 10_000
)

// DecodePage parses a list response body. It returns a *DecodeError naming
// the field when the envelope is malformed, or wrapping ErrTooDeep when the
// body nests deeper than MaxPageDepth. A malformed item of data (a record
// whose fields have wrong types, nested deeper than MaxDepth, or larger
// than MaxRecordBytes) does not fail the page: it is listed in Malformed.
func DecodePage(body []byte, pageURL string) (Page, error) {
	bad := func(field, reason string, err error) (Page, error) {
		return Page{}, &DecodeError{URL: pageURL, Field: field, Reason: reason, Err: err}
	}
	if tooDeep(body, MaxPageDepth) {
		return Page{}, &DecodeError{URL: pageURL, Reason: fmt.Sprintf("over %d levels of nesting", MaxPageDepth), Err: ErrTooDeep}
	}
	var w wirePage
	if err := json.Unmarshal(body, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return bad(te.Field, "wrong type", err)
		}
		return bad("", "not a JSON list envelope", err)
	}
	switch {
	case w.Data == nil:
		return bad("data", "missing or null", nil)
	case w.Links == nil:
		return bad("links", "missing", nil)
	case w.Meta == nil:
		return bad("meta", "missing", nil)
	}
	p := Page{URL: pageURL, Records: make([]Record, 0, len(*w.Data))}
	m := w.Meta
	for _, f := range []struct {
		name     string
		raw      json.RawMessage
		dst      *int
		required bool
		min      int
	}{
		{"current_page", m.CurrentPage, &p.Meta.CurrentPage, true, 1},
		{"total", m.Total, &p.Meta.Total, true, 0},
		{"from", m.From, &p.Meta.From, false, 0},
		{"to", m.To, &p.Meta.To, false, 0},
		{"per_page", m.PerPage, &p.Meta.PerPage, false, 0},
		{"last_page", m.LastPage, &p.Meta.LastPage, false, 0},
	} {
		if len(f.raw) == 0 || string(f.raw) == "null" {
			if f.required {
				return bad("meta."+f.name, "missing or null", nil)
			}
			continue
		}
		var v Int
		if err := v.UnmarshalJSON(f.raw); err != nil {
			return bad("meta."+f.name, "malformed", err)
		}
		if int(v) < f.min {
			return bad("meta."+f.name, fmt.Sprintf("%d is below %d", v, f.min), nil)
		}
		*f.dst = int(v)
	}
	if m.Path != nil {
		p.Meta.Path = *m.Path
	}
	for _, l := range []struct {
		v   *string
		dst *string
	}{{w.Links.First, &p.Links.First}, {w.Links.Last, &p.Links.Last}, {w.Links.Prev, &p.Links.Prev}, {w.Links.Next, &p.Links.Next}} {
		if l.v != nil && *l.v != "null" { // the spec's examples wrote null as a string
			*l.dst = *l.v
		}
	}
	n := len(*w.Data)
	if n > 0 && p.Meta.From > 0 && p.Meta.To-p.Meta.From+1 != n {
		return bad("meta.to", fmt.Sprintf("from %d to %d does not match %d records in data", p.Meta.From, p.Meta.To, n), nil)
	}
	if n > p.Meta.Total {
		return bad("meta.total", fmt.Sprintf("%d is less than the %d records in data", p.Meta.Total, n), nil)
	}
	for i, raw := range *w.Data {
		field := func(name string) string { return "data[" + strconv.Itoa(i) + "]" + name }
		rec, fieldName, reason, err := decodeRecord(raw)
		switch {
		case reason == "" && len(rec.Raw) > MaxRecordBytes:
			fieldName, reason, err = "", fmt.Sprintf("record of %d bytes, over the %d-byte limit", len(rec.Raw), MaxRecordBytes), ErrRecordTooLarge
		case reason == "" && tooDeep(rec.Raw, MaxDepth):
			fieldName, reason, err = "", fmt.Sprintf("over %d levels of nesting", MaxDepth), ErrTooDeep
		}
		if reason != "" {
			p.Malformed = append(p.Malformed, malformed(i, raw, rec, &DecodeError{URL: pageURL, Field: field(fieldName), Reason: reason, Err: err}))
			continue
		}
		p.Records = append(p.Records, rec)
	}
	return p, nil
}

// malformed describes item i, keeping whatever identity it has.
func malformed(i int, raw json.RawMessage, rec Record, err *DecodeError) Malformed {
	m := Malformed{Index: i, Size: len(raw), Err: err, ID: rec.ID, UpdatedAt: rec.UpdatedAt}
	if m.ID == "" {
		var wr wireRecord
		if json.Unmarshal(raw, &wr) == nil {
			var id ID
			if id.UnmarshalJSON(wr.ID) == nil {
				m.ID = string(id)
			}
			var up Time
			if up.UnmarshalJSON(wr.UpdatedAt) == nil {
				m.UpdatedAt = up.Time
			}
		}
	}
	m.Raw = raw
	if len(raw) > MaxMalformedRaw {
		m.Raw = raw[:MaxMalformedRaw]
	}
	return m
}

// decodeRecord reads the common fields of one item; a non-empty reason
// means it is malformed.
func decodeRecord(raw json.RawMessage) (Record, string, string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return Record{}, "", "not an object", nil
	}
	var wr wireRecord
	if err := json.Unmarshal(raw, &wr); err != nil {
		return Record{}, "", "malformed object", err
	}
	var rec Record
	var id ID
	if len(wr.ID) == 0 {
		return rec, ".id", "missing", nil
	}
	if err := id.UnmarshalJSON(wr.ID); err != nil {
		return rec, ".id", "malformed", err
	}
	if id == "" {
		return rec, ".id", "null or empty", nil
	}
	var up, cr Time
	if len(wr.UpdatedAt) == 0 {
		return rec, ".updated_at", "missing", nil
	}
	if err := up.UnmarshalJSON(wr.UpdatedAt); err != nil {
		return rec, ".updated_at", "malformed", err
	}
	if up.IsZero() {
		return rec, ".updated_at", "null or empty", nil
	}
	if len(wr.CreatedAt) > 0 {
		if err := cr.UnmarshalJSON(wr.CreatedAt); err != nil {
			return rec, ".created_at", "malformed", err
		}
	}
	rec = Record{ID: string(id), UpdatedAt: up.Time, CreatedAt: cr.Time, Raw: raw}
	return rec, "", "", nil
}

// DecodeDetail returns the data member of a detail response, checking that
// it is an object with an id.
func DecodeDetail(body []byte, u string) (json.RawMessage, error) {
	if tooDeep(body, MaxDepth) {
		return nil, depthError(u)
	}
	var w struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, &DecodeError{URL: u, Reason: "not a JSON object", Err: err}
	}
	d := bytes.TrimSpace(w.Data)
	if len(d) == 0 || d[0] != '{' {
		return nil, &DecodeError{URL: u, Field: "data", Reason: "missing or not an object"}
	}
	var r struct {
		ID *ID `json:"id"`
	}
	if err := json.Unmarshal(d, &r); err != nil || r.ID == nil || *r.ID == "" {
		return nil, &DecodeError{URL: u, Field: "data.id", Reason: "missing or malformed", Err: err}
	}
	return d, nil
}
