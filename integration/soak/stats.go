package soak

import (
	"encoding/json"
	"slices"
	"sync"
	"time"
)

// LoadStats counts what one kind of reader saw in one mode. It is filled by
// many goroutines (merge under a lock) and travels as JSON from the mmap
// loader processes.
type LoadStats struct {
	Ops        int64 `json:"ops"`         // preads, or tensors touched
	Bytes      int64 `json:"bytes"`       // bytes read and compared
	WrongOps   int64 `json:"wrong_ops"`   // ops that returned at least one wrong byte
	WrongBytes int64 `json:"wrong_bytes"` // bytes that differ from the origin
	EIO        int64 `json:"eio"`         // EIO from pread, SIGBUS from a page fault
	Other      int64 `json:"other"`       // any other error (short read, ENOTCONN, open failure)
	// LastError is one of the errors behind Other, to say what broke.
	LastError string `json:"last_error,omitempty"`
	// WrongFiles names the files a wrong byte came from (relative paths).
	WrongFiles []string `json:"wrong_files,omitempty"`
	// LatNs is every op's latency in nanoseconds (unsorted until finish).
	LatNs []int64 `json:"lat_ns"`
}

// add merges o into s.
func (s *LoadStats) add(o *LoadStats) {
	s.Ops += o.Ops
	s.Bytes += o.Bytes
	s.WrongOps += o.WrongOps
	s.WrongBytes += o.WrongBytes
	s.EIO += o.EIO
	s.Other += o.Other
	if o.LastError != "" {
		s.LastError = o.LastError
	}
	for _, f := range o.WrongFiles {
		s.noteWrong(f)
	}
	s.LatNs = append(s.LatNs, o.LatNs...)
}

func (s *LoadStats) noteWrong(rel string) {
	if !slices.Contains(s.WrongFiles, rel) {
		s.WrongFiles = append(s.WrongFiles, rel)
	}
}

// Quantile is the q-quantile (0..1) of the latencies, by nearest rank; 0
// with no ops.
func (s *LoadStats) Quantile(q float64) time.Duration {
	if len(s.LatNs) == 0 {
		return 0
	}
	if !slices.IsSorted(s.LatNs) {
		slices.Sort(s.LatNs)
	}
	i := int(q*float64(len(s.LatNs))+0.5) - 1
	i = min(max(i, 0), len(s.LatNs)-1)
	return time.Duration(s.LatNs[i])
}

// collector is LoadStats shared by goroutines: each keeps its own and merges
// it once at the end, so the hot loop takes no lock.
type collector struct {
	mu  sync.Mutex
	all LoadStats // GUARDED_BY(mu)
}

func (c *collector) merge(s *LoadStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all.add(s)
}

func (c *collector) result() LoadStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.all
}

// encodeStats and decodeStats are the loader processes' wire format.
func encodeStats(s *LoadStats) ([]byte, error) { return json.Marshal(s) }

func decodeStats(b []byte) (LoadStats, error) {
	var s LoadStats
	err := json.Unmarshal(b, &s)
	return s, err
}

// diffBytes counts the positions where got and want differ.
func diffBytes(got, want []byte) int64 {
	var n int64
	for i := range got {
		if got[i] != want[i] {
			n++
		}
	}
	return n
}
