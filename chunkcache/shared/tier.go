package shared

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Options configure a Tier. Zero values take the defaults in the comments.
type Options struct {
	// Holder names this node in leases; default hostname-pid-random.
	Holder string
	// LeaseTTL is how long a lease lasts unless renewed; its holder renews
	// it every third of that while it fetches. Default 10 s: a crashed
	// holder's chunks are taken over that soon.
	LeaseTTL time.Duration
	// OpTimeout bounds one request to the store (a chunk GET or PUT
	// included): past it the store counts as failing and reads go to the
	// origin. Default 20 s, an 8 MiB chunk at 3 Mbit/s.
	OpTimeout time.Duration
	// ConfirmDelay is how long into the fetch a lease written to a store
	// without an exclusive create is read back (lease.go, confirmed): past
	// the store's own settling time (a SeaweedFS mount shows another
	// mount's write within about a second). Default 1.5 s.
	ConfirmDelay time.Duration
	// MinFree stops write-back while the store reports less room than
	// this; default 1 GiB.
	MinFree int64
	// AccessEvery is how often a node records that it used an object, for
	// GC; default 6 h (GC's unit is days).
	AccessEvery time.Duration
	// FleetOriginChunks is how many chunks the whole fleet's prefetch
	// keeps in flight from the origin, split between the live nodes
	// (plan.go); default DefaultFleetOriginChunks. A node alone is not
	// limited.
	FleetOriginChunks int
	Logger            *slog.Logger
	Now               func() time.Time // tests
}

// Tier is the shared store as the fetch scheduler sees it: Fill a chunk
// buffer from it or, under a lease, from the origin, then Publish what the
// origin gave. It is safe for concurrent use.
type Tier struct {
	opts  Options
	blobs Blobs
	log   *slog.Logger
	h     health

	mu      sync.Mutex
	members members // the fleet's live nodes, for splitting the prefetch (members.go)
	slots   slots   // this node's prefetch fetches from the origin (plan.go)

	stats   map[string]*Stats         // GUARDED_BY(mu), by volume
	touched map[string]time.Time      // GUARDED_BY(mu), by object key: last access record
	creates map[string]*pendingCreate // GUARDED_BY(mu), by lease name (lease.go)
}

// New returns the tier over b.
func New(b Blobs, o Options) *Tier {
	if o.Holder == "" {
		o.Holder = defaultHolder()
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = 20 * time.Second
	}
	if o.ConfirmDelay <= 0 {
		o.ConfirmDelay = 1500 * time.Millisecond
	}
	if o.MinFree == 0 {
		o.MinFree = 1 << 30
	}
	if o.AccessEvery <= 0 {
		o.AccessEvery = 6 * time.Hour
	}
	if o.FleetOriginChunks <= 0 {
		o.FleetOriginChunks = DefaultFleetOriginChunks
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t := &Tier{opts: o, blobs: b, log: o.Logger, stats: map[string]*Stats{}, touched: map[string]time.Time{}, creates: map[string]*pendingCreate{}}
	t.h.t = t
	return t
}

func defaultHolder() string {
	host, _ := os.Hostname()
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(r[:]))
}

// Spread is this node's offset into a plan of n chunks, the same on every
// call: a hash of its holder name, so the nodes of a fleet start their
// prefetch at different points of a model.
func (t *Tier) Spread(n int) int {
	if n <= 0 {
		return 0
	}
	return int(xxhash.Sum64String(t.opts.Holder) % uint64(n))
}

// Blobs is the store underneath.
func (t *Tier) Blobs() Blobs { return t.blobs }

// String names the store.
func (t *Tier) String() string { return t.blobs.String() }

func (t *Tier) now() time.Time { return t.opts.Now() }

// Mode says who wants a chunk, which decides what a lease held elsewhere
// means: a prefetch moves on to other chunks (so the nodes of a fleet split
// the model between them), readahead waits for it to land, and a demand
// read waits at most as long as the origin would take.
type Mode int

const (
	Demand Mode = iota
	Readahead
	Background
	// Patient is the prefetch plan's last pass: a chunk another live node
	// owns (members.go) is waited for, not raced for.
	Patient
)

