package control

import (
	"encoding/json"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/weightfs/weightfs/chunkcache"
	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/fetch/config"
)

// Model is what the control plane reports on: the mounted volumes, each
// with the cache object of every file it lists.
type Model struct {
	Volumes  []Volume
	Prefetch bool // background prefetch is on (else only reads fill the cache)
	// Shared reports the fleet's shared cache; nil when there is none.
	Shared func() shared.Status
	// Usage reports the local cache's bytes and its --cache-size budget
	// (0, 0 when unbounded).
	Usage func() (used, limit int64)
}

// Volume is one mounted model_cache entry.
type Volume struct {
	Folder, Repo, Kind, Revision, Commit string
	Origin                               string   // the cache's name for the source (shared cache stats are by it)
	Files                                []Stater // in listing order
}

// Stater is a file's cache state; *chunkcache.Object is one.
type Stater interface {
	Stats() chunkcache.ObjectStats
}

// Status is the JSON body of /status.
type Status struct {
	Ready         bool           `json:"ready"` // the listing is served
	Version       string         `json:"version,omitempty"`
	UptimeSeconds float64        `json:"uptime_seconds"`
	Prefetch      PrefetchStatus `json:"prefetch"`
	Totals        Summary        `json:"totals"`
	Volumes       []VolumeStatus `json:"volumes"`
	// SharedCache is the fleet's shared cache: its state and what it
	// served, over all volumes (each volume's share is in its own entry).
	SharedCache *shared.Status `json:"shared_cache,omitempty"`
	// CacheBudget is --cache-size and what the local cache holds of it.
	CacheBudget *Budget `json:"cache_budget,omitempty"`
	// Now is the daemon's clock when it answered, against which the files'
	// last_progress times are read (a client's clock may differ).
	Now time.Time `json:"now"`
}

// PrefetchStatus is background streaming as a whole.
type PrefetchStatus struct {
	Enabled  bool    `json:"enabled"`
	Complete bool    `json:"complete"` // every file of every volume is cached and verified
	Rate     float64 `json:"rate"`     // bytes/s cached, averaged over the last ~10s
	// ETASeconds is the time left at Rate; null when unknown (nothing is
	// moving), 0 when complete.
	ETASeconds *float64 `json:"eta_seconds"`
}

// Summary counts files and bytes.
type Summary struct {
	Files          int     `json:"files"`
	TotalBytes     int64   `json:"total_bytes"`
	CachedBytes    int64   `json:"cached_bytes"`
	DoneFiles      int     `json:"done_files"`       // cached and verified, or cached with no checksum to verify
	VerifiedFiles  int     `json:"verified_files"`   // cached and checksum matched
	FailedFiles    int     `json:"failed_files"`     // failed verification for good: reads get EIO
	ServedBadFiles int     `json:"served_bad_files"` // bytes reached readers before the file failed verification: they must reload
	Percent        float64 `json:"percent"`          // of bytes cached, one decimal
}

// VolumeStatus is one volume with its files.
type VolumeStatus struct {
	Folder   string `json:"folder"`
	Repo     string `json:"repo"`
	Kind     string `json:"kind"`
	Revision string `json:"revision"`
	Commit   string `json:"commit,omitempty"`
	Summary
	Rate       float64                  `json:"rate"`        // bytes/s, as PrefetchStatus.Rate
	ETASeconds *float64                 `json:"eta_seconds"` // as PrefetchStatus.ETASeconds
	FileList   []chunkcache.ObjectStats `json:"file_list"`
	// Shared is this volume's traffic through the shared cache, if any.
	Shared *shared.Stats `json:"shared_cache,omitempty"`
}

// Complete reports whether every file is cached and verified.
func (s Summary) Complete() bool { return s.DoneFiles == s.Files }

func (s *Summary) add(st chunkcache.ObjectStats) {
	s.Files++
	s.TotalBytes += st.Size
	s.CachedBytes += st.CachedBytes
	if st.State == "verified" || st.State == "complete" {
		s.DoneFiles++
	}
	if st.Verified {
		s.VerifiedFiles++
	}
	if st.State == "bad" {
		s.FailedFiles++
	}
	if st.ServedBad {
		s.ServedBadFiles++
	}
}

func (s *Summary) finish() {
	s.Percent = percent(s.CachedBytes, s.TotalBytes)
}

func percent(part, whole int64) float64 {
	if whole <= 0 {
		return 100
	}
	return math.Round(float64(part)*1000/float64(whole)) / 10
}

// Budget is the local cache's LRU budget.
type Budget struct {
	UsedBytes  int64 `json:"used_bytes"`
	LimitBytes int64 `json:"limit_bytes"`
}

