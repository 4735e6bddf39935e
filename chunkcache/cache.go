// Package chunkcache is the fetch scheduler above the chunk store
// (chunkcache/store): it composes an origin's fetch.RangeReader with the
// store, fetching fixed-size chunks with ranged reads. It owns the fetches
// in flight (one per chunk, shared by every reader) and the lifetime of
// their buffers; which chunk is wanted next (demand before readahead before
// the prefetch plan); background retries; and verifying whole files against
// their checksums, healing those that fail. Bytes at rest are the store's;
// saved manifests are chunkcache/store/manifests'. It must not know about
// FUSE, and it never holds a lock across network I/O.
//
// Layers, top down: Cache and Object (cache.go, object.go, read.go) serve
// reads; sched.go, readahead.go and prefetch.go decide what to fetch;
// call.go runs one chunk fetch; verify.go, heal.go, strict.go and retry.go
// judge files and try again; store.Chunks keeps the bytes.
package chunkcache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weightfs/weightfs/chunkcache/internal/bufpool"
	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/chunkcache/store"
	"github.com/weightfs/weightfs/chunkcache/store/manifests"
	"github.com/weightfs/weightfs/fetch"
)

// DefaultChunkSize is 8 MiB. Why: AWS advises 8-16 MB ranges and the Hub's own
// fast clients use 10 MiB, so a chunk is big enough that the ~30-200 ms first
// byte latency of a CDN or S3 is paid rarely, and small enough that a loader
// touching one tensor does not wait for much more than it needs (a chunk is
// further split into parallel sub-ranges, see Options.RangeSize). It also
// keeps the presence bitmap tiny: 128 chunks per GiB.
const DefaultChunkSize = 8 << 20

// Options configure a Cache. Zero values take the defaults in the comments.
type Options struct {
	Dir       string // cache directory (required)
	ChunkSize int64  // bytes per chunk; default DefaultChunkSize
	// RangeSize splits one chunk fetch into parallel ranged reads, because a
	// single connection to a CDN is capped (~50 MB/s) while the link is not.
	// Default 2 MiB (4 ranges per 8 MiB chunk).
	RangeSize int64
	// MemoryBytes is the budget of the in-memory tier; default 32 MiB. It
	// holds the first chunk of files readers asked for (safetensors headers,
	// read by every loader process and rank, and small files); re-reads of
	// tensor data are the kernel's page cache's (see Object.memWorthy).
	// Negative disables it.
	MemoryBytes int64
	// FetchTimeout bounds one chunk fetch including its retries, so a waiter
	// is always released; default 2 minutes.
	FetchTimeout time.Duration
	// MaxWorkers bounds background chunk fetches (readahead and prefetch)
	// in flight; each is split into ChunkSize/RangeSize ranged reads, so the
	// default 16 keeps up to 64 ranges (128 MiB) in flight: a 10 Gbit link
	// with ~70 ms per 2 MiB range (30 ms to first byte, 50 MB/s per
	// connection) needs about 90 MB in flight, plus slack for chunks whose
	// last range is slow and for the time a chunk takes to store. Measured
	// on the bench: 12 workers 2.85 s, 16 2.27-2.35 s, 20 2.06-2.12 s for a
	// cold 2 GiB load; 20 went over the 300 MiB RSS budget. Each holds a
	// chunk buffer.
	MaxWorkers int
	// ReadaheadMin and ReadaheadMax bound a sequential stream's readahead
	// window; it starts at min and doubles per forward read. Defaults 64 MiB
	// and 512 MiB. Why 512: a reader served from the page cache outruns a
	// smaller window and then waits a fetch's whole latency; a cold 2 GiB
	// load took 3.4-3.9 s with 256 MiB, 2.3 s with 512 MiB. Why 64: a new
	// stream is usually a loader that just read a header and goes on to the
	// tensors, and filling a 10 Gbit link to a CDN takes ~90 MB in flight;
	// starting at 16 MiB measured 50 ms slower to the first tensor, in the
	// noise for whole loads. ReadaheadMax < 0 disables readahead.
	ReadaheadMin, ReadaheadMax int64
	// DirectWrites writes fetched chunks with O_DIRECT (see direct.go);
	// they fall back to buffered writes where the filesystem refuses.
	DirectWrites bool
	// StrictVerify makes a read of a file wait until the whole file is
	// verified against its checksum (files without one are served as they
	// arrive): a reader never sees a byte that later fails verification.
	// The prefetch order is unchanged, so the first shard comes first.
	StrictVerify bool
	// RetryMax caps the backoff between background retries of a chunk or a
	// file that failed; they go on for the life of the cache. Default 1m.
	RetryMax time.Duration
	// Shared, if set, is the fleet's shared store between this cache and
	// the origin (tier.go).
	Shared *shared.Tier
	// CacheSize bounds the bytes of the local cache's data files, evicting
	// the least recently used chunks (budget.go; --cache-size, see
	// ParseSize); 0 is unbounded. Negative is refused.
	CacheSize int64

	Logger *slog.Logger
	// Events, if set, is told about fetches, hits and failures (metrics).
	Events Events
}