func (m Mode) String() string {
	switch m {
	case Demand:
		return "demand"
	case Readahead:
		return "readahead"
	case Background:
		return "background"
	case Patient:
		return "patient"
	}
	return "mode" + itoa(int64(m))
}

// Request is one chunk a node needs.
type Request struct {
	Volume    string // for stats
	Key       string // the object's content address (chunkcache.ObjectKey)
	Index     int
	ChunkSize int64
	Buf       []byte // exactly the chunk's length
	Mode      Mode
	// Origin fills Buf from the origin.
	Origin func(ctx context.Context) error
	// OriginTime is how long a chunk takes from the origin now: a demand
	// read waits on another node's lease no longer than that.
	OriginTime time.Duration
}

// Source says where Fill found the bytes.
type Source int

const (
	FromShared Source = iota
	FromOrigin
)

// Filled is Fill's outcome; hand it to Publish.
type Filled struct {
	Source  Source
	publish bool
	lease   *lease
}

// ErrDeferred is Fill's answer to a Background request for a chunk that
// another node is fetching: do something else and come back later.
var ErrDeferred = errors.New("chunk is being fetched by another node")

// Fill puts chunk r.Index of r.Key into r.Buf: from the shared store when
// it is there (its digest checked), else from the origin. Whatever the
// store does, a failure of it only sends the read to the origin; Fill
// fails only when the origin does, ctx ends, or with ErrDeferred.
func (t *Tier) Fill(ctx context.Context, r Request) (f Filled, err error) {
	name := chunkName(r.Key, r.ChunkSize, r.Index)
	if t.log.Enabled(ctx, slog.LevelDebug) {
		start := t.now()
		defer func() {
			if d := t.now().Sub(start); d > 200*time.Millisecond {
				t.debug("slow fill", name, r.Mode, "source", f.Source, "err", err, "took", d.Round(time.Millisecond))
			}
		}()
	}
	// While the store fails, a prefetch waits for it rather than go to
	// the origin: otherwise every node of the fleet would fetch the whole
	// model from the origin the moment the store hiccups (a 503 SlowDown).
	// The plan's last, patient pass still reads what is left from the
	// origin; readers never wait for the store.
	if !t.h.readable() {
		return t.storeFailed(ctx, r, nil)
	}
	t.touch(r.Key)
	t.refreshMembers()
	if r.Mode == Background || r.Mode == Patient {
		if mine, split := t.owner(r.Key, r.Index); split && !mine {
			if r.Mode == Background {
				t.count(r.Volume, func(s *Stats) { s.Deferred++ })
				return Filled{}, ErrDeferred // another node's share: not even asked
			}
			hit, err := t.awaitOwner(ctx, r, name)
			switch {
			case hit:
				return Filled{Source: FromShared}, nil
			case ctx.Err() != nil:
				return Filled{}, ctx.Err()
			case err != nil:
				return t.storeFailed(ctx, r, nil)
			}
			// The owner left the fleet: the chunk is ours now.
		}
	}
	if hit, err := t.get(ctx, r, name); hit || err != nil {
		if hit {
			return Filled{Source: FromShared}, nil
		}
		return t.storeFailed(ctx, r, nil)
	}
	lname := leaseName(r.Key, r.ChunkSize, r.Index)
	start := t.now()
	waited := false
	for {
		// A prefetch fetches from the origin only in one of this node's
		// slots (plan.go), held until the bytes are in, never while
		// waiting on another node. A Background request without a free
		// one is put off at once, before it asks the store for anything.
		// A Patient one (the plan's last pass, a few of them queued at a
		// time, gather.go) waits for one, having taken its lease first:
		// the lease's requests to the store, which took up to a second
		// each on a busy SeaweedFS, are then made while the slot still
		// serves the chunk before, not in its time.
		var slot func()
		if r.Mode == Background {
			var ok bool
			if slot, ok = t.takeSlot(ctx, false); !ok {
				if ctx.Err() != nil {
					return Filled{}, ctx.Err()
				}
				t.count(r.Volume, func(s *Stats) { s.Deferred++ })
				return Filled{}, ErrDeferred
			}
		}
		f, again, err := t.leased(ctx, r, name, lname, start, &waited, slot)
		if !again {
			return f, err
		}
		// The lease lapsed with the chunk still absent: try to take it.
	}
}

