package control

import (
	"errors"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches /metrics and parses it as Prometheus does.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, url+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return fams
}

// value returns the sample of name whose labels include want (name=value
// pairs), as a counter, gauge or histogram sum; ok is false when absent.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return m.Histogram.GetSampleSum(), true
		}
	}
	return 0, false
}

func histogramCount(fams map[string]*dto.MetricFamily, name string) uint64 {
	if f := fams[name]; f != nil && len(f.GetMetric()) == 1 && f.GetMetric()[0].Histogram != nil {
		return f.GetMetric()[0].Histogram.GetSampleCount()
	}
	return 0
}

func TestMetricsCountWhatTheCacheReports(t *testing.T) {
	m := NewMetrics()
	s, hs := newTestServer(t, Options{Metrics: m})

	before := scrape(t, hs.URL)
	if _, ok := value(before, "weightfs_prefetch_bytes_total"); ok {
		t.Error("progress gauges are served before the mount is ready")
	}
	if v, ok := value(before, "weightfs_cache_hits_total", "tier", "disk"); !ok || v != 0 {
		t.Errorf("hit tiers should be present at zero from the start: %v %v", v, ok)
	}

	m.Fetched("hf:acme/llm", 8<<20, time.Second)
	m.Fetched("hf:acme/llm", 4<<20, time.Second)
	m.Fetched("s3:s3://b/p", 1, time.Second)
	m.FetchFailed("hf:acme/llm", errors.New("boom"))
	m.Hit("memory")
	m.Hit("memory")
	m.Hit("disk")
	m.Miss()
	m.Waited(250 * time.Millisecond)
	m.Waited(750 * time.Millisecond)
	m.ObserveRead(time.Millisecond, nil)
	m.ObserveRead(2*time.Second, errors.New("EIO"))
	m.Retried(errors.New("reset"))
	m.Retried(errors.New("reset"))
	m.Retried(errors.New("reset"))
	m.Verified("a", true)
	m.Verified("b", false)
	s.Ready(Model{Volumes: []Volume{{Folder: "llm", Files: []Stater{
		newFile("config.json", 100, 100, "verified"),
		newFile("model.safetensors", 900, 300, "filling"),
	}}}})

	fams := scrape(t, hs.URL)
	cases := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"weightfs_fetched_bytes_total", []string{"origin", "hf:acme/llm"}, 12 << 20},
		{"weightfs_fetched_bytes_total", []string{"origin", "s3:s3://b/p"}, 1},
		{"weightfs_fetch_errors_total", []string{"origin", "hf:acme/llm"}, 1},
		{"weightfs_cache_hits_total", []string{"tier", "memory"}, 2},
		{"weightfs_cache_hits_total", []string{"tier", "disk"}, 1},
		{"weightfs_cache_misses_total", nil, 1},
		{"weightfs_reader_wait_seconds_total", nil, 1},
		{"weightfs_reader_wait_seconds", nil, 1}, // histogram sum
		{"weightfs_read_duration_seconds", nil, 2.001},
		{"weightfs_read_errors_total", nil, 1},
		{"weightfs_fetch_retries_total", nil, 3},
		{"weightfs_verification_failures_total", nil, 1},
		{"weightfs_prefetch_bytes_cached", nil, 400},
		{"weightfs_prefetch_bytes_total", nil, 1000},
		{"weightfs_files_verified", nil, 1},
	}
	for _, tc := range cases {
		got, ok := value(fams, tc.name, tc.labels...)
		if !ok || got != tc.want {
			t.Errorf("%s%v = %v (present %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	if n := histogramCount(fams, "weightfs_reader_wait_seconds"); n != 2 {
		t.Errorf("reader wait histogram count %d, want 2", n)
	}
	if n := histogramCount(fams, "weightfs_read_duration_seconds"); n != 2 {
		t.Errorf("read duration histogram count %d, want 2", n)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("Go runtime metrics are missing")
	}
}
