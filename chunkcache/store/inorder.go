package store

import (
	"hash"
	"sync"
)

// InOrder is implemented by Chunks that hash a file in order as its chunks
// are put, so the scheduler's verifier need not read back what the fetch
// buffers just held: a whole-file hash is a second pass over every byte,
// and on a machine whose loader wants the CPU (and whose cache file pages
// are dropped, see dropper.go) a costly one. It is probed for; a store
// without it is verified by reading every byte back.
type InOrder interface {
	// HashInOrder makes Put hash chunks in file order with a hash from
	// newHash: a chunk put right after those before it is hashed from the
	// caller's buffer before Put returns; a few that arrived early are read
	// back then (from the page cache: they were just written). Calls after
	// the first are no-ops until the next Drop.
	HashInOrder(newHash func() hash.Hash)
	// TakeHash hands the hash over: h holds every byte before off (h is
	// nil, off 0, if nothing was hashed), and Puts stop hashing until the
	// next Drop. The caller hashes the rest from ReadStored.
	TakeHash() (h hash.Hash, off int64)
}

var _ InOrder = (*File)(nil)

// maxCatchUp bounds how many early chunks one Put reads back to move the
// cursor on: a chunk arriving after a long run of later ones (a reader
// jumped ahead) must not make its fetch read half the file. What is left
// is the verifier's, which reads it at its own pace.
const maxCatchUp = 4

// hashCursor is the state of HashInOrder. Whoever sets busy owns h and
// next until it clears busy; a Put finding it busy hands the owner its
// share of reading back (credit) instead, so the owner looks again before
// it lets go, and Puts that coincide move the cursor on as far as Puts one
// after the other would.
type hashCursor struct {
	mu      sync.Mutex
	newHash func() hash.Hash // GUARDED_BY(mu); nil: not hashing
	h       hash.Hash        // owned by whoever set busy
	next    int              // owned by whoever set busy; chunks hashed
	busy    bool             // GUARDED_BY(mu)
	credit  int              // GUARDED_BY(mu); chunks the owner may still read back for Puts that found it busy
	taken   bool             // GUARDED_BY(mu); TakeHash was called
	idle    sync.Cond        // on mu; broadcast when busy is cleared
}

// HashInOrder implements InOrder.
func (f *File) HashInOrder(newHash func() hash.Hash) {
	c := &f.cur
	c.mu.Lock()
	if c.newHash == nil && !c.taken {
		c.newHash = newHash
	}
	c.mu.Unlock()
}

// TakeHash implements InOrder. It waits for a Put that is hashing.
func (f *File) TakeHash() (hash.Hash, int64) {
	c := &f.cur
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.busy {
		c.idle.Wait()
	}
	c.taken = true
	h, next := c.h, c.next
	c.h, c.next = nil, 0
	if h == nil {
		return nil, 0
	}
	return h, min(int64(next)*f.d.opts.ChunkSize, f.size)
}

// resetCursor forgets the hash; Drop calls it (no Put runs then).
func (f *File) resetCursor() {
	c := &f.cur
	c.mu.Lock()
	c.newHash, c.h, c.next, c.credit, c.taken = nil, nil, 0, 0, false
	c.mu.Unlock()
}

// advance moves the cursor after chunk idx was put from buf.
func (f *File) advance(idx int, buf []byte) {
	c := &f.cur
	c.mu.Lock()
	if c.newHash == nil || c.taken {
		c.mu.Unlock()
		return
	}
	if c.busy {
		c.credit += 1 + maxCatchUp
		c.mu.Unlock()
		return
	}
	c.busy = true
	if c.h == nil {
		c.h = c.newHash()
	}
	c.mu.Unlock()

	budget := maxCatchUp
	for {
		if buf != nil && idx == c.next {
			c.h.Write(buf)
			c.next++
		}
		buf = nil
		for budget > 0 && c.next < f.nchunks && f.Present(c.next) {
			if !f.hashStored(c.h, c.next) {
				// Cannot read it back, and the hash may hold part of it:
				// stop here, and leave the whole file to the verifier.
				c.mu.Lock()
				c.h, c.next, c.taken = nil, 0, true
				c.mu.Unlock()
				budget = 0
				break
			}
			c.next++
			budget--
		}
		c.mu.Lock()
		if c.credit > 0 && !c.taken {
			budget += c.credit
			c.credit = 0
			c.mu.Unlock()
			continue
		}
		c.credit = 0
		c.busy = false
		c.idle.Broadcast()
		c.mu.Unlock()
		return
	}
}

// hashStored feeds present chunk idx, read back from the data file, to h.
func (f *File) hashStored(h hash.Hash, idx int) bool {
	off, n := f.bounds(idx)
	buf := f.d.readBufs.Get(int64(f.d.readBufs.Size()))
	defer f.d.readBufs.Put(buf)
	step := int64(len(buf)) / directAlign * directAlign
	for done := int64(0); done < n; {
		b := buf[:min(step, n-done)]
		if k, _ := f.readData(b, off+done); k < len(b) {
			return false
		}
		h.Write(b)
		done += int64(len(b))
	}
	return true
}
