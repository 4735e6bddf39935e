package chunkcache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/weightfs/weightfs/chunkcache/store"
)

// diskBytes is what the cache's data files take on disk (st_blocks).
func diskBytes(t *testing.T, dir string) int64 {
	t.Helper()
	n, err := store.DiskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// budgetOptions: a small budget of whole chunks, no memory tier (every hit
// is a disk read), readahead off unless a test turns it on.
func budgetOptions(dir string, chunks int64) Options {
	return Options{Dir: dir, ChunkSize: testChunk, RangeSize: 16 << 10, FetchTimeout: 5 * time.Second,
		ReadaheadMax: -1, MemoryBytes: -1, MaxWorkers: 4, CacheSize: chunks * testChunk}
}

func present(o *Object) []bool {
	out := make([]bool, o.NumChunks())
	for i := range out {
		out[i] = o.Present(i)
	}
	return out
}

func ensure(t *testing.T, o *Object, idx ...int) {
	t.Helper()
	for _, i := range idx {
		if err := o.Ensure(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
}

// readAll reads the whole file through the cache in FUSE-sized pieces,
// alternating ReadAt and ReadRef (sections of the data file released once
// read, as the fs layer does after the reply), checks every byte, and
// calls after each piece.
func readAll(t *testing.T, o *Object, want []byte, after func()) {
	t.Helper()
	const piece = 48 << 10 // not a divisor of the chunk: pieces straddle chunks
	buf := make([]byte, piece)
	for off, k := int64(0), 0; off < int64(len(want)); k++ {
		n := min(piece, len(want)-int(off))
		var got []byte
		if k%2 == 0 {
			m, err := o.ReadAt(context.Background(), buf[:n], off)
			if err != nil || m != n {
				t.Fatalf("ReadAt at %d: %d, %v", off, m, err)
			}
			got = buf[:n]
		} else {
			data, sec, done, err := o.ReadRef(context.Background(), buf[:n], off)
			if err != nil {
				t.Fatalf("ReadRef at %d: %v", off, err)
			}
			got = data
			if sec != nil {
				got = make([]byte, sec.Size())
				if _, err := sec.ReadAt(got, 0); err != nil && err != io.EOF {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, want[off:off+int64(len(got))]) {
				t.Fatalf("%s: %d bytes at %d differ from the origin's", o.file.Path, len(got), off)
			}
			if done != nil {
				done()
			}
			off += int64(len(got))
			after()
			continue
		}
		if !bytes.Equal(got, want[off:off+int64(n)]) {
			t.Fatalf("%s: %d bytes at %d differ from the origin's", o.file.Path, n, off)
		}
		off += int64(n)
		after()
	}
}

// The local budget holds under a model twice its size, read through the
// cache twice over with readahead on: the bytes on disk (st_blocks of the
// data files) never exceed the budget by more than the filesystem's
// rounding, every byte read is right, and chunks were evicted and fetched
// again. (Without a budget the disk ends up holding the whole model.)
func TestBudgetHoldsUnderAModelTwiceItsSize(t *testing.T) {
	for _, direct := range []bool{false, true} {
		name := "buffered"
		if direct {
			name = "O_DIRECT, whose files are not reserved whole under a budget"
		}
		t.Run(name, func(t *testing.T) { budgetHoldsUnderAModelTwiceItsSize(t, direct) })
	}
}

func budgetHoldsUnderAModelTwiceItsSize(t *testing.T, direct bool) {
	dir := t.TempDir()
	const budgetChunks = 32 // 2 MiB
	o := budgetOptions(dir, budgetChunks)
	o.DirectWrites = direct
	o.ReadaheadMin, o.ReadaheadMax = 128<<10, 256<<10
	c := openTestCache(t, o)
	src := newFakeSource()
	sizes := []int{2 << 20, 1<<20 + 12345, 512 << 10, 3000, 512<<10 - 12345} // 4 MiB and a bit
	var objs []*Object
	var total int
	for i, n := range sizes {
		f := src.add("model-0000"+string(rune('1'+i))+".safetensors", n, uint64(10+i))
		objs = append(objs, testObject(t, c, f, src))
		total += n
	}
	if total < 2*budgetChunks*testChunk {
		t.Fatalf("model of %d bytes: not twice the budget", total)
	}
	limit := o.CacheSize
	// Counted bytes never exceed the budget (whole 4 KiB blocks); the
	// filesystem may add a block of extent metadata per fragmented file.
	slack := int64(len(sizes)) * 8192
	var peak int64
	check := func() {
		// Under the budget's lock, so the files are summed as of one
		// instant (a chunk punched from one file and put into another
		// while they are walked would count twice): every write under
		// way has its bytes reserved, every punch is done before its
		// bytes are uncounted.
		b := c.budget
		b.mu.Lock()
		d, counted := diskBytes(t, dir), b.used+b.reserved
		b.mu.Unlock()
		if d > counted+slack || counted > limit {
			t.Fatalf("%d bytes on disk, %d counted, budget %d", d, counted, limit)
		}
		peak = max(peak, d)
	}
	for pass := 0; pass < 2; pass++ {
		for _, ob := range objs {
			readAll(t, ob, src.content(ob.file.Path), check)
		}
	}
	// Background fetches still storing end within the budget too.
	waitFor(t, "fetches to settle", func() bool {
		for _, ob := range objs {
			ob.mu.Lock()
			n := len(ob.inflight)
			ob.mu.Unlock()
			if n > 0 {
				return false
			}
		}
		return true
	})
	check()
	if peak < limit/2 {
		t.Fatalf("peak %d bytes on disk: the cache was hardly used", peak)
	}
	if d := diskBytes(t, dir); d > limit+slack {
		t.Fatalf("%d bytes on disk at rest, budget %d", d, limit)
	}
	if c.budget.evicted.Load() == 0 || src.bytes.Load() < int64(total+total/2) {
		t.Fatalf("%d evictions, %d bytes fetched for two passes over %d: nothing was evicted and refetched", c.budget.evicted.Load(), src.bytes.Load(), total)
	}
	t.Logf("model %d bytes, budget %d, peak on disk %d, %d evictions, %d bytes fetched", total, limit, peak, c.budget.evicted.Load(), src.bytes.Load())
}

// Least recently used goes first; a file's first chunk only once nothing
// else can go; a read of a present chunk counts as a use.
func TestBudgetEvictsLeastRecentlyUsed(t *testing.T) {
	c := openTestCache(t, budgetOptions(t.TempDir(), 3))
	src := newFakeSource()
	f := src.add("a.safetensors", 5*testChunk, 1)
	o := testObject(t, c, f, src)
	ensure(t, o, 0, 1, 2)
	ensure(t, o, 3) // 0 is oldest, but a first chunk: 1 goes
	if got, want := present(o), []bool{true, false, true, true, false}; !equalBools(got, want) {
		t.Fatalf("after 0,1,2,3: present %v, want %v", got, want)
	}
	buf := make([]byte, 100)
	if _, err := o.ReadAt(context.Background(), buf, 2*testChunk+7); err != nil { // 2 is used again: 3 is the oldest
		t.Fatal(err)
	}
	ensure(t, o, 4)
	if got, want := present(o), []bool{true, false, true, false, true}; !equalBools(got, want) {
		t.Fatalf("after reading 2, then 4: present %v, want %v", got, want)
	}
	// Another file: its first chunk stays while the other file has
	// chunks that are not first ones.
	g := testObject(t, c, src.add("b.safetensors", 3*testChunk, 2), src)
	ensure(t, g, 0, 1)
	if got, want := present(o), []bool{true, false, false, false, false}; !equalBools(got, want) {
		t.Fatalf("after b's 0,1: a present %v, want %v", got, want)
	}
	ensure(t, g, 2) // only first chunks left besides b's: b's 1 is not first
	if got, want := present(g), []bool{true, false, true}; !equalBools(got, want) {
		t.Fatalf("b present %v, want %v", got, want)
	}
	if !o.Present(0) {
		t.Fatal("a first chunk went while a later chunk could")
	}
	for _, ob := range []*Object{o, g} {
		readAll(t, ob, src.content(ob.file.Path), func() {})
	}
}

// use reads a byte of each chunk, in order, all of them present.
func use(t *testing.T, o *Object, idx ...int) {
	t.Helper()
	for _, i := range idx {
		if !o.Present(i) {
			t.Fatalf("chunk %d not present", i)
		}
		if _, err := o.ReadAt(context.Background(), make([]byte, 1), int64(i)*testChunk); err != nil {
			t.Fatal(err)
		}
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A chunk whose bytes a reader holds (a section of the data file not yet
// spliced) is not evicted until the reader lets go; a file pinned for
// passthrough loses nothing while pinned, even verified and least recently
// used. With everything held, a fetched chunk is served but not stored,
// and the budget holds.
func TestBudgetNeverEvictsHeldOrPinned(t *testing.T) {
	dir := t.TempDir()
	c := openTestCache(t, budgetOptions(dir, 4))
	src := newFakeSource()
	a := testObject(t, c, src.add("a.bin", 2*testChunk, 1), src)
	readAll(t, a, src.content("a.bin"), func() {})
	waitFor(t, "a verified", a.Done)
	a.Pin()
	if _, ok := a.BackingPath(); !ok {
		t.Fatal("a verified file has no backing path")
	}
	b := testObject(t, c, src.add("b.bin", 4*testChunk, 2), src)
	bb := src.content("b.bin")
	ensure(t, b, 1, 2)
	holdSection := func(idx int) func() {
		t.Helper()
		data, sec, done, err := b.ReadRef(context.Background(), make([]byte, 1000), int64(idx)*testChunk+5)
		if err != nil || sec == nil || data != nil || done == nil {
			t.Fatalf("ReadRef: %v, section %v, done %v; want a section of the data file to release", err, sec != nil, done != nil)
		}
		return func() {
			got := make([]byte, sec.Size())
			off := int64(idx)*testChunk + 5
			if _, err := sec.ReadAt(got, 0); err != nil || !bytes.Equal(got, bb[off:off+1000]) {
				t.Fatalf("held section of chunk %d: %v, bytes right %v", idx, err, bytes.Equal(got, bb[off:off+1000]))
			}
			done()
		}
	}
	done1, done2 := holdSection(1), holdSection(2)
	// The budget is full: a pinned (2 chunks), b's 1 and 2 held.
	ensure(t, b, 3)
	if b.Present(3) {
		t.Fatal("a chunk was stored over the budget")
	}
	if !equalBools(present(a), []bool{true, true}) || !a.Done() {
		t.Fatalf("pinned a: present %v, done %v", present(a), a.Done())
	}
	if !b.Present(1) || !b.Present(2) {
		t.Fatal("a held chunk was evicted")
	}
	// A reader is served all the same.
	buf := make([]byte, 4096)
	if _, err := b.ReadAt(context.Background(), buf, 0); err != nil || !bytes.Equal(buf, bb[:4096]) {
		t.Fatalf("read with the budget full: %v", err)
	}
	waitFor(t, "b's 0 stored or refused", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.inflight) == 0
	})
	if b.Present(0) {
		t.Fatal("a chunk was stored over the budget")
	}
	if d := diskBytes(t, dir); d > 4*testChunk {
		t.Fatalf("%d bytes on disk, budget %d", d, 4*testChunk)
	}
	done1() // checks the bytes it held, then lets go
	ensure(t, b, 0)
	if b.Present(1) || !b.Present(0) || !b.Present(2) {
		t.Fatalf("after b's 1 was released: b present %v; want 1 evicted for 0", present(b))
	}
	a.Unpin()
	ensure(t, b, 3)
	if a.Present(1) || !a.Present(0) {
		t.Fatalf("unpinned a: present %v; want its 1 evicted", present(a))
	}
	if a.Done() {
		t.Fatal("a file that lost a chunk is still done")
	}
	if _, ok := a.BackingPath(); ok {
		t.Fatal("a file that lost a chunk still offers passthrough")
	}
	done2()
	readAll(t, a, src.content("a.bin"), func() {})
	readAll(t, b, bb, func() {})
}

// Prefetch of a model twice the budget stops at three quarters of it
// rather than evict what it fetched before anyone read it; reads then go
// on through the cache.
func TestBudgetPrefetchStopsAtTheBudget(t *testing.T) {
	dir := t.TempDir()
	o := budgetOptions(dir, 16)
	c := openTestCache(t, o)
	src := newFakeSource()
	var objs []*Object
	for i := 0; i < 4; i++ {
		objs = append(objs, testObject(t, c, src.add("f"+string(rune('0'+i))+".bin", 8*testChunk, uint64(i)), src))
	}
	p := c.StartPrefetch(context.Background(), objs)
	want := int64(12) // 3/4 of 16 chunks
	waitFor(t, "the plan to stop", func() bool {
		if p.planned.Load() < want {
			return false
		}
		for _, ob := range objs {
			ob.mu.Lock()
			n := len(ob.inflight)
			ob.mu.Unlock()
			if n > 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(50 * time.Millisecond) // the plan would go on here if it did
	if n := p.planned.Load(); n != want {
		t.Fatalf("the plan handed out %d fetches, want %d", n, want)
	}
	if e := c.budget.evicted.Load(); e != 0 {
		t.Fatalf("prefetch evicted %d chunks", e)
	}
	if used, _ := c.CacheUsage(); used != want*testChunk {
		t.Fatalf("%d bytes cached, want %d", used, want*testChunk)
	}
	for _, ob := range objs {
		readAll(t, ob, src.content(ob.file.Path), func() {})
	}
	if d := diskBytes(t, dir); d > o.CacheSize {
		t.Fatalf("%d bytes on disk, budget %d", d, o.CacheSize)
	}
}

// Readers of several files at once, with readahead, over a model three
// times the budget: every byte right, the budget held at every look.
func TestBudgetHoldsUnderConcurrentReaders(t *testing.T) {
	dir := t.TempDir()
	o := budgetOptions(dir, 24)
	o.ReadaheadMin, o.ReadaheadMax = 128<<10, 256<<10
	c := openTestCache(t, o)
	src := newFakeSource()
	var objs []*Object
	for i := 0; i < 6; i++ {
		objs = append(objs, testObject(t, c, src.add("s"+string(rune('0'+i))+".bin", 12*testChunk+i*777, uint64(20+i)), src))
	}
	var mu sync.Mutex
	var bad error
	check := func() {
		b := c.budget
		b.mu.Lock()
		d, counted := diskBytes(t, dir), b.used+b.reserved
		b.mu.Unlock()
		if d > counted+int64(len(objs))*8192 || counted > o.CacheSize {
			mu.Lock()
			bad = fmt.Errorf("%d bytes on disk, %d counted, budget %d", d, counted, o.CacheSize)
			mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	for _, ob := range objs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := src.content(ob.file.Path)
			buf := make([]byte, 40<<10)
			for pass := 0; pass < 2; pass++ {
				for off := int64(0); off < int64(len(want)); off += int64(len(buf)) {
					n, err := ob.ReadAt(context.Background(), buf, off)
					if right := bytes.Equal(buf[:n], want[off:off+int64(n)]); err != nil || !right {
						mu.Lock()
						bad = fmt.Errorf("%s at %d: %v, bytes right %v", ob.file.Path, off, err, right)
						mu.Unlock()
						return
					}
					check()
				}
			}
		}()
	}
	wg.Wait()
	if bad != nil {
		t.Fatal(bad)
	}
	if c.budget.evicted.Load() == 0 {
		t.Fatal("nothing evicted")
	}
}
