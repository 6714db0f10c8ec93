package vomo_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/vomo"
)

const pageURL = "https://api.vomo.org/v1/users?page=1"

func envelope(data, meta string) string {
	return `{"data":[` + data + `],"links":{"first":"https://api.vomo.org/v1/users?page=1","last":"https://api.vomo.org/v1/users?page=1","prev":null,"next":null},"meta":{` + meta + `}}`
}

func TestDecodePageVariants(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 11, 19, 10, 15, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, item, meta string
		wantID           string
		wantUpdated      time.Time
	}{
		{"numeric id, offset", `{"id":8205,"updated_at":"2025-11-19T10:15:00+00:00","created_at":"2025-11-19T10:15:00+00:00"}`, `"current_page":1,"from":1,"to":1,"per_page":15,"total":1,"last_page":1`, "8205", at},
		{"string id, micro", `{"id":"8205","updated_at":"2025-11-19T10:15:00.000000Z"}`, `"current_page":"1","from":"1","to":"1","per_page":"15","total":"1"`, "8205", at},
		{"plain layout", `{"id":8205,"updated_at":"2025-11-19 10:15:00","draft":0,"anytime":1}`, `"current_page":1,"total":1,"from":1,"to":1`, "8205", at},
		{"other zone", `{"id":1,"updated_at":"2025-11-19T12:15:00+02:00"}`, `"current_page":1,"total":1`, "1", at},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := vomo.DecodePage([]byte(envelope(tc.item, tc.meta)), pageURL)
			require.NoError(t, err)
			require.Len(t, p.Records, 1)
			require.Equal(t, tc.wantID, p.Records[0].ID)
			require.True(t, tc.wantUpdated.Equal(p.Records[0].UpdatedAt), p.Records[0].UpdatedAt)
			require.JSONEq(t, tc.item, string(p.Records[0].Raw))
			require.Equal(t, 1, p.Meta.Total)
			require.Empty(t, p.Links.Next)
		})
	}
}

func TestDecodeEmptyAndLinks(t *testing.T) {
	t.Parallel()
	body := `{"data":[],"links":{"first":"f","last":"l","prev":"null","next":"null"},"meta":{"current_page":3,"from":null,"to":null,"path":"p","per_page":15,"total":30,"last_page":2}}`
	p, err := vomo.DecodePage([]byte(body), pageURL)
	require.NoError(t, err)
	require.Empty(t, p.Records)
	require.Empty(t, p.Links.Next, `the spec's "null" string is null`)
	require.Empty(t, p.Links.Prev)
	require.Equal(t, vomo.Meta{CurrentPage: 3, Path: "p", PerPage: 15, Total: 30, LastPage: 2}, p.Meta)
}

func TestDecodePageRejects(t *testing.T) {
	t.Parallel()
	okMeta := `"current_page":1,"from":1,"to":1,"total":1`
	for _, tc := range []struct {
		name, body, field string
	}{
		{"not json", `{"data":[`, ""},
		{"no data", `{"links":{},"meta":{"current_page":1,"total":0}}`, "data"},
		{"null data", `{"data":null,"links":{},"meta":{"current_page":1,"total":0}}`, "data"},
		{"no meta", `{"data":[],"links":{}}`, "meta"},
		{"no links", `{"data":[],"meta":{"current_page":1,"total":0}}`, "links"},
		{"no total", envelope(``, `"current_page":1`), "meta.total"},
		{"bad total", envelope(``, `"current_page":1,"total":"many"`), "meta.total"},
		{"page zero", envelope(``, `"current_page":0,"total":0`), "meta.current_page"},
		{"no id", envelope(`{"updated_at":"2025-11-19T10:15:00+00:00"}`, okMeta), "data[0].id"},
		{"float id", envelope(`{"id":1.5,"updated_at":"2025-11-19T10:15:00+00:00"}`, okMeta), "data[0].id"},
		{"object id", envelope(`{"id":{},"updated_at":"2025-11-19T10:15:00+00:00"}`, okMeta), "data[0].id"},
		{"no updated_at", envelope(`{"id":1}`, okMeta), "data[0].updated_at"},
		{"null updated_at", envelope(`{"id":1,"updated_at":null}`, okMeta), "data[0].updated_at"},
		{"bad updated_at", envelope(`{"id":1,"updated_at":"yesterday"}`, okMeta), "data[0].updated_at"},
		{"bad created_at", envelope(`{"id":1,"updated_at":"2025-11-19T10:15:00+00:00","created_at":5}`, okMeta), "data[0].created_at"},
		{"item not object", envelope(`[1]`, okMeta), "data[0]"},
		{"count mismatch", envelope(`{"id":1,"updated_at":"2025-11-19T10:15:00+00:00"}`, `"current_page":1,"from":1,"to":2,"total":2`), "meta.to"},
		{"total too small", envelope(`{"id":1,"updated_at":"2025-11-19T10:15:00+00:00"}`, `"current_page":1,"total":0`), "meta.total"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := vomo.DecodePage([]byte(tc.body), pageURL)
			var de *vomo.DecodeError
			if strings.HasPrefix(tc.field, "data[") {
				// A bad record is set aside, the page still decodes.
				require.NoError(t, err)
				require.Empty(t, p.Records)
				require.Len(t, p.Malformed, 1)
				de = p.Malformed[0].Err
				require.Equal(t, 0, p.Malformed[0].Index)
			} else {
				require.True(t, errors.As(err, &de), "%v", err)
			}
			require.Equal(t, tc.field, de.Field)
			require.Equal(t, pageURL, de.URL)
			require.Contains(t, de.Error(), pageURL)
		})
	}
}

