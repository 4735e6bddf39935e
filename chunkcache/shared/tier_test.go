package shared_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/chunkcache/shared/sharedtest"
)

const key = "0123456789abcdef0123456789abcdef"

// origin serves one chunk's bytes, counting fetches; delay slows each.
type origin struct {
	data  []byte
	delay time.Duration
	calls atomic.Int64
}

func newOrigin(n int) *origin {
	b := make([]byte, n)
	rand.New(rand.NewSource(1)).Read(b)
	return &origin{data: b}
}

func (o *origin) request(buf []byte, mode shared.Mode) shared.Request {
	return shared.Request{Volume: "v", Key: key, Index: 3, ChunkSize: 1 << 20, Buf: buf, Mode: mode, OriginTime: time.Minute,
		Origin: func(ctx context.Context) error {
			o.calls.Add(1)
			select {
			case <-time.After(o.delay):
			case <-ctx.Done():
				return ctx.Err()
			}
			copy(buf, o.data)
			return nil
		}}
}

func fill(t *testing.T, tier *shared.Tier, o *origin, mode shared.Mode) (shared.Source, []byte) {
	t.Helper()
	buf := make([]byte, len(o.data))
	r := o.request(buf, mode)
	f, err := tier.Fill(context.Background(), r)
	if err != nil {
		t.Fatalf("Fill: %v", err)
	}
	tier.Publish(r, f)
	if !bytes.Equal(buf, o.data) {
		t.Fatal("Fill returned wrong bytes")
	}
	return f.Source, buf
}

func TestFillThenShare(t *testing.T) {
	store := sharedtest.NewMem()
	o := newOrigin(100 << 10)
	a, b := shared.New(store, shared.Options{}), shared.New(store, shared.Options{})
	if src, _ := fill(t, a, o, shared.Demand); src != shared.FromOrigin {
		t.Fatalf("first node: source %v, want origin", src)
	}
	if src, _ := fill(t, b, o, shared.Demand); src != shared.FromShared {
		t.Fatalf("second node: source %v, want shared", src)
	}
	if n := o.calls.Load(); n != 1 {
		t.Fatalf("origin fetched %d times, want 1", n)
	}
	if st := b.Status(); st.Total.BytesShared != int64(len(o.data)) || a.Status().Total.BytesPublished != int64(len(o.data)) {
		t.Fatalf("stats: a %+v b %+v", a.Status().Total, st.Total)
	}
	if got := store.Names("leases/"); len(got) != 0 {
		t.Fatalf("leases left behind: %v", got)
	}
}

// A chunk whose bytes changed in the store is never served: it is deleted,
// refetched from the origin and written back whole.
func TestCorruptSharedChunkNeverServed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func([]byte)
	}{
		{"flipped data byte", func(b []byte) { b[len(b)/2] ^= 1 }},
		{"flipped header", func(b []byte) { b[3] ^= 0x40 }},
		{"flipped digest", func(b []byte) { b[20] ^= 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := sharedtest.NewMem()
			o := newOrigin(64 << 10)
			fill(t, shared.New(store, shared.Options{}), o, shared.Demand)
			names := store.Names("chunks/")
			if len(names) != 1 || !store.Mutate(names[0], tc.mutate) {
				t.Fatalf("chunks: %v", names)
			}
			b := shared.New(store, shared.Options{})
			src, _ := fill(t, b, o, shared.Demand) // fill checks the bytes
			if src != shared.FromOrigin || o.calls.Load() != 2 || b.Status().Total.Corrupt != 1 {
				t.Fatalf("source %v, origin calls %d, stats %+v", src, o.calls.Load(), b.Status().Total)
			}
			if src, _ := fill(t, shared.New(store, shared.Options{}), o, shared.Demand); src != shared.FromShared {
				t.Fatal("the refetched chunk was not written back")
			}
		})
	}
}