// leased is one round of Fill's lease: fetch the chunk under a lease won
// here, in an origin slot for a prefetch (slot, if Fill took one already),
// or wait for the node holding it. again says the lease lapsed with the
// chunk still absent.
func (t *Tier) leased(ctx context.Context, r Request, name, lname string, start time.Time, waited *bool, slot func()) (f Filled, again bool, err error) {
	if slot != nil {
		defer slot() // idempotent: given back before waiting, or once the bytes are in
	}
	res, err := t.acquire(ctx, r.Volume, lname, func() bool {
		hit, _ := t.get(ctx, r, name)
		return hit
	})
	if err != nil {
		if ctx.Err() != nil {
			return Filled{}, false, ctx.Err()
		}
		f, err := t.storeFailed(ctx, r, nil)
		return f, false, err
	}
	if res.landed {
		return Filled{Source: FromShared}, false, nil
	}
	if res.held != nil {
		t.count(r.Volume, func(s *Stats) { s.LeasesWon++ })
		t.debug("lease won", lname, r.Mode)
		// It may have landed between the miss and the lease.
		if hit, _ := t.get(ctx, r, name); hit {
			res.held.release()
			return Filled{Source: FromShared}, false, nil
		}
		if slot == nil && r.Mode == Patient {
			var ok bool
			if slot, ok = t.takeSlot(ctx, true); !ok {
				res.held.release()
				return Filled{}, false, ctx.Err()
			}
			defer slot()
		}
		if t.blobs.ExclusiveCreate() {
			f, err := t.fromOrigin(ctx, r, res.held, true)
			return f, false, err
		}
		other, err := t.confirmed(ctx, res.held, r.Origin)
		if errors.Is(err, errLostQuick) {
			err = nil
		}
		switch {
		case res.held.lost:
			res.held.release()
			t.debug("lease lost to a racing node", lname, r.Mode, "to", other.Holder)
			t.count(r.Volume, func(s *Stats) { s.LeasesLost++ })
			res.other = other
		case err != nil:
			res.held.release()
			return Filled{}, false, err
		default:
			t.count(r.Volume, func(s *Stats) { s.BytesOrigin += int64(len(r.Buf)) })
			return Filled{Source: FromOrigin, publish: true, lease: res.held}, false, nil
		}
	}
	if slot != nil {
		slot()
	}
	if r.Mode == Background {
		t.count(r.Volume, func(s *Stats) { s.Deferred++ })
		return Filled{}, false, ErrDeferred
	}
	if !*waited {
		*waited = true
		t.count(r.Volume, func(s *Stats) { s.LeasesWaited++ })
	}
	t.debug("waiting on a lease", lname, r.Mode, "holder", res.other.Holder, "expires_in", time.UnixMilli(res.other.Expires).Sub(t.now()).Round(time.Millisecond))
	hit, err := t.await(ctx, r, name, lname, res.other, start)
	t.debug("waited on a lease", lname, r.Mode, "landed", hit, "err", err, "for", t.now().Sub(start).Round(time.Millisecond))
	switch {
	case hit:
		return Filled{Source: FromShared}, false, nil
	case ctx.Err() != nil:
		return Filled{}, false, ctx.Err()
	case errors.Is(err, errLeaseOurs):
		// Stepped back from a race the store settled in our favour: the
		// lease is ours to renew and release. No slot is taken: the other
		// racers wait on us.
		t.count(r.Volume, func(s *Stats) { s.LeasesWon++ })
		f, err := t.fromOrigin(ctx, r, t.startLease(lname, ""), true)
		return f, false, err
	case errors.Is(err, errOriginSooner):
		f, err := t.fromOrigin(ctx, r, nil, true)
		return f, false, err
	case err != nil:
		f, err := t.storeFailed(ctx, r, nil)
		return f, false, err
	}
	return Filled{}, true, nil
}

var errOriginSooner = errors.New("the origin is sooner than the lease")

