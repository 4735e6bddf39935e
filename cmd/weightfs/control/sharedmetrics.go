package control

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weightfs/weightfs/chunkcache/shared"
)

// sharedCollector reports the shared cache's counters at scrape time; they
// are absent when the mount has no shared cache.
type sharedCollector struct {
	mu sync.Mutex
	f  func() shared.Status // GUARDED_BY(mu)
}

var (
	sharedBytesDesc = prometheus.NewDesc("weightfs_shared_cache_bytes_total",
		"Chunk bytes by where they came from when the local cache missed: shared (the fleet's shared cache) or origin; written_back is what this node added to the shared cache.",
		[]string{"source"}, nil)
	sharedLeasesDesc = prometheus.NewDesc("weightfs_shared_cache_leases_total",
		"Leases on chunks of the shared cache: won (this node fetched for the fleet), waited (another node was fetching), taken_over (a lapsed lease of a crashed node).",
		[]string{"outcome"}, nil)
	sharedDeferredDesc = prometheus.NewDesc("weightfs_shared_cache_prefetch_deferred_total",
		"Prefetched chunks left to the node already fetching them.", nil, nil)
	sharedCorruptDesc = prometheus.NewDesc("weightfs_shared_cache_corrupt_chunks_total",
		"Shared chunks that failed their digest (deleted, fetched from the origin instead).", nil, nil)
	sharedUpDesc = prometheus.NewDesc("weightfs_shared_cache_up",
		"1 while the shared cache answers, 0 while reads go to the origin instead.", nil, nil)
)

// SetShared makes the metrics report the shared cache (f is Tier.Status).
func (m *Metrics) SetShared(f func() shared.Status) {
	m.shared.mu.Lock()
	m.shared.f = f
	m.shared.mu.Unlock()
}

func (s *sharedCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sharedBytesDesc, sharedLeasesDesc, sharedDeferredDesc, sharedCorruptDesc, sharedUpDesc} {
		ch <- d
	}
}

func (s *sharedCollector) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	f := s.f
	s.mu.Unlock()
	if f == nil {
		return
	}
	st := f()
	t := st.Total
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(sharedBytesDesc, t.BytesShared, "shared")
	counter(sharedBytesDesc, t.BytesOrigin, "origin")
	counter(sharedBytesDesc, t.BytesPublished, "written_back")
	counter(sharedLeasesDesc, t.LeasesWon, "won")
	counter(sharedLeasesDesc, t.LeasesWaited, "waited")
	counter(sharedLeasesDesc, t.LeasesTakenOver, "taken_over")
	counter(sharedDeferredDesc, t.Deferred)
	counter(sharedCorruptDesc, t.Corrupt)
	up := 0.0
	if st.State != "failing" {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(sharedUpDesc, prometheus.GaugeValue, up)
}
