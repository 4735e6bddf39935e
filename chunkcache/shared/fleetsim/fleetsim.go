// Package fleetsim runs a fleet of simulated weightfs nodes in one process,
// each with its own shared.Tier (the real code), over one fake regional
// store and one fake origin, to see what cooperative fill costs as the
// fleet grows: origin egress, time until every node holds the model, and
// requests to the store.
//
// What is simulated, and what is real:
//   - shared.Tier, its leases, chunk framing, digests and health are the
//     real code, unchanged.
//   - The store is a sharedtest.Mem behind one wrapper per node that adds a
//     per-request latency, the node's own link to the store, the store's
//     aggregate bandwidth (both token buckets), injected errors, and a
//     switch that makes the node vanish (kill -9).
//   - The origin is a token bucket of the fleet's aggregate bandwidth with
//     a first-byte latency; it counts every byte it sends.
//   - Each node runs a miniature of chunkcache's scheduler: W workers taking
//     the chunks in plan order (every node the same order, as the real
//     prefetcher), in mode Background (a chunk another node holds the lease
//     on is skipped), then a patient pass in mode Readahead over what is
//     still missing. Every filled chunk is compared with the model's bytes.
package fleetsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/chunkcache/shared/sharedtest"
)

// Settings describe one simulated fleet.
type Settings struct {
	Nodes     int
	Chunks    int // chunks in the model (one file)
	ChunkSize int
	Workers   int // per node

	OriginBPS       int64         // aggregate origin bandwidth, all nodes together
	OriginFirstByte time.Duration // per origin request

	StoreLatency time.Duration // per store request
	StoreNodeBPS int64         // each node's link to the store
	StoreBPS     int64         // the store's aggregate bandwidth
	StoreErrRate float64       // fraction of store requests that fail
	// StoreReqPerSec, if set, caps the store's requests per second, all
	// nodes together (as S3 caps a prefix): requests queue for a slot.
	StoreReqPerSec int64
	// Weak makes exclusive create weak, as on a POSIX DFS: a create of a
	// name that exists when the request starts fails, but racing creates
	// (within one request's time) all succeed, the last one's bytes
	// winning. (sharedtest.Mem's Weak is harsher: every create succeeds.)
	Weak bool

	LeaseTTL  time.Duration
	OpTimeout time.Duration

	// KillAt, if set, kills one node that long after the start: the node
	// that holds the most leases then. Its requests stop (lease renewals
	// too), its origin fetches hang, it releases nothing.
	KillAt time.Duration

	// Timeout bounds the run; nodes that do not hold the model by then
	// count as missing chunks.
	Timeout time.Duration
}

// Defaults fills the zero fields.
func (s Settings) Defaults() Settings {
	def := func(p *int64, v int64) {
		if *p == 0 {
			*p = v
		}
	}
	if s.Nodes == 0 {
		s.Nodes = 1
	}
	if s.Chunks == 0 {
		s.Chunks = 128
	}
	if s.ChunkSize == 0 {
		s.ChunkSize = 32 << 10
	}
	if s.Workers == 0 {
		s.Workers = 8
	}
	def(&s.OriginBPS, 3<<20)
	def(&s.StoreNodeBPS, 96<<20)
	def(&s.StoreBPS, 768<<20)
	if s.OriginFirstByte == 0 {
		s.OriginFirstByte = 20 * time.Millisecond
	}
	if s.StoreLatency == 0 {
		s.StoreLatency = 2 * time.Millisecond
	}
	if s.LeaseTTL == 0 {
		s.LeaseTTL = 5 * time.Second
	}
	if s.OpTimeout == 0 {
		s.OpTimeout = 20 * time.Second
	}
	if s.Timeout == 0 {
		s.Timeout = 60 * time.Second
	}
	return s
}

// Ideal is the least time a fleet can hold the model in: the origin sends
// it once, every node's link carries it, the store serves it N times.
func (s Settings) Ideal() time.Duration {
	m := float64(s.ModelBytes())
	secs := max(m/float64(s.OriginBPS), m/float64(s.StoreNodeBPS), float64(s.Nodes)*m/float64(s.StoreBPS))
	return time.Duration(secs * float64(time.Second))
}

// ModelBytes is the model's size.
func (s Settings) ModelBytes() int64 { return int64(s.Chunks) * int64(s.ChunkSize) }

// Ops counts store requests by kind.
type Ops struct {
	ChunkGetHit  int64 // a chunk read
	ChunkGetMiss int64 // a chunk looked for and absent (first look, or a poll)
	LeaseGet     int64 // a lease read back
	LeasePut     int64 // a lease created (won or lost) or renewed
	ChunkPut     int64 // write-back
	Delete       int64 // lease release, takeover, corrupt chunk
	Other        int64 // access records, Free, List
	Failed       int64 // injected errors (counted in their kind too)
	TimedOut     int64 // requests cut off by their deadline
}

