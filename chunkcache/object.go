package chunkcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weightfs/weightfs/chunkcache/store"
	"github.com/weightfs/weightfs/fetch"
)

type state int

const (
	stateFilling   state = iota // some chunks missing
	stateVerifying              // all present, hashing
	stateVerified               // all present, checksum matched
	stateComplete               // all present, origin gave no checksum
	stateBad                    // failed verification twice: reads fail
)

func (s state) String() string {
	return [...]string{"filling", "verifying", "verified", "complete", "bad"}[s]
}

// ErrBadContent is returned by reads of a file whose bytes failed
// verification even after a refetch. The fs layer turns it into EIO.
var ErrBadContent = errors.New("content failed verification")

// Object is one file as the scheduler sees it: its chunks at rest (the
// store's), the fetches of them in flight, its readahead streams, and its
// verdict.
//
// Lock order: dataMu before mu before the store's own locks. dataMu is held
// (shared) while bytes move between the store and memory, and exclusively
// only to drop content that failed verification; neither lock is ever held
// across network I/O.
type Object struct {
	c       *Cache
	key     string
	origin  string
	file    fetch.File
	src     fetch.RangeReader
	nchunks int

	chunks store.Chunks // the bytes at rest and which chunks are complete

	dataMu sync.RWMutex

	mu        sync.Mutex
	inflight  map[int]*call    // GUARDED_BY(mu)
	gen       uint64           // GUARDED_BY(mu); bumped when content is dropped
	state     state            // GUARDED_BY(mu); change it with setStateLocked
	stateCh   chan struct{}    // GUARDED_BY(mu); closed and replaced on every state change
	heal      *healState       // GUARDED_BY(mu); set while healing a failed verification
	served    atomic.Bool      // a client read bytes not yet verified (set under mu, read without it)
	servedBad bool             // GUARDED_BY(mu); ... and the file then failed verification
	filling   bool             // GUARDED_BY(mu); a strict reader's fillAll is running
	failed    map[int]struct{} // GUARDED_BY(mu); chunks whose last fetch or store failed
	failures  int              // GUARDED_BY(mu); failed attempts since the last progress
	progress  time.Time        // GUARDED_BY(mu); when a chunk was last stored or a verdict reached
	lastErr   error            // GUARDED_BY(mu)
	diskErr   error            // GUARDED_BY(mu); set once when writes fail
	ra        readaheadState   // GUARDED_BY(mu)
	waiters   map[int]struct{} // GUARDED_BY(mu); chunks a reader is blocked on
	closed    bool             // GUARDED_BY(mu); the cache was closed
	onDrop    []func()         // GUARDED_BY(mu); told when content is dropped
}

func openObject(c *Cache, key, origin string, f fetch.File, src fetch.RangeReader) (*Object, error) {
	// The size comes from the origin: never size anything from it unchecked.
	if f.Size < 0 || f.Size > MaxFileSize {
		return nil, fmt.Errorf("%s %q: listed size %d is impossible (the limit is %d): refusing the file", origin, f.Path, f.Size, int64(MaxFileSize))
	}
	o := &Object{c: c, key: key, origin: origin, file: f, src: src, inflight: map[int]*call{}, waiters: map[int]struct{}{},
		failed: map[int]struct{}{}, stateCh: make(chan struct{}), progress: time.Now()}
	o.nchunks = int((f.Size + c.opts.ChunkSize - 1) / c.opts.ChunkSize)
	var err error
	if o.chunks, err = c.store.Open(key, f.Size); err != nil {
		return nil, err
	}
	if o.chunks.Count() == o.nchunks {
		if o.chunks.Verified() {
			o.setStateLocked(stateVerified)
		} else {
			o.setStateLocked(stateVerifying)
			c.verifier.queue(o)
		}
	}
	return o, nil
}

func (o *Object) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	o.dataMu.Lock() // wait for readers and the verifier to let go of the file
	o.chunks.Close()
	o.dataMu.Unlock()
}

// File is the manifest entry this object caches.
func (o *Object) File() fetch.File { return o.file }

// Origin names the source this object is read from.
func (o *Object) Origin() string { return o.origin }

// NumChunks is the number of chunks of the file.
func (o *Object) NumChunks() int { return o.nchunks }

func (o *Object) chunkBounds(idx int) (off, n int64) {
	off = int64(idx) * o.c.opts.ChunkSize
	return off, min(o.c.opts.ChunkSize, o.file.Size-off)
}

