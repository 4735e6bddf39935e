package chunkcache

import (
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weightfs/weightfs/chunkcache/store"
)

// The local budget (Options.CacheSize, --cache-size): the bytes of the
// cache's data files are kept under it by evicting the least recently used
// chunks. Eviction is driven by Puts: a Put that would go over the budget
// first evicts until its chunk fits, so an idle daemon does nothing, and
// nothing polls. Without room to make (every stored chunk is in use) the
// chunk is served to its readers from memory and not stored.
//
// What is never evicted: a chunk being read (a hold, taken where a reader
// finds the chunk present and released once its bytes are out, a splice to
// the kernel included), a chunk whose fetch is in flight, a file open with
// passthrough (Object.Pin: the kernel reads its cache file directly), a
// file being healed (its bytes are being compared), a file a strict reader
// is filling (it needs all of it). The chunks of a file being verified go
// only once no other chunk can (its verification is then given up, see
// evictChunk), and a file's first chunk (a safetensors header, or a small
// file whole, read by every loader) only after those.
//
// Recency is an access clock per chunk: one atomic store per read of a
// present chunk, and the stores of fetched chunks. The chunks on disk from
// before a restart are older than any touched since, and objects in the
// cache dir nobody opened yet (other models) are evicted first, whole.
//
// Accounting: a chunk counts from its Put until it is evicted or its file
// punched, rounded up to 4 KiB blocks; concurrent Puts reserve their bytes
// first, so the bytes on disk exceed the budget by no more than the
// filesystem's rounding. Evicting a chunk of a verified file makes the file
// incomplete: it is back to filling, its verified mark is gone, and it is
// fetched and verified again when read.

// budget is the local cache budget; nil when unbounded.
type budget struct {
	c     *Cache
	limit int64
	dir   *store.Dir
	tick  atomic.Uint64 // the access clock

	evictMu sync.Mutex // one evictor at a time: each sees what the last freed

	mu          sync.Mutex
	used        int64                    // GUARDED_BY(mu); bytes of stored chunks and of foreign objects
	reserved    int64                    // GUARDED_BY(mu); bytes of Puts under way
	foreign     map[string]foreignObject // GUARDED_BY(mu); objects on disk nobody opened
	opened      map[string]int           // GUARDED_BY(mu); open budgetChunks per key
	cands       []victim                 // GUARDED_BY(mu); oldest first, from the last scan
	evicted     atomic.Int64             // chunks (and foreign objects) evicted, for tests and status
	warned      atomic.Int64             // unix nanos of the last "budget full" warning
	planStopped atomic.Bool              // the prefetch plan stopped at the budget (logged once)
}

type foreignObject struct {
	bytes int64
	used  time.Time
}

// victim is an eviction candidate: chunk idx of o, or foreign object key.
type victim struct {
	o     *Object
	bc    *budgetChunks
	idx   int
	clock uint64 // the chunk's clock when chosen; a later touch spares it
	tier  int    // tierPlain, tierVerifying or tierFirst: lower goes first
	key   string // foreign object
}

// Eviction tiers: chunks of a tier go only once none of the tiers before
// are left. A file being verified was fetched whole just now and losing a
// chunk costs its verification; a file's first chunk is its header, read
// by every loader.
const (
	tierPlain = iota
	tierVerifying
	tierFirst
)

// candidateBatch is how many candidates one scan keeps: a scan costs a
// look at every stored chunk, so it is amortized over this many evictions.
const candidateBatch = 256

// blockSize is what one chunk is rounded up to on disk.
const blockSize = 4096

func newBudget(c *Cache, limit int64) *budget {
	b := &budget{c: c, limit: limit, foreign: map[string]foreignObject{}, opened: map[string]int{}}
	if d, ok := c.store.(*store.Dir); ok {
		b.dir = d
		objs, err := d.Stored()
		if err != nil {
			c.log.Warn("cache budget: cannot list the objects in the cache dir; counting only those opened", "err", err)
		}
		for _, so := range objs {
			b.foreign[so.Key] = foreignObject{bytes: so.Allocated, used: so.Used}
			b.used += so.Allocated
		}
	}
	return b
}