// Modes decide what a lease held by another node means.
func TestLeaseHeldElsewhere(t *testing.T) {
	for _, tc := range []struct {
		mode       shared.Mode
		originTime time.Duration
		want       string
	}{
		{shared.Background, time.Minute, "deferred"},
		{shared.Readahead, time.Minute, "shared"},
		{shared.Demand, time.Minute, "shared"},
		{shared.Demand, 50 * time.Millisecond, "origin"}, // the origin is sooner than the holder
	} {
		t.Run(fmt.Sprintf("%d-%v", tc.mode, tc.originTime), func(t *testing.T) {
			store := sharedtest.NewMem()
			o := newOrigin(64 << 10)
			o.delay = 400 * time.Millisecond
			holder := shared.New(store, shared.Options{})
			done := make(chan struct{})
			go func() { defer close(done); fill(t, holder, o, shared.Background) }()
			waitFor(t, func() bool { return len(store.Names("leases/")) == 1 })
			b := shared.New(store, shared.Options{})
			buf := make([]byte, len(o.data))
			r := o.request(buf, tc.mode)
			r.OriginTime = tc.originTime
			f, err := b.Fill(context.Background(), r)
			got := "error"
			switch {
			case errors.Is(err, shared.ErrDeferred):
				got = "deferred"
			case err == nil && f.Source == shared.FromShared:
				got = "shared"
			case err == nil:
				got = "origin"
			}
			if err == nil {
				b.Publish(r, f)
				if !bytes.Equal(buf, o.data) {
					t.Fatal("wrong bytes")
				}
			}
			if got != tc.want {
				t.Fatalf("got %s (err %v), want %s", got, err, tc.want)
			}
			<-done
		})
	}
}

// A lease whose holder died lapses, and another node takes the chunk over.
func TestExpiredLeaseTakenOver(t *testing.T) {
	store := sharedtest.NewMem()
	o := newOrigin(32 << 10)
	now := time.Now()
	old := fmt.Sprintf(`{"holder":"dead-node","expires_unix_ms":%d}`, now.Add(-time.Second).UnixMilli())
	r := o.request(make([]byte, len(o.data)), shared.Demand)
	name := fmt.Sprintf("leases/%s/%s/%d/%d", key[:2], key, r.ChunkSize, r.Index)
	if err := store.Put(context.Background(), name, [][]byte{[]byte(old)}, true); err != nil {
		t.Fatal(err)
	}
	b := shared.New(store, shared.Options{})
	if src, _ := fill(t, b, o, shared.Background); src != shared.FromOrigin {
		t.Fatal("not taken over")
	}
	if st := b.Status().Total; st.LeasesTakenOver != 1 || st.LeasesWon != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// On a store whose exclusive create is not (racing creates all succeed),
// the read-back still leaves one node to fetch: the fleet pays one origin
// download.
func TestWeakExclusivityStillDedupes(t *testing.T) {
	store := sharedtest.NewMem()
	store.Weak = true
	o := newOrigin(256 << 10)
	o.delay = 100 * time.Millisecond
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fill(t, shared.New(store, shared.Options{}), o, shared.Readahead)
		}()
	}
	wg.Wait()
	if n := o.calls.Load(); n != 1 {
		t.Fatalf("origin fetched %d times by 8 racing nodes, want 1", n)
	}
}

// A failing store sends reads to the origin at once, and is tried again
// after a backoff.
func TestFailingStoreFallsBack(t *testing.T) {
	store := sharedtest.NewMem()
	var down atomic.Bool
	down.Store(true)
	store.Fail = func(op, name string) error {
		if down.Load() {
			return errors.New("connection refused")
		}
		return nil
	}
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tier := shared.New(store, shared.Options{Now: clock})
	o := newOrigin(16 << 10)
	for i := 0; i < 3; i++ {
		if src, _ := fill(t, tier, o, shared.Demand); src != shared.FromOrigin {
			t.Fatal("not from the origin")
		}
	}
	if st := tier.Status(); st.State != "failing" {
		t.Fatalf("state %q", st.State)
	}
	reqs := store.Requests.Load()
	fill(t, tier, o, shared.Demand)
	if store.Requests.Load() != reqs {
		t.Fatal("a store in backoff was asked again")
	}
	down.Store(false)
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	fill(t, tier, o, shared.Demand)
	if st := tier.Status(); st.State != "ok" {
		t.Fatalf("state %q after the store healed", st.State)
	}
}