// fetch downloads chunk idx as parallel sub-ranges (cl.parts, see newCall),
// stores it, and wakes every waiter. It runs on its own deadline, detached
// from any reader, so a reader that gives up does not waste the work others
// may be waiting for.
func (o *Object) fetch(idx int, cl *call) {
	defer o.c.fetches.Done()
	// Detached from readers, but not from the cache: Close cancels it.
	ctx, cancel := context.WithTimeout(o.c.sched.ctx, o.c.opts.FetchTimeout)
	defer cancel()
	cOff, cLen := o.chunkBounds(idx)
	buf := o.c.bufs.Get(cLen)
	o.mu.Lock()
	cl.owned = buf
	o.mu.Unlock()
	defer o.unref(cl)
	start := time.Now()
	// A healing chunk's ranges are not served as they arrive: only once
	// every block of it is confirmed (heal.go). With a shared tier the
	// bytes may come from the fleet's store instead (tier.go).
	sf, fromOrigin, err := o.fill(ctx, idx, cl, cOff, buf)
	if err != nil {
		cl.err = fmt.Errorf("%s %q: fetching bytes %d-%d: %w", o.origin, o.file.Path, cOff, cOff+cLen-1, err)
		deferred := isDeferred(err)
		if !deferred {
			o.c.opts.Events.FetchFailed(o.origin, err)
		}
		o.mu.Lock()
		delete(o.inflight, idx)
		delete(o.waiters, idx)
		o.mu.Unlock()
		close(cl.done)
		close(cl.stored)
		if !deferred {
			o.noteFailure(idx, cl.err)
		}
		return
	}
	if fromOrigin {
		o.c.opts.Events.Fetched(o.origin, cLen, time.Since(start))
	}
	o.c.fetchedBytes.Add(cLen)
	// Wake the waiters before touching the disk: they are served from this
	// buffer, so a slow cache disk never sits on the read path. The call
	// stays in flight until the chunk is stored, so late readers join it
	// rather than fetching again.
	o.mu.Lock()
	if o.gen == cl.gen {
		cl.buf = buf // dropped while in flight: never serve it
	}
	_, demanded := o.waiters[idx]
	o.mu.Unlock()
	close(cl.done)
	// Written back beside the local write, not after it: the fleet reads
	// the chunk only once it is in the shared store. Both only read buf,
	// and the call stays in flight until both are done, so the buffer
	// cannot be recycled under them (the memory tier never changes a
	// buffer it kept).
	var publishing sync.WaitGroup
	if sf.req != nil {
		publishing.Go(func() { o.publish(sf) })
	}
	kept := o.store(idx, cl.gen, buf, demanded && o.memWorthy(idx))
	publishing.Wait()
	o.mu.Lock()
	delete(o.inflight, idx)
	delete(o.waiters, idx)
	cl.kept = kept
	o.mu.Unlock()
	close(cl.stored)
}

// unref drops one reference to cl's buffer and recycles the buffer when it
// was the last one and the memory tier did not take it. Once a call is out
// of inflight nobody new can take a reference.
func (o *Object) unref(cl *call) {
	o.mu.Lock()
	cl.refs--
	free := cl.refs == 0 && !cl.kept && cl.owned != nil
	buf := cl.owned
	if free {
		cl.owned = nil
	}
	o.mu.Unlock()
	if free {
		o.c.bufs.Put(buf)
	}
}

// memWorthy says whether a chunk a reader waited for goes to the memory
// tier. The first chunk of a file holds a safetensors header (read by
// every loader process and every rank) or a small file whole; other
// chunks are read once per process and re-read from the kernel's page
// cache, so keeping them would only churn memory. Without a page cache
// copy (O_DIRECT writes) every chunk a reader waited for is worth it.
func (o *Object) memWorthy(idx int) bool {
	return idx == 0 || o.nchunks <= 4 || o.chunks.Direct()
}

// store writes a fetched chunk to disk and marks it present. A failed
// write (full disk) is logged once; the bytes are still served from memory
// to the readers waiting for them.
//
// Only chunks a reader asked for enter the memory tier: prefetched chunks
// would flush it (a model is many times its size) and pin memory the GC
// then has to fight for; the page cache holds them anyway.
//
// It reports whether the memory tier kept buf.
func (o *Object) store(idx int, gen uint64, buf []byte, toMem bool) (kept bool) {
	o.dataMu.RLock()
	defer o.dataMu.RUnlock()
	o.mu.Lock()
	stale := o.gen != gen
	o.mu.Unlock()
	if stale || o.c.storeDisabled() != nil {
		return false
	}
	o.newHasher() // the store hashes buf in order as it puts it (verify.go)
	kept, err := o.chunks.Put(idx, buf, toMem)
	if err != nil {
		o.noteDiskError(err)
		o.noteFailure(idx, err)
		return false
	}
	o.mu.Lock()
	complete := false
	if o.gen == gen {
		o.progressLocked(idx)
		if o.chunks.Count() == o.nchunks && o.state == stateFilling {
			o.setStateLocked(stateVerifying)
			complete = true
		}
	}
	o.mu.Unlock()
	if complete {
		o.c.verifier.queue(o)
	}
	return kept
}

func (o *Object) noteDiskError(err error) {
	o.mu.Lock()
	first := o.diskErr == nil
	o.diskErr = err // the store's, naming the cache dir
	o.mu.Unlock()
	if first {
		o.c.log.Error("cannot store fetched bytes; serving from memory without caching", "file", o.file.Path, "err", err)
	}
}

// OnDrop registers fn to run whenever the object's content is dropped
// after failing verification, so layers above can forget copies of it (the
// kernel's page cache above all: bytes a reader saw before the verdict must
// not be served again from there).
func (o *Object) OnDrop(fn func()) {
	o.mu.Lock()
	o.onDrop = append(o.onDrop, fn)
	o.mu.Unlock()
}

// Present reports whether chunk idx is on disk.
func (o *Object) Present(idx int) bool {
	return o.chunks.Present(idx)
}