// admit reserves room for chunk idx, evicting the least recently used
// chunks until it fits; res is what it reserved (nothing for a chunk whose
// bytes are on disk already). ok is false when no room can be made.
func (b *budget) admit(bc *budgetChunks, idx int) (res int64, ok bool) {
	need := bc.need(idx)
	b.mu.Lock()
	if bc.stored[idx] {
		need = 0 // rewriting bytes that are there (healing)
	}
	if need > b.limit {
		b.mu.Unlock()
		b.full(need) // a chunk bigger than the whole budget: evict nothing for it
		return 0, false
	}
	if b.used+b.reserved+need <= b.limit {
		b.reserved += need
		b.mu.Unlock()
		return need, true
	}
	b.mu.Unlock()
	b.evictMu.Lock()
	defer b.evictMu.Unlock()
	scans := 0
	freed := true // since the last scan
	for {
		b.mu.Lock()
		if b.used+b.reserved+need <= b.limit {
			b.reserved += need
			b.mu.Unlock()
			return need, true
		}
		if len(b.cands) == 0 {
			b.mu.Unlock()
			if !freed || scans >= 8 || !b.scan() {
				b.full(need)
				return 0, false
			}
			scans++
			freed = false
			continue
		}
		v := b.cands[0]
		b.cands = b.cands[1:]
		if v.tier != tierPlain {
			// Chosen when no plain chunk could go: look again next time,
			// as plain chunks may have been stored since.
			b.cands = b.cands[:0]
		}
		b.mu.Unlock()
		if b.evict(v) {
			freed = true
		}
	}
}

// full logs, at most once a minute, that a chunk could not be stored.
func (b *budget) full(need int64) {
	now := time.Now().UnixNano()
	last := b.warned.Load()
	if now-last < int64(time.Minute) || !b.warned.CompareAndSwap(last, now) {
		return
	}
	b.mu.Lock()
	used, reserved := b.used, b.reserved
	b.mu.Unlock()
	b.c.log.Warn("cache budget (--cache-size) is full of chunks in use (being read, fetched, verified, or of files open with passthrough): serving fetched bytes without caching them",
		"budget", FormatSize(b.limit), "used", FormatSize(used+reserved), "chunk", FormatSize(need))
}

// scan refills the candidates: foreign objects first, oldest first, then
// stored chunks by access clock, of the lowest tier there is. It reports
// whether it found any. The list stays
// in LRU order while it is used up: a chunk stored or read since the scan
// is newer than every candidate (a candidate read since is skipped).
func (b *budget) scan() bool {
	objs := b.c.Objects()
	verifying := make([]bool, len(objs))
	for i, o := range objs { // before b.mu: the lock order is o.mu, b.mu
		o.mu.Lock()
		verifying[i] = o.state == stateVerifying
		o.mu.Unlock()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var fs []victim
	ftime := map[string]time.Time{}
	for k, fo := range b.foreign {
		fs = append(fs, victim{key: k})
		ftime[k] = fo.used
	}
	sort.Slice(fs, func(i, j int) bool { return ftime[fs[i].key].Before(ftime[fs[j].key]) })
	var cs []victim
	for k, o := range objs {
		bc, ok := o.chunks.(*budgetChunks)
		if !ok || bc.closed || bc.pins.Load() > 0 {
			continue
		}
		for i, s := range bc.stored {
			if s && bc.holds[i].Load() == 0 {
				tier := tierPlain
				if i == 0 {
					tier = tierFirst
				} else if verifying[k] {
					tier = tierVerifying
				}
				cs = append(cs, victim{o: o, bc: bc, idx: i, clock: bc.clock[i].Load(), tier: tier})
			}
		}
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].tier != cs[j].tier {
			return cs[i].tier < cs[j].tier
		}
		return cs[i].clock < cs[j].clock
	})
	b.cands = b.cands[:0]
	b.cands = append(b.cands, fs[:min(len(fs), candidateBatch)]...)
	for _, c := range cs {
		if len(b.cands) >= candidateBatch || len(b.cands) > 0 && c.tier > b.cands[len(b.cands)-1].tier {
			break
		}
		b.cands = append(b.cands, c)
	}
	return len(b.cands) > 0
}

// evict removes one candidate, if it is still one; true if bytes were freed.
func (b *budget) evict(v victim) bool {
	if v.o == nil {
		return b.evictForeign(v.key)
	}
	if v.bc.clock[v.idx].Load() != v.clock {
		return false // read since it was chosen
	}
	if !v.o.evictChunk(v.bc, v.idx) {
		return false
	}
	b.evicted.Add(1)
	return true
}

// evictForeign deletes an object nobody opened, unless someone opened it
// since it was chosen. Under mu, so an Open of it waits for the removal.
func (b *budget) evictForeign(key string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	fo, ok := b.foreign[key]
	if !ok || b.dir == nil {
		return false
	}
	if err := b.dir.Remove(key); err != nil {
		b.c.log.Warn("cache budget: cannot remove an unused object from the cache dir", "key", key, "err", err)
		return false
	}
	delete(b.foreign, key)
	b.used -= fo.bytes
	b.evicted.Add(1)
	return true
}

