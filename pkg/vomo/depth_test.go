package vomo_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/vomo"
)

// nested is a JSON value of n arrays around 1.
func nested(n int) string { return strings.Repeat("[", n) + "1" + strings.Repeat("]", n) }

// depthPage is a one-record page whose body nests exactly depth levels: the
// envelope object, data, the record, then arrays.
func depthPage(depth int) []byte {
	return []byte(envelope(`{"id":1,"updated_at":"2025-11-19T10:15:00Z","x":`+nested(depth-3)+`}`, `"current_page":1,"total":1`))
}

func TestNestingDepthCap(t *testing.T) {
	t.Parallel()
	_, err := vomo.DecodePage(depthPage(vomo.MaxDepth), pageURL)
	require.NoError(t, err, "exactly the cap")
	// A record nested deeper than MaxDepth is set aside; the page decodes.
	for _, d := range []int{vomo.MaxDepth + 3, 5_000} { // the record itself nests d-2 levels
		p, err := vomo.DecodePage(depthPage(d), pageURL)
		require.NoError(t, err, d)
		require.Empty(t, p.Records)
		require.Len(t, p.Malformed, 1)
		require.ErrorIs(t, p.Malformed[0].Err, vomo.ErrTooDeep, d)
		require.Equal(t, "1", p.Malformed[0].ID)
	}
	// A page deeper than the page cap is rejected whole.
	for _, d := range []int{vomo.MaxPageDepth + 1, 100_000} {
		_, err = vomo.DecodePage(depthPage(d), pageURL)
		require.ErrorIs(t, err, vomo.ErrTooDeep, d)
		var de *vomo.DecodeError
		require.True(t, errors.As(err, &de))
		require.Equal(t, pageURL, de.URL)
	}
	// Brackets inside strings (escaped quotes included) are not nesting.
	s, _ := json.Marshal(strings.Repeat(`[{\"`, 500))
	_, err = vomo.DecodePage([]byte(envelope(`{"id":1,"updated_at":"2025-11-19T10:15:00Z","note":`+string(s)+`}`, `"current_page":1,"total":1`)), pageURL)
	require.NoError(t, err)

	_, err = vomo.DecodeDetail([]byte(`{"data":{"id":1,"x":`+nested(vomo.MaxDepth)+`}}`), "https://api.vomo.org/v1/users/1")
	require.ErrorIs(t, err, vomo.ErrTooDeep)
	_, err = vomo.DecodeDetail([]byte(`{"data":{"id":1,"x":`+nested(vomo.MaxDepth-2)+`}}`), "https://api.vomo.org/v1/users/1")
	require.NoError(t, err)
	_, err = vomo.Decode[vomo.User]([]byte(`{"id":1,"x":` + nested(vomo.MaxDepth) + `}`))
	require.ErrorIs(t, err, vomo.ErrTooDeep)
}

func FuzzDecodeDetail(f *testing.F) {
	f.Add([]byte(`{"data":{"id":8205,"updated_at":"2025-11-19T10:15:00+00:00"}}`))
	f.Add([]byte(`{"data":{"id":"1","x":[[[{"y":"]]]"}]]]}}`))
	f.Add([]byte(`{"data":[1]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := vomo.DecodeDetail(body, "https://api.vomo.org/v1/users/1")
		if err != nil {
			var de *vomo.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error is not a *DecodeError: %v", err)
			}
			return
		}
		if len(d) == 0 || d[0] != '{' || !json.Valid(d) {
			t.Fatalf("accepted %q", d)
		}
	})
}