func (o *Ops) add(p Ops) {
	o.ChunkGetHit += p.ChunkGetHit
	o.ChunkGetMiss += p.ChunkGetMiss
	o.LeaseGet += p.LeaseGet
	o.LeasePut += p.LeasePut
	o.ChunkPut += p.ChunkPut
	o.Delete += p.Delete
	o.Other += p.Other
	o.Failed += p.Failed
	o.TimedOut += p.TimedOut
}

// Total is every request.
func (o Ops) Total() int64 {
	return o.ChunkGetHit + o.ChunkGetMiss + o.LeaseGet + o.LeasePut + o.ChunkPut + o.Delete + o.Other
}

// Result is what one run measured.
type Result struct {
	Settings    Settings
	Wall        time.Duration   // until every live node held the model
	NodeTimes   []time.Duration // per node, 0 for the killed one
	OriginBytes int64
	Killed      int // the killed node, -1 for none
	// KilledFetches is how many origin fetches (each under a lease, but
	// for a store fallback) the killed node had in flight when it died.
	KilledFetches int
	Ops           Ops // all nodes
	Fills         int64
	Stats         shared.Stats // summed over the nodes' tiers
	// PeakReqPerSec is the fleet's busiest 100 ms of store requests, as a
	// rate; PeakGetPerSec and PeakPutPerSec the same for GETs and PUTs.
	PeakReqPerSec, PeakGetPerSec, PeakPutPerSec float64
	// FirstLanded and LastLanded are when the first and the last chunk
	// landed in the store: with more nodes than the origin can feed, every
	// chunk is in flight at once and the first lands late.
	FirstLanded, LastLanded time.Duration
	// DupFetches counts origin fetches of a chunk, by live nodes, beyond
	// the first; DeadBytes is what the origin sent the killed node.
	DupFetches int
	DeadBytes  int64
	Wrong      int   // filled chunks whose bytes were not the model's
	Missing    int   // chunks a live node did not hold at the end
	StoreWarn  int64 // Warn log lines of all tiers ("store failing", ...)
	// TimerLag is the worst lateness of a 10 ms sleep during the run: the
	// simulator's own overload (CPU, GC), which inflates times.
	TimerLag time.Duration
	CPU      time.Duration
}

// Egress is origin bytes as a multiple of the model.
func (r Result) Egress() float64 {
	return float64(r.OriginBytes) / float64(r.Settings.ModelBytes())
}

// ReqPerNodeSec is store requests per live node per second of its load.
func (r Result) ReqPerNodeSec() float64 {
	var secs float64
	for _, d := range r.NodeTimes {
		secs += d.Seconds()
	}
	if secs == 0 {
		return 0
	}
	return float64(r.Ops.Total()) / secs
}

// ReqPerChunkNode is store requests per chunk per node.
func (r Result) ReqPerChunkNode() float64 {
	return float64(r.Ops.Total()) / float64(r.Settings.Nodes*r.Settings.Chunks)
}

// Polls estimates the chunk GETs made while waiting on another node's
// lease: every Fill looks once, a won lease looks once more, the rest are
// polls.
func (r Result) Polls() int64 {
	p := r.Ops.ChunkGetHit + r.Ops.ChunkGetMiss - r.Fills - r.Stats.LeasesWon
	return max(p, 0)
}

// pacer is a token bucket of rate bytes/s: each take reserves the next
// slot, so concurrent transfers share the rate in turns.
type pacer struct {
	rate float64
	mu   sync.Mutex
	next time.Time // GUARDED_BY(mu)
}

func newPacer(bps int64) *pacer { return &pacer{rate: float64(bps)} }

