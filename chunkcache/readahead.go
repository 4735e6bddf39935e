package chunkcache

// readaheadState tracks one object's access pattern (filled in by the
// readahead logic).
type readaheadState struct {
	next int64 // offset just past the last read
}

func (o *Object) noteAccess(off, n int64) {
	o.mu.Lock()
	o.ra.next = off + n
	o.mu.Unlock()
}
