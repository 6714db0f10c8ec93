package apply

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestCheckJSON(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]error{
		`{"a":"x\\u0000"}`:                                      nil, // an escaped backslash, then "u0000"
		`{"a":"\u00e9\ud83d\ude00"}`:                            nil,
		` {"a" : [1, -0.5e+3, true, false, null, {}, [], ""]} `: nil,
		`"é"`:                  nil,
		`-0`:                   nil,
		`{"a":"\u0000"}`:       errJSONNUL,
		`{"a":"\ud83d"}`:       errJSONHigh,
		`{"a":"\ude00x"}`:      errJSONLow,
		`{"a":"\ud83d\u0041"}`: errJSONHigh,
		"{\"a\":\"\xff\"}":     errJSONUTF8,
		`{"a":1,}`:             errJSONSyntax,
		`{"a" 1}`:              errJSONSyntax,
		`[1 2]`:                errJSONSyntax,
		`01`:                   errJSONSyntax,
		`1.`:                   errJSONSyntax,
		`1e`:                   errJSONSyntax,
		`tru`:                  errJSONSyntax,
		`{"a":1}x`:             errJSONSyntax,
		"\"a\tb\"":             errJSONSyntax,
		`{"a":[1}`:             errJSONSyntax,
		`{"a":`:                errJSONEnd,
		``:                     errJSONEnd,
		`"\x"`:                 errJSONSyntax,
	} {
		_, err := checkJSON([]byte(in), nil)
		require.Equal(t, want, err, "%q", in)
	}
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	_, err := checkJSON([]byte(deep), nil)
	require.NoError(t, err)
	require.True(t, json.Valid([]byte(deep)))
	_, err = checkJSON([]byte("["+deep+"]"), nil)
	require.Equal(t, errJSONDepth, err)
	require.False(t, json.Valid([]byte("["+deep+"]")), "the same limit as encoding/json")
}

// FuzzCheckJSON holds checkJSON to encoding/json.Valid: it accepts a text
// only when json.Valid does, and refuses a valid one only for what jsonb
// cannot store (invalid UTF-8, \u0000, an unpaired surrogate). The members
// it lists are those topLevel finds.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5e3,"x\u00e9",true,null]}`, `"\ud83d\ude00"`, `{"a":"\u0000"}`, "[\"\xff\"]", `-0.0E-7`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		members, err := checkJSON(b, nil)
		valid := json.Valid(b)
		if err == nil {
			// The members are topLevel's (none when the text is no object).
			want, terr := topLevel(b, nil)
			if terr != nil {
				want = nil
			}
			require.Equal(t, want, members, "%q", b)
		}
		if err == nil && !valid {
			t.Fatalf("checkJSON accepted what json.Valid refuses: %q", b)
		}
		if err != nil && valid {
			switch err {
			case errJSONNUL, errJSONHigh, errJSONLow:
			case errJSONUTF8:
				require.False(t, utf8.Valid(b), "%q refused as invalid UTF-8", b)
			default:
				t.Fatalf("checkJSON refused valid JSON %q: %v", b, err)
			}
		}
	})
}

// go test -run '^$' -bench CheckJSON ./apply/
func BenchmarkCheckJSON(b *testing.B) {
	rec := []byte(`{"type":"user","id":1234,"first_name":"Margaret","last_name":"Fernández","full_name":"Margaret Fernández",` +
		`"email":"margaret.fernandez.1234@volunteers.example.org","address":"1334 Maple Avenue, Apt 70, Springfield, IL 62704, USA",` +
		`"phone":"+1-217-555-1234","birthday":"1984-11-03","gender":"F","updated_at":"2026-01-01T00:00:01.000000Z",` +
		`"created_at":"2025-12-01T00:00:01.000000Z","user_status":"VERIFIED","membership_status":"ACCEPTED","membership_role":"ADMIN",` +
		`"hours_total":3,"profile_field_values":[{"id":11,"name":"T-shirt size","value":"M"},` +
		`{"id":12,"name":"Emergency contact","value":"Alex Doe +1-217-555-0199"},{"id":13,"name":"Skills","value":"first aid, driving"}]}`)
	buf := make([]field, 0, 64)
	b.Run("checkJSON", func(b *testing.B) {
		b.SetBytes(int64(len(rec)))
		for b.Loop() {
			if _, err := checkJSON(rec, buf[:0]); err != nil {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(rec)))
		for b.Loop() {
			if !json.Valid(rec) {
				b.Fatal("invalid")
			}
		}
	})
}