func TestFlexTypes(t *testing.T) {
	t.Parallel()
	var b vomo.Bool
	for in, want := range map[string]bool{"true": true, "1": true, `"1"`: true, "false": false, "0": false, "null": false} {
		require.NoError(t, b.UnmarshalJSON([]byte(in)), in)
		require.Equal(t, want, bool(b), in)
	}
	require.Error(t, b.UnmarshalJSON([]byte("2")))
	var n vomo.Int
	require.NoError(t, n.UnmarshalJSON([]byte(`"15"`)))
	require.Equal(t, vomo.Int(15), n)
	require.Error(t, n.UnmarshalJSON([]byte(`"x"`)))
	_, err := vomo.ParseTime("2021-03-29 21:25:37")
	require.NoError(t, err)
	_, err = vomo.ParseTime(strings.Repeat("9", 30))
	require.Error(t, err)
}

func FuzzDecodePage(f *testing.F) {
	f.Add([]byte(envelope(`{"id":8205,"updated_at":"2025-11-19T10:15:00+00:00"}`, `"current_page":1,"from":1,"to":1,"total":1`)))
	f.Add([]byte(envelope(`{"id":"1","updated_at":"2021-03-30T15:29:03.000000Z"},{"id":2,"updated_at":"2021-03-29 21:25:37"}`, `"current_page":"1","from":"1","to":"2","total":"2"`)))
	f.Add([]byte(`{"data":[],"links":{"prev":"null","next":null},"meta":{"current_page":1,"from":null,"to":null,"total":0}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := vomo.DecodePage(body, pageURL)
		if err != nil {
			var de *vomo.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error is not a *DecodeError: %v", err)
			}
			if de.URL != pageURL {
				t.Fatalf("error does not name the page: %v", err)
			}
			return
		}
		// A page that decodes is whole: every record has an id and a time.
		if p.Meta.CurrentPage < 1 || p.Meta.Total < len(p.Records) {
			t.Fatalf("accepted inconsistent meta %+v with %d records", p.Meta, len(p.Records))
		}
		for i, r := range p.Records {
			if r.ID == "" || r.UpdatedAt.IsZero() || len(r.Raw) == 0 {
				t.Fatalf("record %d accepted incomplete: %+v", i, r)
			}
		}
	})
}

func TestTypedParticipationFromWebhookShape(t *testing.T) {
	t.Parallel()
	// The webhook participation example: hours as a string, verified as 0,
	// microsecond timestamps.
	p, err := vomo.Decode[vomo.Participation]([]byte(`{"user_id":"8205","hours":"10.00","verified":0,"checked_in_at":"2021-03-30T15:29:03.000000Z","checked_out_at":null}`))
	require.NoError(t, err)
	require.Equal(t, vomo.ID("8205"), p.UserID)
	require.Equal(t, vomo.Number(10), p.Hours)
	require.False(t, bool(p.Verified))
	require.True(t, p.CheckedOutAt.IsZero())
	_, err = vomo.Decode[vomo.Participation]([]byte(`{"hours":"ten"}`))
	require.Error(t, err)
}

// TestMalformedRecordsSetAside: bad records keep what identity they have and
// leave the good ones on the page; an oversized one is cut.
func TestMalformedRecordsSetAside(t *testing.T) {
	t.Parallel()
	big := `{"id":3,"updated_at":"2025-11-19T10:15:02Z","bio":"` + strings.Repeat("b", vomo.MaxRecordBytes) + `"}`
	body := `{"data":[{"id":1,"updated_at":"2025-11-19T10:15:00Z"},{"id":2,"updated_at":"2025-11-19T10:15:01Z","created_at":true},` +
		big + `,{"id":{"x":1},"updated_at":"2025-11-19T10:15:03Z"},{"id":5,"updated_at":"2025-11-19T10:15:04Z"}],` +
		`"links":{},"meta":{"current_page":1,"from":1,"to":5,"total":5}}`
	p, err := vomo.DecodePage([]byte(body), pageURL)
	require.NoError(t, err)
	require.Len(t, p.Records, 2)
	require.Equal(t, []string{"1", "5"}, []string{p.Records[0].ID, p.Records[1].ID})
	require.Len(t, p.Malformed, 3)
	m := p.Malformed
	require.Equal(t, "2", m[0].ID, "id kept when it could be read")
	require.Equal(t, "2025-11-19T10:15:01Z", m[0].UpdatedAt.UTC().Format(time.RFC3339))
	require.Equal(t, "data[1].created_at", m[0].Err.Field)
	require.Equal(t, "3", m[1].ID)
	require.ErrorIs(t, m[1].Err, vomo.ErrRecordTooLarge)
	require.Len(t, m[1].Raw, vomo.MaxMalformedRaw)
	require.Greater(t, m[1].Size, vomo.MaxRecordBytes)
	require.Empty(t, m[2].ID, "an object id is no id")
	require.Equal(t, 3, m[2].Index)
}