// DemandSlack is how many chunk fetches for waiting readers are expected in
// flight beside the background ones (the kernel's readahead of a few
// streams); the buffer pool and the daemon's memory limit allow for them.
const DemandSlack = 4

// MaxFileSize is the largest file the cache accepts (fetch.MaxFileSize): a
// listing that claims more is broken or hostile, and is refused before
// anything is sized from it.
const MaxFileSize = fetch.MaxFileSize

// Cache is the set of cached objects under one directory.
type Cache struct {
	opts      Options
	log       *slog.Logger
	store     store.Store
	manifests *manifests.Store // nil when opened over a store of a test's
	sched     *sched
	verifier  *verifier
	retrier   *retrier
	bufs      *bufpool.Pool // chunk buffers
	fills     chan struct{} // chunks in flight for whole-file fills (see Object.fillAll)

	clientReads    atomic.Int64 // reads by clients so far (see busySince)
	verdictWaiters atomic.Int32 // strict readers waiting for a verdict: the verifier then runs flat out

	fetchedBytes atomic.Int64   // bytes fetched (origin or shared tier), for adaptation
	originNanos  atomic.Int64   // moving average of an origin chunk fetch (tier.go)
	fetches      sync.WaitGroup // chunk fetches running (Object.fetch)
	fetchMu      sync.Mutex     // orders startFetch against Close
	closing      bool           // GUARDED_BY(fetchMu)

	noStore atomic.Pointer[error] // set by DisableStore
	budget  *budget               // nil when Options.CacheSize is 0

	mu      sync.Mutex
	objects map[string]*Object // GUARDED_BY(mu), by object key
}

// DisableStore makes the cache serve fetched bytes without writing them to
// the cache dir, for a disk that cannot hold the model; why is shown in
// every unfinished file's status. Reads still work, but each is fetched
// from the origin, so prefetch is pointless then.
func (c *Cache) DisableStore(why error) {
	c.noStore.Store(&why)
}

// storeDisabled is DisableStore's reason, or nil.
func (c *Cache) storeDisabled() error {
	if p := c.noStore.Load(); p != nil {
		return *p
	}
	return nil
}

