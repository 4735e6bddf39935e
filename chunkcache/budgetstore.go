package chunkcache

import (
	"sync"
	"sync/atomic"

	"github.com/weightfs/weightfs/chunkcache/store"
)

// The budget's view of the store (budget.go has the policy): every
// object's chunks are counted as they are put, touched and evicted.

// budgetStore wraps the Dir so every object's chunks are counted.
type budgetStore struct {
	store.Store
	b *budget
}

// Open opens key's chunks and counts what they hold. An object found on
// disk at start stops being foreign: its stored chunks are counted as
// chunks now, and blocks no present chunk owns (a crash mid-put, an
// O_DIRECT reservation) are released.
func (s budgetStore) Open(key string, size int64) (store.Chunks, error) {
	b := s.b
	b.mu.Lock()
	if fo, ok := b.foreign[key]; ok {
		b.used -= fo.bytes
		delete(b.foreign, key)
	}
	b.opened[key]++
	only := b.opened[key] == 1
	b.mu.Unlock()
	ch, err := s.Store.Open(key, size)
	if err != nil {
		b.mu.Lock()
		b.opened[key]--
		b.mu.Unlock()
		return nil, err
	}
	f, ok := ch.(*store.File)
	if !ok {
		b.mu.Lock()
		b.opened[key]--
		b.mu.Unlock()
		return ch, nil // not a store that can evict: not counted
	}
	cs := s.b.c.opts.ChunkSize
	n := int((size + cs - 1) / cs)
	bc := &budgetChunks{File: f, b: b, key: key, size: size, cs: cs,
		stored: make([]bool, n), clock: make([]atomic.Uint64, n), holds: make([]atomic.Int32, n)}
	var bytes int64
	for i := 0; i < n; i++ {
		if f.Present(i) {
			bc.stored[i] = true
			bytes += bc.need(i)
		}
	}
	if only {
		if a, err := f.Allocated(); err == nil && a > bytes {
			if err := f.PunchAbsent(); err != nil {
				b.c.log.Debug("cache budget: cannot release the blocks of absent chunks", "key", key, "err", err)
			}
		}
	}
	b.mu.Lock()
	bc.bytes = bytes
	b.used += bytes
	b.mu.Unlock()
	return bc, nil
}

// budgetChunks is one object's chunks under the budget.
type budgetChunks struct {
	*store.File
	b    *budget
	key  string
	size int64
	cs   int64

	stored []bool          // GUARDED_BY(b.mu); the chunk's bytes are on disk
	bytes  int64           // GUARDED_BY(b.mu); counted for this object
	closed bool            // GUARDED_BY(b.mu)
	clock  []atomic.Uint64 // last access, by b.tick
	holds  []atomic.Int32  // readers holding the chunk; taken under the Object's mu
	pins   atomic.Int32    // passthrough opens; changed under the Object's mu
	markMu sync.Mutex      // orders MarkVerified against Evict
}

// MarkVerified records the verdict only if every chunk is still present:
// a verdict reached on bytes of which one was evicted meanwhile must not
// outlive a restart (see evictChunk).
func (bc *budgetChunks) MarkVerified() {
	bc.markMu.Lock()
	defer bc.markMu.Unlock()
	if bc.File.Count() == len(bc.stored) {
		bc.File.MarkVerified()
	}
}

// need is what chunk idx takes on disk.
func (bc *budgetChunks) need(idx int) int64 {
	off := int64(idx) * bc.cs
	n := min(bc.cs, bc.size-off)
	return (n + blockSize - 1) / blockSize * blockSize
}

func (bc *budgetChunks) touch(idx int) { bc.clock[idx].Store(bc.b.tick.Add(1)) }

// Put makes room for chunk idx first (see budget.admit); without room the
// chunk is not stored, and its readers are served from the fetch buffer.
func (bc *budgetChunks) Put(idx int, buf []byte, toMem bool) (bool, error) {
	if idx < 0 || idx >= len(bc.stored) {
		return bc.File.Put(idx, buf, toMem) // the store's error
	}
	b := bc.b
	res, ok := b.admit(bc, idx)
	if !ok {
		return false, nil
	}
	kept, err := bc.File.Put(idx, buf, toMem)
	b.mu.Lock()
	b.reserved -= res
	if err == nil && !bc.stored[idx] && !bc.closed {
		bc.stored[idx] = true
		need := bc.need(idx)
		bc.bytes += need
		b.used += need
	}
	b.mu.Unlock()
	if err == nil {
		bc.touch(idx)
	}
	return kept, err
}

// Punch zeroes the whole data file: nothing of it counts any more.
func (bc *budgetChunks) Punch() {
	bc.File.Punch()
	b := bc.b
	b.mu.Lock()
	clear(bc.stored)
	b.used -= bc.bytes
	bc.bytes = 0
	b.mu.Unlock()
}

// Close stops counting the object (a restart counts it again from disk).
func (bc *budgetChunks) Close() {
	bc.File.Close()
	b := bc.b
	b.mu.Lock()
	if !bc.closed {
		bc.closed = true
		b.used -= bc.bytes
		bc.bytes = 0
		b.opened[bc.key]--
		if b.opened[bc.key] <= 0 {
			delete(b.opened, bc.key)
		}
	}
	b.mu.Unlock()
}
