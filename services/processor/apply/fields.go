package apply

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"sync"
)

// field is one top-level member of a JSON object, as ranges of the raw
// bytes (the key still escaped).
type field struct{ key, val []byte }

var errNotObject = errors.New("not a JSON object")

// topLevel lists the members of the JSON object b without decoding the
// values: a batch of records costs no maps and no garbage. b must already be
// valid JSON (checkJSON).
func topLevel(b []byte, out []field) ([]field, error) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, errNotObject
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return out, nil
	}
	for i < len(b) {
		if b[i] != '"' {
			return nil, errNotObject
		}
		end := endString(b, i)
		key := b[i+1 : end]
		i = skipWS(b, end+1)
		if i >= len(b) || b[i] != ':' {
			return nil, errNotObject
		}
		i = skipWS(b, i+1)
		vend := endValue(b, i)
		out = append(out, field{key: key, val: b[i:vend]})
		i = skipWS(b, vend)
		if i >= len(b) {
			break
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return out, nil
		default:
			return nil, errNotObject
		}
	}
	return nil, errNotObject
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// endString returns the index of the quote closing the string opening at i.
func endString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return len(b)
}

// endValue returns the index just past the value starting at i.
func endValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return endString(b, i) + 1
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = endString(b, j)
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	default:
		for j := i; j < len(b); j++ {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return j
			}
		}
		return len(b)
	}
}

// nameTable hands out one string per field name, so the field names of
// every record are not allocated again for each (a resource has a few dozen).
type nameTable struct {
	mu sync.RWMutex
	m  map[string]string
}

// name is keyName(raw), shared. A nil table, or a full one, allocates.
func (t *nameTable) name(raw []byte) string {
	if t == nil {
		return keyName(raw)
	}
	t.mu.RLock()
	s, ok := t.m[string(raw)]
	t.mu.RUnlock()
	if ok {
		return s
	}
	s = keyName(raw)
	t.mu.Lock()
	if t.m == nil {
		t.m = map[string]string{}
	}
	if len(t.m) < 4096 {
		t.m[string(raw)] = s
	}
	t.mu.Unlock()
	return s
}

// keyName unescapes a raw key (almost always a no-op).
func keyName(raw []byte) string {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw)
	}
	var s string
	if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &s) != nil {
		return string(raw)
	}
	return s
}

// changedFields names the top-level keys whose values differ from the
// previously applied record (every key for a first version). prev holds the
// bytes applied last time, as stored in sync_state.
func changedFields(now []field, prev []byte, names *nameTable) []string {
	var before []field
	if len(prev) > 0 {
		before, _ = topLevel(prev, make([]field, 0, len(now)))
	}
	out := make([]string, 0, len(now))
	for _, f := range now {
		if j := find(before, f.key); j < 0 || !sameJSON(before[j].val, f.val) {
			out = append(out, names.name(f.key))
		}
	}
	for _, f := range before {
		if find(now, f.key) < 0 {
			out = append(out, names.name(f.key))
		}
	}
	slices.Sort(out)
	return out
}

func find(fs []field, key []byte) int {
	for i := range fs {
		if bytes.Equal(fs[i].key, key) {
			return i
		}
	}
	return -1
}

// sameJSON compares two values: bytes first, then without insignificant
// whitespace (Postgres prints jsonb with spaces), then decoded (escapes and
// number spellings differ between writers).
func sameJSON(a, b []byte) bool {
	if bytes.Equal(a, b) || equalOutsideSpace(a, b) {
		return true
	}
	if plainScalar(a) && plainScalar(b) {
		// Strings and literals without escapes have one spelling: they
		// differ. Numbers may be spelled differently (1.0, 1e0).
		fa, errA := strconv.ParseFloat(string(bytes.TrimSpace(a)), 64)
		fb, errB := strconv.ParseFloat(string(bytes.TrimSpace(b)), 64)
		return errA == nil && errB == nil && fa == fb
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	if bytes.Equal(ca.Bytes(), cb.Bytes()) {
		return true
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// plainScalar: a string, number or literal without escapes.
func plainScalar(v []byte) bool {
	v = bytes.TrimSpace(v)
	return len(v) > 0 && v[0] != '{' && v[0] != '[' && bytes.IndexByte(v, '\\') < 0
}

// equalOutsideSpace compares two JSON values ignoring whitespace outside
// strings, without allocating: Postgres prints jsonb with a space after
// every colon and comma, which is all that usually differs.
func equalOutsideSpace(a, b []byte) bool {
	i, j := 0, 0
	inStr := false
	for {
		if !inStr {
			i, j = skipWS(a, i), skipWS(b, j)
		}
		if i == len(a) || j == len(b) {
			return i == len(a) && j == len(b)
		}
		c := a[i]
		if c != b[j] {
			return false
		}
		switch {
		case inStr && c == '\\':
			if i+1 >= len(a) || j+1 >= len(b) || a[i+1] != b[j+1] {
				return false
			}
			i, j = i+1, j+1
		case c == '"':
			inStr = !inStr
		}
		i, j = i+1, j+1
	}
}

func hex4(h []byte) (rune, bool) {
	var r rune
	for _, c := range h {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}