func (p *pacer) reserve(n int) time.Time {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next.Before(now) {
		p.next = now
	}
	p.next = p.next.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	return p.next
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// piece is the unit in which transfers take turns on a bucket.
const piece = 8 << 10

type fleet struct {
	s      Settings
	model  []byte
	key    string
	mem    *sharedtest.Mem
	store  *pacer // aggregate store bandwidth
	reqCap *pacer // StoreReqPerSec, or nil
	origin *pacer
	egress atomic.Int64
	nodes  []*node
	start  time.Time
	landed []atomic.Int64 // ns after start when chunk i first landed
	// fetched counts the origin fetches of chunk i that live nodes
	// completed; deadBytes is what the origin sent the killed node.
	fetched   []atomic.Int32
	deadBytes atomic.Int64

	reqs, gets, puts atomic.Int64 // for the peak rates
	warns            atomic.Int64
}

type node struct {
	f     *fleet
	id    int
	tier  *shared.Tier
	link  *pacer
	dead  atomic.Bool
	inOrg atomic.Int64 // origin fetches in progress (leases held, mostly)
	sent  atomic.Int64 // origin bytes to this node

	mu   sync.Mutex
	ops  Ops    // GUARDED_BY(mu)
	have []bool // GUARDED_BY(mu)
	left int    // GUARDED_BY(mu)

	fills atomic.Int64
	wrong atomic.Int64
	done  time.Duration
}

var errInjected = errors.New("fleetsim: injected store error (503 SlowDown)")
var errDead = errors.New("fleetsim: node is dead")

func (n *node) timedOut() {
	n.mu.Lock()
	n.ops.TimedOut++
	n.mu.Unlock()
}

// fetch is the origin: first-byte latency, then the chunk's bytes in turns
// on the fleet's aggregate bucket. A dead node's fetch hangs and takes no
// more bytes.
func (n *node) fetch(ctx context.Context, idx int, buf []byte) error {
	n.inOrg.Add(1)
	defer n.inOrg.Add(-1)
	f := n.f
	hang := func() error { <-ctx.Done(); return ctx.Err() }
	if err := sleepUntil(ctx, time.Now().Add(f.s.OriginFirstByte)); err != nil {
		return err
	}
	src := f.model[idx*f.s.ChunkSize : (idx+1)*f.s.ChunkSize]
	for off := 0; off < len(src); off += piece {
		if n.dead.Load() {
			return hang()
		}
		k := min(piece, len(src)-off)
		f.egress.Add(int64(k))
		n.sent.Add(int64(k))
		if err := sleepUntil(ctx, f.origin.reserve(k)); err != nil {
			return err
		}
		copy(buf[off:off+k], src[off:off+k])
	}
	if n.dead.Load() {
		return hang()
	}
	f.fetched[idx].Add(1)
	return nil
}

// countWarn is a slog handler that counts Warn lines and prints nothing.
type countWarn struct{ n *atomic.Int64 }

func (h countWarn) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h countWarn) Handle(_ context.Context, r slog.Record) error {
	h.n.Add(1)
	return nil
}

func (h countWarn) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countWarn) WithGroup(string) slog.Handler      { return h }