// Snapshot builds the current status.
func (s *Server) Snapshot() Status {
	now := s.opts.Now()
	st := Status{Ready: s.ready.Load(), Version: s.opts.Version, UptimeSeconds: now.Sub(s.started).Seconds(), Now: now, Volumes: []VolumeStatus{}}
	s.mu.Lock()
	m := s.model
	s.mu.Unlock()
	if m == nil {
		return st
	}
	rates := s.rates.rates()
	var sh *shared.Status
	if m.Shared != nil {
		ss := m.Shared()
		ss.Error = config.Redact(ss.Error, s.opts.Secrets...)
		sh = &ss
		st.SharedCache = sh
	}
	if m.Usage != nil {
		if used, limit := m.Usage(); limit > 0 {
			st.CacheBudget = &Budget{UsedBytes: used, LimitBytes: limit}
		}
	}
	for i, v := range m.Volumes {
		vs := VolumeStatus{Folder: v.Folder, Repo: v.Repo, Kind: v.Kind, Revision: v.Revision, Commit: v.Commit,
			FileList: make([]chunkcache.ObjectStats, 0, len(v.Files))}
		for _, f := range v.Files {
			fs := f.Stats()
			if fs.Error != "" {
				fs.Error = config.Redact(fs.Error, s.opts.Secrets...)
			}
			vs.add(fs)
			vs.FileList = append(vs.FileList, fs)
		}
		vs.finish()
		if sh != nil {
			vst := sh.Volumes[v.Origin]
			vs.Shared = &vst
		}
		if i < len(rates.volumes) {
			vs.Rate = rates.volumes[i]
		}
		vs.ETASeconds = eta(vs.Summary, vs.Rate)
		st.Totals.Files += vs.Files
		st.Totals.TotalBytes += vs.TotalBytes
		st.Totals.CachedBytes += vs.CachedBytes
		st.Totals.DoneFiles += vs.DoneFiles
		st.Totals.VerifiedFiles += vs.VerifiedFiles
		st.Totals.FailedFiles += vs.FailedFiles
		st.Totals.ServedBadFiles += vs.ServedBadFiles
		st.Volumes = append(st.Volumes, vs)
	}
	st.Totals.finish()
	st.Prefetch = PrefetchStatus{Enabled: m.Prefetch, Complete: st.Totals.Complete(), Rate: rates.total}
	st.Prefetch.ETASeconds = eta(st.Totals, rates.total)
	return st
}

// eta is the seconds left at rate: 0 when complete, nil when unknown.
func eta(s Summary, rate float64) *float64 {
	var left float64
	if s.Complete() {
		return &left
	}
	if rate <= 0 {
		return nil
	}
	left = math.Round(float64(max(s.TotalBytes-s.CachedBytes, 0))/rate*10) / 10
	return &left
}

func (s *Server) serveStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	s.sample() // see sampleLoop
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(s.Snapshot())
}

// sample records the cached bytes of every volume, for the rates, and
// reports whether every file is settled (verified, complete or bad).
func (s *Server) sample() (settled bool) {
	s.mu.Lock()
	m := s.model
	s.mu.Unlock()
	if m == nil {
		return false
	}
	vols := make([]int64, len(m.Volumes))
	var total int64
	settled = true
	for i, v := range m.Volumes {
		for _, f := range v.Files {
			st := f.Stats()
			vols[i] += st.CachedBytes
			settled = settled && (st.State == "verified" || st.State == "complete" || st.State == "bad")
		}
		total += vols[i]
	}
	s.rates.add(s.opts.Now(), total, vols)
	return settled
}

// progressTotals feeds the prefetch gauges of /metrics.
func (s *Server) progressTotals() (cached, total int64, verified int, ok bool) {
	s.mu.Lock()
	m := s.model
	s.mu.Unlock()
	if m == nil {
		return 0, 0, 0, false
	}
	for _, v := range m.Volumes {
		for _, f := range v.Files {
			st := f.Stats()
			cached += st.CachedBytes
			total += st.Size
			if st.Verified {
				verified++
			}
		}
	}
	return cached, total, verified, true
}

// rateTracker keeps the samples of the last window and derives bytes/s.
type rateTracker struct {
	window time.Duration

	mu      sync.Mutex
	samples []rateSample // GUARDED_BY(mu); oldest first
}

type rateSample struct {
	at      time.Time
	total   int64
	volumes []int64
}

type rates struct {
	total   float64
	volumes []float64
}

func newRateTracker(window time.Duration) *rateTracker { return &rateTracker{window: window} }

func (r *rateTracker) add(at time.Time, total int64, volumes []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, rateSample{at: at, total: total, volumes: volumes})
	// Keep one sample at or beyond the window's start, so the rate spans
	// the whole window once there is that much history.
	for len(r.samples) > 2 && at.Sub(r.samples[1].at) >= r.window {
		r.samples = r.samples[1:]
	}
}

// rates is the growth between the oldest and newest samples; a drop
// (content dropped after a failed verification) counts as zero.
func (r *rateTracker) rates() rates {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) < 2 {
		return rates{}
	}
	a, b := r.samples[0], r.samples[len(r.samples)-1]
	dt := b.at.Sub(a.at).Seconds()
	if dt <= 0 {
		return rates{}
	}
	per := func(x, y int64) float64 { return math.Round(max(float64(y-x), 0) / dt) }
	out := rates{total: per(a.total, b.total), volumes: make([]float64, len(b.volumes))}
	for i := range b.volumes {
		if i < len(a.volumes) {
			out.volumes[i] = per(a.volumes[i], b.volumes[i])
		}
	}
	return out
}