// get reads the chunk from the store. A chunk failing its digest is
// deleted (so no node reads it again) and counts as absent; err is set
// only when the store itself failed.
func (t *Tier) get(ctx context.Context, r Request, name string) (hit bool, err error) {
	start := t.now()
	err = t.op(ctx, func(ctx context.Context) error { return readChunk(ctx, t.blobs, name, r.Buf) })
	if d := t.now().Sub(start); d > 500*time.Millisecond {
		t.debug("slow read", name, r.Mode, "err", err, "took", d.Round(time.Millisecond))
	}
	switch {
	case err == nil:
		t.count(r.Volume, func(s *Stats) { s.BytesShared += int64(len(r.Buf)) })
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	case errors.Is(err, ErrCorrupt):
		t.count(r.Volume, func(s *Stats) { s.Corrupt++ })
		t.log.Warn("shared cache chunk failed its digest; deleted, fetching it from the origin", "store", t.blobs.String(), "chunk", name, "err", err)
		_ = t.op(ctx, func(ctx context.Context) error { return t.blobs.Delete(ctx, name) })
		return false, nil
	}
	return false, err
}

// storeFailed is Fill's answer when the store failed: ErrDeferred for a
// prefetch, the origin (no write-back) for the others.
func (t *Tier) storeFailed(ctx context.Context, r Request, l *lease) (Filled, error) {
	if r.Mode == Background {
		l.release()
		t.count(r.Volume, func(s *Stats) { s.Deferred++ })
		return Filled{}, ErrDeferred
	}
	return t.fromOrigin(ctx, r, l, false)
}

func (t *Tier) fromOrigin(ctx context.Context, r Request, l *lease, publish bool) (Filled, error) {
	if err := r.Origin(ctx); err != nil {
		l.release()
		return Filled{}, err
	}
	t.count(r.Volume, func(s *Stats) { s.BytesOrigin += int64(len(r.Buf)) })
	return Filled{Source: FromOrigin, publish: publish, lease: l}, nil
}

// Publish writes back what Fill got from the origin, and releases the
// lease. Call it once per successful Fill, after the bytes in r.Buf were
// used (they are not changed): it blocks for the write.
func (t *Tier) Publish(r Request, f Filled) {
	defer f.lease.release()
	if !f.publish || !t.h.writable() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.opts.OpTimeout)
	defer cancel()
	name := chunkName(r.Key, r.ChunkSize, r.Index)
	start := t.now()
	err := t.op(ctx, func(ctx context.Context) error { return writeChunk(ctx, t.blobs, name, r.Buf) })
	if err == nil {
		t.h.wrote()
		t.count(r.Volume, func(s *Stats) { s.BytesPublished += int64(len(r.Buf)) })
	}
	t.debug("published", name, r.Mode, "err", err, "took", t.now().Sub(start).Round(time.Millisecond))
}

// Forget deletes the shared chunks of an object that failed verification
// at this node, so no node reads them again; the healed copy is written
// back by whoever fetches next.
func (t *Tier) Forget(key string, chunkSize int64, nchunks int) {
	ctx, cancel := context.WithTimeout(context.Background(), t.opts.OpTimeout)
	defer cancel()
	for i := 0; i < nchunks && t.h.readable(); i++ {
		name := chunkName(key, chunkSize, i)
		_ = t.op(ctx, func(ctx context.Context) error { return t.blobs.Delete(ctx, name) })
	}
}

// touch records, at most every AccessEvery per object, that this node used
// it: GC keeps what was used lately. Fire and forget.
func (t *Tier) touch(key string) {
	now := t.now()
	t.mu.Lock()
	last, ok := t.touched[key]
	if ok && now.Sub(last) < t.opts.AccessEvery {
		t.mu.Unlock()
		return
	}
	t.touched[key] = now
	t.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), t.opts.OpTimeout)
		defer cancel()
		doc := []byte(fmt.Sprintf("{\"holder\":%q,\"at_unix_ms\":%d}", t.opts.Holder, now.UnixMilli()))
		_ = t.op(ctx, func(ctx context.Context) error { return t.blobs.Put(ctx, accessName(key), [][]byte{doc}, false) })
	}()
}

// debug logs a lease decision: what the fleet tests show with
// --log-level debug, to see which node waited on which chunk, and why.
func (t *Tier) debug(msg, lease string, m Mode, kv ...any) {
	if t.log.Enabled(context.Background(), slog.LevelDebug) {
		t.log.Debug("shared cache: "+msg, append([]any{"lease", lease, "mode", m}, kv...)...)
	}
}

func (t *Tier) sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