// Run simulates one fleet cold-loading one model together.
func Run(s Settings) Result {
	s = s.Defaults()
	f := &fleet{s: s, mem: sharedtest.NewMem(), store: newPacer(s.StoreBPS), origin: newPacer(s.OriginBPS),
		key: "5eed0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"}
	f.model = make([]byte, s.ModelBytes())
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(f.model)
	f.landed = make([]atomic.Int64, s.Chunks)
	if s.StoreReqPerSec > 0 {
		f.reqCap = newPacer(s.StoreReqPerSec)
	}
	f.fetched = make([]atomic.Int32, s.Chunks)
	log := slog.New(countWarn{&f.warns})
	for i := 0; i < s.Nodes; i++ {
		n := &node{f: f, id: i, link: newPacer(s.StoreNodeBPS), have: make([]bool, s.Chunks), left: s.Chunks}
		n.tier = shared.New(nodeStore{n}, shared.Options{Holder: fmt.Sprintf("node-%d", i), LeaseTTL: s.LeaseTTL,
			OpTimeout: s.OpTimeout, Logger: log})
		f.nodes = append(f.nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()

	// The peak request rates, in 100 ms windows.
	var peakR, peakG, peakP int64
	stopSample := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		var lr, lg, lp int64
		for {
			select {
			case <-stopSample:
				return
			case <-tk.C:
			}
			r, g, p := f.reqs.Load(), f.gets.Load(), f.puts.Load()
			peakR, peakG, peakP = max(peakR, r-lr), max(peakG, g-lg), max(peakP, p-lp)
			lr, lg, lp = r, g, p
		}
	}()

	var lag atomic.Int64
	go func() {
		for {
			select {
			case <-stopSample:
				return
			default:
			}
			t0 := time.Now()
			time.Sleep(10 * time.Millisecond)
			if l := int64(time.Since(t0) - 10*time.Millisecond); l > lag.Load() {
				lag.Store(l)
			}
		}
	}()
	cpu0 := cpuTime()
	start := time.Now()
	f.start = start
	killed, killedFetches := -1, 0
	var killMu sync.Mutex
	if s.KillAt > 0 && s.Nodes > 1 {
		// At KillAt, or as soon after as any node has an origin fetch in
		// flight, the node with the most of them dies.
		go func() {
			if sleepUntil(ctx, start.Add(s.KillAt)) != nil {
				return
			}
			for ctx.Err() == nil {
				best := 0
				for i, n := range f.nodes {
					if n.inOrg.Load() > f.nodes[best].inOrg.Load() {
						best = i
					}
				}
				if n := f.nodes[best]; n.inOrg.Load() > 0 {
					n.dead.Store(true)
					killMu.Lock()
					killed, killedFetches = best, int(n.inOrg.Load())
					killMu.Unlock()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	var wg sync.WaitGroup
	for _, n := range f.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.run(ctx)
			n.done = time.Since(start)
		}()
	}
	// Wait for the live nodes; a dead one hangs until ctx ends.
	liveDone := make(chan struct{})
	go func() {
		for {
			all := true
			for _, n := range f.nodes {
				n.mu.Lock()
				left := n.left
				n.mu.Unlock()
				if left > 0 && !n.dead.Load() {
					all = false
					break
				}
			}
			if all || ctx.Err() != nil {
				close(liveDone)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	<-liveDone
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	cancel()
	wg.Wait()
	close(stopSample)
	<-sampled

	killMu.Lock()
	res := Result{Settings: s, Wall: wall, OriginBytes: f.egress.Load(), Killed: killed, KilledFetches: killedFetches, CPU: cpu,
		PeakReqPerSec: float64(peakR) * 10, PeakGetPerSec: float64(peakG) * 10, PeakPutPerSec: float64(peakP) * 10,
		StoreWarn: f.warns.Load(), TimerLag: time.Duration(lag.Load())}
	killMu.Unlock()
	for i := range f.landed {
		d := time.Duration(f.landed[i].Load())
		if i == 0 || d < res.FirstLanded {
			res.FirstLanded = d
		}
		res.LastLanded = max(res.LastLanded, d)
		res.DupFetches += max(0, int(f.fetched[i].Load())-1)
	}
	for _, n := range f.nodes {
		st := n.tier.Status().Total
		res.Stats.BytesShared += st.BytesShared
		res.Stats.BytesOrigin += st.BytesOrigin
		res.Stats.BytesPublished += st.BytesPublished
		res.Stats.LeasesWon += st.LeasesWon
		res.Stats.LeasesWaited += st.LeasesWaited
		res.Stats.LeasesTakenOver += st.LeasesTakenOver
		res.Stats.Deferred += st.Deferred
		res.Stats.Corrupt += st.Corrupt
		res.Fills += n.fills.Load()
		res.Wrong += int(n.wrong.Load())
		n.mu.Lock()
		res.Ops.add(n.ops)
		if n.id == res.Killed {
			res.NodeTimes = append(res.NodeTimes, 0)
			res.DeadBytes = n.sent.Load()
		} else {
			res.Missing += n.left
			// A node that finished early has its own time; one cut off
			// by the timeout counts the whole run.
			res.NodeTimes = append(res.NodeTimes, min(n.done, wall))
		}
		n.mu.Unlock()
	}
	return res
}

// run is the node's scheduler: the plan in Background mode, then a patient
// Readahead pass over what is missing, until it holds the model.
func (n *node) run(ctx context.Context) {
	n.pass(ctx, shared.Background)
	for ctx.Err() == nil {
		n.mu.Lock()
		left := n.left
		n.mu.Unlock()
		if left == 0 {
			return
		}
		n.pass(ctx, shared.Patient) // as chunkcache's last pass: wait for other nodes' shares
	}
}

// pass runs W workers over the missing chunks in plan order.
func (n *node) pass(ctx context.Context, mode shared.Mode) {
	plan := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < n.f.s.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, n.f.s.ChunkSize)
			for idx := range plan {
				n.fill(ctx, idx, mode, buf)
			}
		}()
	}
	for idx := 0; idx < n.f.s.Chunks; idx++ {
		n.mu.Lock()
		have := n.have[idx]
		n.mu.Unlock()
		if have {
			continue
		}
		select {
		case plan <- idx:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(plan)
	wg.Wait()
}

func (n *node) fill(ctx context.Context, idx int, mode shared.Mode, buf []byte) {
	f := n.f
	r := shared.Request{Volume: "model", Key: f.key, Index: idx, ChunkSize: int64(f.s.ChunkSize), Buf: buf, Mode: mode,
		Origin:     func(ctx context.Context) error { return n.fetch(ctx, idx, buf) },
		OriginTime: 2 * time.Second}
	n.fills.Add(1)
	got, err := n.tier.Fill(ctx, r)
	if err != nil {
		return // deferred, or the run ended
	}
	if !bytes.Equal(buf, f.model[idx*f.s.ChunkSize:(idx+1)*f.s.ChunkSize]) {
		n.wrong.Add(1)
	} else if !n.dead.Load() {
		n.mu.Lock()
		if !n.have[idx] {
			n.have[idx] = true
			n.left--
		}
		n.mu.Unlock()
	}
	n.tier.Publish(r, got)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
