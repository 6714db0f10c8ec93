package sim_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/vomosync/vomosync/services/vomosim/sim"
)

// discard is a ResponseWriter that keeps nothing, so the benchmark measures
// the simulator, not a recorder.
type discard struct {
	h http.Header
	n int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Write(b []byte) (int, error) { d.n += len(b); return len(b), nil }

func millionUsers(b *testing.B) (*sim.Sim, float64) {
	b.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	s := sim.New(sim.Options{Seed: 1})
	if err := s.AddCustomer(sim.CustomerSpec{ID: "big", Token: "tok-big", Users: 1_000_000}); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	return s, float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
}

// BenchmarkListPage serves random pages of a 1,000,000-user customer
// straight through the handler (no network) and reports pages/s and the
// heap held per million users. Run: go test -run x -bench ListPage -benchtime 3s ./sim/
func BenchmarkListPage(b *testing.B) {
	s, mb := millionUsers(b)
	h := s.Handler()
	for _, tc := range []struct{ name, query string }{
		{"backfill", "updated_after=1970-01-01T00:00:00Z"},
		{"incremental", "updated_after=" + time.Now().Add(-24*time.Hour).UTC().Format(time.RFC3339)},
		{"by_updated_at", ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if tc.name == "by_updated_at" {
				if err := s.SetFaults("big", sim.Faults{Behaviour: sim.Behaviour{Order: "updated_at"}}); err != nil {
					b.Fatal(err)
				}
				defer s.SetFaults("big", sim.Faults{})
			}
			req := httptest.NewRequest(http.MethodGet, "/v1/users", nil)
			req.Header.Set("Authorization", "Bearer tok-big")
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				req.URL.RawQuery = tc.query + "&page=" + strconv.Itoa(1+(i*7919)%66000)
				h.ServeHTTP(w, req)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pages/s")
			b.ReportMetric(mb, "MB/1M-users")
		})
	}
}

// BenchmarkListPageHTTP is the same over loopback TCP with a keep-alive
// client: what a poller in another process sees (client cost included).
func BenchmarkListPageHTTP(b *testing.B) {
	s, mb := millionUsers(b)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	client := srv.Client()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/users?updated_after=1970-01-01T00:00:00Z&page="+strconv.Itoa(1+(i*7919)%66000), nil)
		req.Header.Set("Authorization", "Bearer tok-big")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pages/s")
	b.ReportMetric(mb, "MB/1M-users")
}
