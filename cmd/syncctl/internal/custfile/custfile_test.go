package custfile_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/cmd/syncctl/internal/custfile"
	"github.com/vomosync/vomosync/pkg/customer"
)

func TestParseReportsEveryBadField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"durations", "id: a\nresources: [users]\ncadences: {users: 15x}\noverlap: 5\nrecovery: {window: soon}\n",
			[]string{`cadences.users: "15x" is not a duration`, "overlap: 5 is not a duration", `recovery.window: "soon" is not a duration`}},
		{"unknown field", "id: a\nresources: [users]\ncadense: {users: 1m}\n", []string{"cadense: unknown field"}},
		{"wrong type", "id: a\nresources: [users]\nbudget_per_minute: lots\n", []string{"budget_per_minute: expected int"}},
		{"missing id and resources", "budget_burst: 3\n", []string{"id: required", "resources: list at least one"}},
		{"cadence of a disabled resource", "id: a\nresources: [users]\ncadences: {groups: 1h}\n", []string{"cadences.groups: the resource is not enabled"}},
		{"actions", "id: a\nresources: [users]\nactions: [{name: hi, on: later, resource: users, url: http://x}]\n", []string{"actions[0]"}},
		{"not a mapping", "- a\n- b\n", []string{"must be a YAML mapping"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := custfile.Parse([]byte(tc.yaml))
			require.ErrorIs(t, err, custfile.ErrInvalid)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestParseAndDiff(t *testing.T) {
	t.Parallel()
	f, err := custfile.Parse([]byte(`id: acme
resources: [users, groups]
cadences: {users: 10m}
destination: {kind: http, url: "https://hooks.example/vomo", signing_key_ref: acme-hmac}
actions:
  - {name: welcome, on: first_seen, resource: users, url: "https://hooks.example/welcome"}
`))
	require.NoError(t, err)
	require.Equal(t, "first_seen", f.Actions[0].On, "the key on is not read as YAML 1.1's true")
	require.Equal(t, customer.Duration(10*time.Minute), f.Cadences["users"])
	stored := customer.Customer{ID: "acme", Resources: []string{"users"},
		Settings: customer.Settings{Cadences: map[string]customer.Duration{"users": customer.Duration(time.Hour)}, BudgetPerMinute: 30}}
	changes, err := custfile.Diff(stored, f)
	require.NoError(t, err)
	got := map[string][2]string{}
	for _, c := range changes {
		got[c.Path] = [2]string{c.Old, c.New}
	}
	require.Equal(t, [2]string{"1h0m0s", "10m0s"}, got["cadences.users"])
	require.Equal(t, [2]string{"30", "(default: 60)"}, got["budget_per_minute"], "a field removed falls back to its default, shown")
	require.Equal(t, [2]string{"(default)", "http"}, got["destination.kind"])
	require.Equal(t, [2]string{`["users"]`, `["users","groups"]`}, got["resources"])
	require.Len(t, changes, 7)
	same, err := custfile.Diff(customer.Customer{Resources: f.Resources, Settings: f.Settings}, f)
	require.NoError(t, err)
	require.Empty(t, same)
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("id: acme\nresources: [users, groups]\ncadences: {users: 15m}\noverlap: 5m\n"))
	f.Add([]byte("id: a\nactions:\n  - on: created\n    url: https://x\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := custfile.Parse(data)
		if err != nil {
			require.ErrorIs(t, err, custfile.ErrInvalid)
			return
		}
		require.NotEmpty(t, file.ID, "accepted a file without an id")
	})
}