// evictChunk removes chunk idx from the store, unless it is in use (see
// the top of this file). A complete file drops back to filling. It holds
// mu throughout, so no reader can find the chunk present, and no fetch of
// it can start, before its bytes are gone.
//
// A file being verified loses its verdict: the generation moves on, so the
// hash under way ends stale (its reads fail, or its verdict is not
// recorded), and MarkVerified marks only a complete file (see
// budgetChunks.MarkVerified). No fetch of it is in flight to lose: every
// chunk was present.
func (o *Object) evictChunk(bc *budgetChunks, idx int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || o.state == stateBad || o.heal != nil || o.filling ||
		bc.pins.Load() > 0 || bc.holds[idx].Load() > 0 || o.inflight[idx] != nil || !o.chunks.Present(idx) {
		return false
	}
	if o.state == stateVerifying && len(o.inflight) > 0 {
		return false // a fetch of its generation would be lost
	}
	bc.markMu.Lock()
	err := bc.Evict(idx)
	bc.markMu.Unlock()
	if err != nil {
		if !errors.Is(err, store.ErrBusy) {
			o.c.log.Warn("cache budget: cannot evict a chunk", "file", o.file.Path, "chunk", idx, "err", err)
		}
		return false
	}
	if o.state == stateVerifying {
		o.gen++
	}
	// Uncounted before mu is released: a Put of the chunk fetched again
	// must find it not stored, and count its bytes.
	b := bc.b
	b.mu.Lock()
	if bc.stored[idx] && !bc.closed {
		bc.stored[idx] = false
		need := bc.need(idx)
		bc.bytes -= need
		b.used -= need
	}
	b.mu.Unlock()
	if o.state != stateFilling {
		o.setStateLocked(stateFilling)
	}
	return true
}

// holdLocked keeps chunk idx, found present, from being evicted until the
// returned hold is released (see hold.piece); it also records the access.
// A nil hold (no budget) does nothing.
// LOCKS_REQUIRED(mu)
func (o *Object) holdLocked(idx int) *hold {
	bc, ok := o.chunks.(*budgetChunks)
	if !ok {
		return nil
	}
	bc.holds[idx].Add(1)
	bc.touch(idx)
	return &hold{bc: bc, idx: idx}
}

// hold is a reader's claim on a present chunk.
type hold struct {
	bc   *budgetChunks
	idx  int
	done atomic.Bool
}

func (h *hold) release() {
	if h.done.CompareAndSwap(false, true) {
		h.bc.holds[h.idx].Add(-1)
	}
}

// piece ties the hold to pc: bytes in memory are safe from eviction, so
// the hold ends now; a section of the data file keeps it until pc.Done
// (the caller read or spliced it).
func (h *hold) piece(pc store.Piece) store.Piece {
	if h == nil {
		return pc
	}
	if pc.Data != nil || pc.N == 0 || pc.File == nil {
		h.release()
		return pc
	}
	if pc.Done != nil {
		done := pc.Done
		pc.Done = func() { done(); h.release() }
	} else {
		pc.Done = h.release
	}
	return pc
}

// Pin keeps the object's chunks from being evicted until Unpin: the fs
// layer pins a file before it hands the kernel its cache file for
// passthrough (reads then bypass the daemon, which cannot hold chunks for
// them), and unpins it when that handle is released. Pin before checking
// BackingPath, so the file cannot lose a chunk in between. Without a
// budget both do nothing.
func (o *Object) Pin() {
	if bc, ok := o.chunks.(*budgetChunks); ok {
		o.mu.Lock()
		bc.pins.Add(1)
		o.mu.Unlock()
	}
}

// Unpin undoes one Pin.
func (o *Object) Unpin() {
	if bc, ok := o.chunks.(*budgetChunks); ok {
		o.mu.Lock()
		bc.pins.Add(-1)
		o.mu.Unlock()
	}
}

// planMayFetch says whether the prefetch plan, having handed out n chunk
// fetches, may hand out one more. Under a budget it stops once it has
// fetched three quarters of it: prefetching more than the budget holds
// would evict what it fetched before a loader read it, and the quarter
// left is for readahead and the reads of files outside the plan's order.
// The loader's own reads and readahead go on past it, evicting as they go.
func (c *Cache) planMayFetch(n int64) bool {
	b := c.budget
	if b == nil || (n+1)*c.opts.ChunkSize <= b.limit-b.limit/4 {
		return true
	}
	if b.planStopped.CompareAndSwap(false, true) {
		c.log.Info("prefetch stopped at three quarters of the cache budget (--cache-size); the rest is fetched as it is read",
			"budget", FormatSize(b.limit), "prefetched", FormatSize(n*c.opts.ChunkSize))
	}
	return false
}

// CacheUsage reports the bytes the local cache holds and its budget
// (Options.CacheSize); limit is 0 when the cache is unbounded, and used is
// then not counted.
func (c *Cache) CacheUsage() (used, limit int64) {
	b := c.budget
	if b == nil {
		return 0, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used + b.reserved, b.limit
}
