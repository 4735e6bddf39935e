package chunkcache

// Readahead follows each file's readers. A file may be read by several
// streams at once (transformers' 4 threads over one mmap, or two loaders),
// and mmap page faults arrive slightly out of order, so each object keeps a
// few independent streams and matches an access to the nearest one within a
// slack, instead of demanding exact sequential offsets.

const maxStreams = 8

// readaheadState tracks one object's read streams. GUARDED_BY(Object.mu)
type readaheadState struct {
	streams [maxStreams]stream
	tick    uint64
}

type stream struct {
	last   int64  // end of the stream's latest access
	window int64  // bytes to keep fetched ahead of last
	queued int64  // chunks up to this offset were queued
	used   uint64 // tick of the latest access, for replacement
}

// noteAccess records a read of [off, off+n) and queues the chunks the
// stream will want next. The window doubles while the stream keeps going
// forward, from ReadaheadMin towards ReadaheadMax, and restarts small on a
// jump, so random access does not drag whole files in.
func (o *Object) noteAccess(off, n int64) {
	s := o.c.sched
	if s == nil || o.c.opts.ReadaheadMax <= 0 || o.c.storeDisabled() != nil {
		return // nothing to read ahead into when nothing is stored
	}
	minW, maxW := o.c.opts.ReadaheadMin, o.c.opts.ReadaheadMax
	end := off + n
	o.mu.Lock()
	ra := &o.ra
	ra.tick++
	best := -1
	for i := range ra.streams {
		st := &ra.streams[i]
		if st.used == 0 {
			continue
		}
		slack := max(st.window, 2*o.c.opts.ChunkSize)
		if off >= st.last-slack && off <= st.last+slack {
			best = i
			break
		}
	}
	if best < 0 {
		// A new stream: replace the least recently used one.
		best = 0
		for i := range ra.streams {
			if ra.streams[i].used < ra.streams[best].used {
				best = i
			}
		}
		ra.streams[best] = stream{last: end, window: minW, queued: end}
	} else if st := &ra.streams[best]; end > st.last {
		st.last = end
		st.window = min(st.window*2, maxW)
	}
	st := &ra.streams[best]
	st.used = ra.tick
	target := min(st.last+st.window, o.file.Size)
	from := max(st.queued, end)
	var todo []int
	if target > from {
		cs := o.c.opts.ChunkSize
		for idx := int(from / cs); idx <= int((target-1)/cs); idx++ {
			if !o.chunks.Present(idx) && o.inflight[idx] == nil {
				todo = append(todo, idx)
			}
		}
		st.queued = target
	}
	o.mu.Unlock()
	for _, idx := range todo {
		s.urgent(job{o: o, idx: idx, patient: true})
	}
	if len(todo) > 0 {
		s.hint(o, todo[len(todo)-1]+1)
	}
}