// Open prepares the cache directory and starts the scheduler's workers.
func Open(o Options) (*Cache, error) {
	if o.Dir == "" {
		return nil, fmt.Errorf("cache dir is not set: pass --cache-dir")
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	st, err := store.Open(store.Options{Dir: o.Dir, ChunkSize: o.ChunkSize, MemoryBytes: o.MemoryBytes, DirectWrites: o.DirectWrites, NoReserve: o.CacheSize > 0})
	if err != nil {
		return nil, err
	}
	mf, err := manifests.Open(o.Dir)
	if err != nil {
		st.Close()
		return nil, err
	}
	return newCache(o, st, mf), nil
}

// withDefaults fills in the zero values.
func (o Options) withDefaults() (Options, error) {
	if o.ChunkSize <= 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.ChunkSize > 1<<30 {
		return o, fmt.Errorf("chunk size %d is too large: at most 1 GiB", o.ChunkSize)
	}
	if o.CacheSize < 0 {
		return o, fmt.Errorf("cache size %d is negative: pass a size such as 200GiB, or 0 for no bound", o.CacheSize)
	}
	if o.RetryMax <= 0 {
		o.RetryMax = time.Minute
	}
	if o.RangeSize <= 0 {
		o.RangeSize = 2 << 20
	}
	if o.RangeSize > o.ChunkSize {
		o.RangeSize = o.ChunkSize
	}
	if o.MemoryBytes == 0 {
		o.MemoryBytes = 32 << 20
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = 2 * time.Minute
	}
	if o.MaxWorkers <= 0 {
		o.MaxWorkers = 16
	}
	if o.ReadaheadMin <= 0 {
		o.ReadaheadMin = 64 << 20
	}
	if o.ReadaheadMax == 0 {
		o.ReadaheadMax = 512 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Events == nil {
		o.Events = NopEvents{}
	}
	return o, nil
}

// newCache starts the scheduler over st (opts defaulted already).
func newCache(o Options, st store.Store, mf *manifests.Store) *Cache {
	c := &Cache{opts: o, log: o.Logger, store: st, manifests: mf, objects: map[string]*Object{}}
	if o.CacheSize > 0 {
		c.budget = newBudget(c, o.CacheSize)
		c.store = budgetStore{Store: st, b: c.budget}
	}
	c.bufs = bufpool.New(o.ChunkSize, o.MaxWorkers+DemandSlack, false)
	c.fills = make(chan struct{}, max(o.MaxWorkers/2, 2))
	c.sched = newSched(c)
	c.verifier = newVerifier(c)
	c.retrier = newRetrier(c)
	return c
}

// Close releases open files and the store.
//
// It cancels fetches in flight and waits for them, so bytes that already
// arrived are stored and nothing touches a file after it is closed.
func (c *Cache) Close() error {
	c.fetchMu.Lock()
	c.closing = true
	c.fetchMu.Unlock()
	c.sched.stop()
	c.retrier.stop()
	c.fetches.Wait()
	c.verifier.stop()
	c.mu.Lock()
	objs := c.objects
	c.objects = map[string]*Object{}
	c.mu.Unlock()
	for _, o := range objs {
		o.close()
	}
	c.store.Close()
	return nil
}

// startFetch counts a fetch about to start; false once the cache closes.
func (c *Cache) startFetch() bool {
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	if c.closing {
		return false
	}
	c.fetches.Add(1)
	return true
}

// ErrClosed is returned by reads that would fetch after Close.
var ErrClosed = errors.New("cache closed")

// busySince reports whether clients are reading: one waits on the network,
// or one read since *seen, the read count the caller saw last (updated).
// Background CPU work (verification) yields then. An event count rather
// than a clock: nothing is guessed from time, and nothing is polled.
func (c *Cache) busySince(seen *int64) bool {
	n := c.clientReads.Load()
	read := n != *seen
	*seen = n
	return read || c.sched.waiting.Load() > 0
}

// ChunkSize is the size of every chunk but a file's last.
func (c *Cache) ChunkSize() int64 { return c.opts.ChunkSize }

// Dir is the cache directory.
func (c *Cache) Dir() string { return c.opts.Dir }

// ObjectKey names a file's bytes at rest. Files with a checksum are content
// addressed, so the same weights listed by two repos (or two revisions) are
// stored once; others are keyed by where they came from and their version.
func ObjectKey(origin string, f fetch.File) string {
	var id string
	if !f.Checksum.IsZero() {
		id = "sum|" + f.Checksum.Algo + "|" + f.Checksum.Value + "|" + strconv.FormatInt(f.Size, 10)
	} else {
		id = "loc|" + origin + "|" + f.Version + "|" + f.Path + "|" + strconv.FormatInt(f.Size, 10)
	}
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:16])
}

// Object returns the cache entry for f, read through src. origin names the
// source for keys, metrics and messages (e.g. "hf:acme/llama"). The same
// key always returns the same *Object, so readers of one file share state.
func (c *Cache) Object(origin string, f fetch.File, src fetch.RangeReader) (*Object, error) {
	key := ObjectKey(origin, f)
	c.mu.Lock()
	if o, ok := c.objects[key]; ok {
		c.mu.Unlock()
		return o, nil
	}
	c.mu.Unlock()
	// Opening touches the disk; do it outside the lock and resolve races after.
	o, err := openObject(c, key, origin, f, src)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.objects[key]; ok {
		o.close()
		return prev, nil
	}
	c.objects[key] = o
	return o, nil
}

// Objects returns a snapshot of the objects opened so far.
func (c *Cache) Objects() []*Object {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Object, 0, len(c.objects))
	for _, o := range c.objects {
		out = append(out, o)
	}
	return out
}

// Manifests is the store of saved manifests in the cache dir.
func (c *Cache) Manifests() *manifests.Store { return c.manifests }

// SaveManifest persists m under key (see manifests.Store.Save).
func (c *Cache) SaveManifest(key string, m *fetch.Manifest) error { return c.manifests.Save(key, m) }

// LoadManifest returns the manifest saved under key, or (nil, nil) if none.
func (c *Cache) LoadManifest(key string) (*fetch.Manifest, error) { return c.manifests.Load(key) }