// A store that hangs costs a read its OpTimeout, never more.
func TestHungStoreBounded(t *testing.T) {
	store := sharedtest.NewMem()
	store.Latency = time.Hour
	tier := shared.New(store, shared.Options{OpTimeout: 100 * time.Millisecond})
	o := newOrigin(16 << 10)
	start := time.Now()
	if src, _ := fill(t, tier, o, shared.Demand); src != shared.FromOrigin {
		t.Fatal("not from the origin")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a hung store held the read %v", d)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// crossedView is one node's view of a weak store whose mounts disagree for
// a while: until settle has passed since a lease was first written, an
// Open of it shows the doc the other node wrote, as two SeaweedFS mounts
// can each show the other's racing create. After that it shows the store.
type crossedView struct {
	*sharedtest.Mem
	node   string
	settle time.Duration
	shared *crossing
}

type crossing struct {
	mu    sync.Mutex
	first map[string]time.Time         // lease name: first write
	docs  map[string]map[string][]byte // lease name: node: its doc
}

func (c *crossedView) Put(ctx context.Context, name string, data [][]byte, ifAbsent bool) error {
	if strings.HasPrefix(name, "leases/") && !strings.Contains(name, ".takeover-") {
		c.shared.mu.Lock()
		if _, ok := c.shared.first[name]; !ok {
			c.shared.first[name] = time.Now()
		}
		if c.shared.docs[name] == nil {
			c.shared.docs[name] = map[string][]byte{}
		}
		c.shared.docs[name][c.node] = bytes.Join(data, nil)
		c.shared.mu.Unlock()
	}
	return c.Mem.Put(ctx, name, data, ifAbsent)
}

func (c *crossedView) Open(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	c.shared.mu.Lock()
	first, ok := c.shared.first[name]
	var doc []byte
	if ok && time.Since(first) < c.settle {
		for n, d := range c.shared.docs[name] {
			if n != c.node {
				doc = d
			}
		}
	}
	c.shared.mu.Unlock()
	if doc != nil {
		return io.NopCloser(bytes.NewReader(doc)), int64(len(doc)), nil
	}
	return c.Mem.Open(ctx, name)
}

// Two nodes that each see the other win their racing lease both step back.
// Once the store settles, the one it names fetches: the chunk is not left
// waiting out the lease (an hour here), and the origin is asked once.
func TestCrossedLeaseRaceResolves(t *testing.T) {
	store := sharedtest.NewMem()
	store.Weak = true
	x := &crossing{first: map[string]time.Time{}, docs: map[string]map[string][]byte{}}
	o := newOrigin(64 << 10)
	o.delay = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	tiers := make([]*shared.Tier, 2)
	for i := range tiers {
		view := &crossedView{Mem: store, node: fmt.Sprint(i), settle: 500 * time.Millisecond, shared: x}
		tiers[i] = shared.New(view, shared.Options{Holder: fmt.Sprintf("node-%d", i), LeaseTTL: time.Hour, ConfirmDelay: 200 * time.Millisecond})
	}
	var start sync.WaitGroup
	start.Add(1)
	for _, tier := range tiers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start.Wait()
			buf := make([]byte, len(o.data))
			r := o.request(buf, shared.Readahead)
			f, err := tier.Fill(ctx, r)
			if err != nil {
				t.Errorf("Fill: %v", err)
				return
			}
			tier.Publish(r, f)
			if !bytes.Equal(buf, o.data) {
				t.Error("wrong bytes")
			}
		}()
	}
	start.Done()
	wg.Wait()
	lost := 0
	for _, tier := range tiers {
		lost += int(tier.Status().Total.LeasesLost)
	}
	if lost != 2 {
		t.Fatalf("%d nodes stepped back, want both (the race this test stages did not happen)", lost)
	}
	if n := o.calls.Load(); n != 1 {
		t.Fatalf("origin fetched %d times, want 1", n)
	}
}
