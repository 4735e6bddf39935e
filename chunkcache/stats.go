package chunkcache

import "time"

// ObjectStats is a snapshot of one object for /status and `wait`.
type ObjectStats struct {
	Path        string `json:"path"`
	Size        int64  `json:"size"`
	CachedBytes int64  `json:"cached_bytes"`
	State       string `json:"state"` // filling | healing | verifying | verified | complete | bad
	Verified    bool   `json:"verified"`
	Error       string `json:"error,omitempty"`
	// ServedBad: bytes of this file reached readers before the file failed
	// verification; processes that loaded it then must reload it.
	ServedBad bool `json:"served_bad,omitempty"`
	// Failures counts failed attempts (fetches, stores, verifications)
	// since the file last made progress; LastProgress is when it last did
	// (a chunk stored, a verdict reached). `wait` uses both to tell a file
	// that is stuck from one that is slow.
	Failures     int       `json:"failures,omitempty"`
	LastProgress time.Time `json:"last_progress"`
}

// Stats returns a snapshot of the object.
func (o *Object) Stats() ObjectStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	var cached int64
	for i := 0; i < o.nchunks; i++ {
		if o.chunks.Present(i) {
			_, n := o.chunkBounds(i)
			cached += n
		}
	}
	s := ObjectStats{Path: o.file.Path, Size: o.file.Size, CachedBytes: cached, State: o.state.String(), Verified: o.state == stateVerified,
		ServedBad: o.servedBad, Failures: o.failures, LastProgress: o.progress}
	if o.heal != nil && o.state == stateFilling {
		s.State = "healing"
	}
	done := o.state == stateVerified || o.state == stateComplete
	switch {
	case o.lastErr != nil:
		s.Error = o.lastErr.Error()
	case o.diskErr != nil:
		s.Error = o.diskErr.Error()
	case !done && o.c.storeDisabled() != nil:
		s.Error = o.c.storeDisabled().Error()
	}
	return s
}

// Done reports whether every byte is present and checked (or uncheckable).
func (o *Object) Done() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.state == stateVerified || o.state == stateComplete
}

// Failed reports whether the object failed verification for good.
func (o *Object) Failed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.state == stateBad
}

// BackingPath returns the path of the complete, verified data file, for
// FUSE passthrough; ok is false until the object is Done.
func (o *Object) BackingPath() (string, bool) {
	if !o.Done() {
		return "", false
	}
	return o.chunks.Path(), true
}
