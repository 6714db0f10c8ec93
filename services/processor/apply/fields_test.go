package apply

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTopLevel(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		keys []string
		vals []string
		ok   bool
	}{
		{`{}`, nil, nil, true},
		{` { "a" : 1 , "b":"x,}" ,"c":{"d":[1,{"e":"]"}]},"f":null,"g":true, "h": -1.5e3 } `,
			[]string{"a", "b", "c", "f", "g", "h"}, []string{"1", `"x,}"`, `{"d":[1,{"e":"]"}]}`, "null", "true", "-1.5e3"}, true},
		{`{"q\"k":"v\\"}`, []string{`q\"k`}, []string{`"v\\"`}, true},
		{`[1,2]`, nil, nil, false},
		{`"s"`, nil, nil, false},
	}
	for _, tc := range cases {
		require.True(t, json.Valid([]byte(tc.in)), tc.in)
		fs, err := topLevel([]byte(tc.in), nil)
		if !tc.ok {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Len(t, fs, len(tc.keys), tc.in)
		for i, f := range fs {
			require.Equal(t, tc.keys[i], string(f.key))
			require.Equal(t, tc.vals[i], string(f.val))
		}
	}
}

func TestChangedFields(t *testing.T) {
	t.Parallel()
	now, err := topLevel([]byte(`{"id":1,"email":"a@x","tags":["a","b"],"n":{"x":1},"new":true}`), nil)
	require.NoError(t, err)
	require.Equal(t, []string{"email", "id", "n", "new", "tags"}, changedFields(now, nil, nil), "first version: every field")
	prev := []byte(`{"id": 1, "email": "b@x", "tags": ["a", "b"], "n": {"x": 2}, "gone": 1}`)
	require.Equal(t, []string{"email", "gone", "n", "new"}, changedFields(now, prev, &nameTable{}))
	amp, err := topLevel([]byte(`{"name":"a\u0026b","n":1.0}`), nil)
	require.NoError(t, err)
	require.Empty(t, changedFields(amp, []byte(`{"n": 1.0, "name": "a&b"}`), nil), "same values, other spelling")
	esc, err := topLevel([]byte(`{"we\u00efrd":1}`), nil)
	require.NoError(t, err)
	require.Equal(t, []string{"weïrd"}, changedFields(esc, nil, &nameTable{}))
	require.True(t, equalOutsideSpace([]byte(`{"a":[1,"x y"]}`), []byte(`{"a": [1, "x y"]}`)))
	require.False(t, equalOutsideSpace([]byte(`"x y"`), []byte(`"xy"`)), "spaces inside strings count")
	require.True(t, sameJSON([]byte(`1.0`), []byte(`1`)))
	require.False(t, sameJSON([]byte(`3`), []byte(`6`)))
	require.False(t, sameJSON([]byte(`"a"`), []byte(`"b"`)))
	require.True(t, sameJSON([]byte(`"\u0061"`), []byte(`"a"`)))
	require.False(t, sameJSON([]byte(`true`), []byte(`"true"`)))
	require.False(t, equalOutsideSpace([]byte(`"a\"b"`), []byte(`"a\\"`)))
}
