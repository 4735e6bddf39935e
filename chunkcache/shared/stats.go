package shared

// Stats counts what a tier did for one volume (or all of them).
type Stats struct {
	BytesShared     int64 `json:"bytes_from_shared"`  // chunks read from the shared store
	BytesOrigin     int64 `json:"bytes_from_origin"`  // chunks fetched from the origin instead
	BytesPublished  int64 `json:"bytes_written_back"` // chunks written to the shared store
	LeasesWon       int64 `json:"leases_won"`         // this node fetched the chunk for the fleet
	LeasesWaited    int64 `json:"leases_waited"`      // another node was fetching it: waited for it to land
	LeasesTakenOver int64 `json:"leases_taken_over"`  // a lease had lapsed (crashed holder): taken over
	LeasesLost      int64 `json:"leases_lost"`        // won on a weak store, then lost to a racing node: its fetch stopped
	Deferred        int64 `json:"prefetch_deferred"`  // prefetch skipped a chunk another node held
	Corrupt         int64 `json:"corrupt_chunks"`     // shared chunks that failed their digest (deleted)
}

func (s *Stats) add(o Stats) {
	s.BytesShared += o.BytesShared
	s.BytesOrigin += o.BytesOrigin
	s.BytesPublished += o.BytesPublished
	s.LeasesWon += o.LeasesWon
	s.LeasesWaited += o.LeasesWaited
	s.LeasesTakenOver += o.LeasesTakenOver
	s.LeasesLost += o.LeasesLost
	s.Deferred += o.Deferred
	s.Corrupt += o.Corrupt
}

func (t *Tier) count(vol string, fn func(*Stats)) {
	t.mu.Lock()
	s := t.stats[vol]
	if s == nil {
		s = &Stats{}
		t.stats[vol] = s
	}
	fn(s)
	t.mu.Unlock()
}

// Status is a snapshot for /status and metrics.
type Status struct {
	Store   string           `json:"store"`
	State   string           `json:"state"` // ok, failing (reads go to the origin), no-writes (full or read-only)
	Error   string           `json:"error,omitempty"`
	Total   Stats            `json:"total"`
	Volumes map[string]Stats `json:"volumes"`
}

// Status reports the tier's condition and counters.
func (t *Tier) Status() Status {
	st := Status{Store: t.blobs.String(), Volumes: map[string]Stats{}}
	st.State, st.Error = t.h.state()
	t.mu.Lock()
	defer t.mu.Unlock()
	for v, s := range t.stats {
		st.Total.add(*s)
		if v != "" {
			st.Volumes[v] = *s
		}
	}
	return st
}
