package control

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/weightfs/weightfs/chunkcache"
)

var _ chunkcache.Events = (*Metrics)(nil)

// Metrics is the daemon's Prometheus instrumentation, on its own registry
// (never the global one, so a library's metrics cannot leak in). It is the
// chunk cache's Events, and it also takes FUSE read latencies (ObserveRead)
// and fetch retries (Retried). All methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	fetchedBytes  *prometheus.CounterVec // {origin}
	fetchErrors   *prometheus.CounterVec // {origin}
	hits          *prometheus.CounterVec // {tier}
	misses        prometheus.Counter
	waitTotal     prometheus.Counter
	wait          prometheus.Histogram
	reads         prometheus.Histogram
	readErrors    prometheus.Counter
	retries       prometheus.Counter
	verifyFailure prometheus.Counter
	servedBad     prometheus.Counter

	shared *sharedCollector

	progressMu sync.Mutex
	progress   func() (cached, total int64, verified int, ok bool) // GUARDED_BY(progressMu)
}

// Latency buckets. Reader waits span a memory-speed join of a fetch in
// flight (~1ms) to a stalled origin hitting --read-timeout (90s); FUSE
// reads span a page-cache-warm memory hit (~50us) to the same timeout.
var (
	waitBuckets = prometheus.ExponentialBuckets(0.001, 4, 10)   // 1ms .. 262s
	readBuckets = prometheus.ExponentialBuckets(0.00005, 4, 12) // 50us .. 210s
)

// NewMetrics registers every weightfs metric, and the Go runtime and
// process collectors, on a fresh registry.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), shared: &sharedCollector{}}
	m.fetchedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weightfs_fetched_bytes_total",
		Help: "Bytes fetched from origins, by origin (kind:repo)."}, []string{"origin"})
	m.fetchErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weightfs_fetch_errors_total",
		Help: "Chunk fetches that failed after their retries, by origin."}, []string{"origin"})
	m.hits = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weightfs_cache_hits_total",
		Help: "Chunk reads served from the cache, by tier (memory or disk)."}, []string{"tier"})
	m.misses = prometheus.NewCounter(prometheus.CounterOpts{Name: "weightfs_cache_misses_total",
		Help: "Chunk reads that had to wait for the network."})
	m.waitTotal = prometheus.NewCounter(prometheus.CounterOpts{Name: "weightfs_reader_wait_seconds_total",
		Help: "Total time readers spent waiting on the network."})
	m.wait = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "weightfs_reader_wait_seconds",
		Help: "Time one reader waited on the network for one chunk.", Buckets: waitBuckets})
	m.reads = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "weightfs_read_duration_seconds",
		Help: "Latency of FUSE reads the daemon served (passthrough reads bypass it).", Buckets: readBuckets})
	m.readErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "weightfs_read_errors_total",
		Help: "FUSE reads that failed (EIO to the reader)."})
	m.retries = prometheus.NewCounter(prometheus.CounterOpts{Name: "weightfs_fetch_retries_total",
		Help: "Ranged GET attempts that failed and were retried."})
	m.verifyFailure = prometheus.NewCounter(prometheus.CounterOpts{Name: "weightfs_verification_failures_total",
		Help: "Complete files whose checksum did not match (their chunks are fetched again)."})
	m.servedBad = prometheus.NewCounter(prometheus.CounterOpts{Name: "weightfs_files_served_bad_total",
		Help: "Files some of whose bytes reached readers before the file failed verification; processes that read them must reload."})
	m.hits.WithLabelValues("memory")
	m.hits.WithLabelValues("disk")
	m.reg.MustRegister(m.fetchedBytes, m.fetchErrors, m.hits, m.misses, m.waitTotal, m.wait, m.reads,
		m.readErrors, m.retries, m.verifyFailure, m.servedBad, progressCollector{m}, m.shared,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the metrics live, to serve or to gather in tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Fetched implements chunkcache.Events.
func (m *Metrics) Fetched(origin string, bytes int64, _ time.Duration) {
	m.fetchedBytes.WithLabelValues(origin).Add(float64(bytes))
}

// Hit implements chunkcache.Events.
func (m *Metrics) Hit(tier string) { m.hits.WithLabelValues(tier).Inc() }

// Miss implements chunkcache.Events.
func (m *Metrics) Miss() { m.misses.Inc() }

// Waited implements chunkcache.Events.
func (m *Metrics) Waited(d time.Duration) {
	m.waitTotal.Add(d.Seconds())
	m.wait.Observe(d.Seconds())
}

// FetchFailed implements chunkcache.Events.
func (m *Metrics) FetchFailed(origin string, _ error) { m.fetchErrors.WithLabelValues(origin).Inc() }

// Verified implements chunkcache.Events.
func (m *Metrics) Verified(_ string, ok bool) {
	if !ok {
		m.verifyFailure.Inc()
	}
}

// ServedBad implements chunkcache.Events: the cache reports each such file
// once per failed verification.
func (m *Metrics) ServedBad(string) { m.servedBad.Inc() }

// ObserveRead records one FUSE read (fs.Options.OnRead).
func (m *Metrics) ObserveRead(d time.Duration, err error) {
	m.reads.Observe(d.Seconds())
	if err != nil {
		m.readErrors.Inc()
	}
}

// Retried records one retried attempt (fetch.RetryPolicy.OnRetry).
func (m *Metrics) Retried(error) { m.retries.Inc() }

func (m *Metrics) setProgress(f func() (cached, total int64, verified int, ok bool)) {
	m.progressMu.Lock()
	m.progress = f
	m.progressMu.Unlock()
}

// progressCollector reports the cache's fill at scrape time, so the gauges
// are never stale; they are absent until the mount is ready.
type progressCollector struct{ m *Metrics }

var (
	cachedDesc = prometheus.NewDesc("weightfs_prefetch_bytes_cached",
		"Bytes of the mounted files present in the cache.", nil, nil)
	totalDesc = prometheus.NewDesc("weightfs_prefetch_bytes_total",
		"Bytes of every file of the mount.", nil, nil)
	verifiedDesc = prometheus.NewDesc("weightfs_files_verified",
		"Files complete in the cache whose checksum matched.", nil, nil)
)

func (p progressCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cachedDesc
	ch <- totalDesc
	ch <- verifiedDesc
}

func (p progressCollector) Collect(ch chan<- prometheus.Metric) {
	p.m.progressMu.Lock()
	f := p.m.progress
	p.m.progressMu.Unlock()
	if f == nil {
		return
	}
	cached, total, verified, ok := f()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(cachedDesc, prometheus.GaugeValue, float64(cached))
	ch <- prometheus.MustNewConstMetric(totalDesc, prometheus.GaugeValue, float64(total))
	ch <- prometheus.MustNewConstMetric(verifiedDesc, prometheus.GaugeValue, float64(verified))
}
