package chunkcache

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/weightfs/weightfs/fetch"
)

// The budget across eviction: refetch, re-verification and restart.

// An evicted chunk of a verified file makes it filling again with its
// verified mark cleared in the store; it is fetched again on the next read,
// with the right bytes, and the file is verified again once complete.
func TestBudgetRefetchAfterEvictionVerifiesAgain(t *testing.T) {
	c := openTestCache(t, budgetOptions(t.TempDir(), 5))
	src := newFakeSource()
	a := testObject(t, c, src.add("a.bin", 3*testChunk+100, 1), src)
	readAll(t, a, src.content("a.bin"), func() {})
	waitFor(t, "a verified", a.Done)
	if !a.chunks.Verified() {
		t.Fatal("no verified mark")
	}
	use(t, a, 0, 1, 2, 3)
	b := testObject(t, c, src.add("b.bin", 2*testChunk, 2), src)
	ensure(t, b, 0, 1)
	if a.Done() || a.chunks.Verified() || a.Stats().State != "filling" {
		t.Fatalf("after eviction: done %v, mark %v, state %s", a.Done(), a.chunks.Verified(), a.Stats().State)
	}
	if got := present(a); !equalBools(got, []bool{true, false, true, true}) {
		t.Fatalf("a present %v; want its 1 evicted", got)
	}
	// Once b is verified its 1 is older than any of a's chunks fetched
	// again, so a fits whole (b's 0, a first chunk, stays).
	waitFor(t, "b verified", b.Done)
	before := src.bytes.Load()
	readAll(t, a, src.content("a.bin"), func() {})
	if src.bytes.Load() == before {
		t.Fatal("nothing fetched again")
	}
	waitFor(t, "a verified again", a.Done)
	if a.Stats().State != "verified" || !a.chunks.Verified() {
		t.Fatalf("state %s, mark %v", a.Stats().State, a.chunks.Verified())
	}
}

// Chunks evicted stay absent after a restart, with or without a budget
// then, and the rest is served from disk; objects left in the cache dir by
// an earlier run count against the budget and go first, whole.
func TestBudgetEvictionSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	src := newFakeSource()
	fa := src.add("a.bin", 5*testChunk, 1)
	fb := src.add("b.bin", 2*testChunk, 2)
	c1, err := Open(budgetOptions(dir, 4))
	if err != nil {
		t.Fatal(err)
	}
	a1, _ := c1.Object("test", fa, src)
	ensure(t, a1, 0, 1, 2, 3)
	b1, _ := c1.Object("test", fb, src)
	ensure(t, b1, 0) // evicts a's 1
	if got := present(a1); !equalBools(got, []bool{true, false, true, true, false}) {
		t.Fatalf("before restart: a present %v", got)
	}
	c1.Close()

	for _, size := range []int64{0, 4} {
		o := budgetOptions(dir, size)
		c2, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		a2, _ := c2.Object("test", fa, src)
		if got := present(a2); !equalBools(got, []bool{true, false, true, true, false}) {
			t.Fatalf("after restart (budget %d chunks): a present %v", size, got)
		}
		c2.Close()
	}

	// A budget of 3 chunks with 4 on disk: a fresh file's chunks push out
	// b (unopened, from the earlier run) first, then a's oldest.
	c3 := openTestCache(t, budgetOptions(dir, 3))
	if used, _ := c3.CacheUsage(); used != 4*testChunk {
		t.Fatalf("counted %d bytes at start, want the 4 chunks on disk", used)
	}
	a3, _ := c3.Object("test", fa, src)
	d := testObject(t, c3, src.add("d.bin", 2*testChunk, 3), src)
	ensure(t, d, 1)
	if m, _ := filepath.Glob(filepath.Join(dir, "objects", "*", ObjectKey("test", fb)+".*")); len(m) != 0 {
		t.Fatalf("unopened b still on disk: %v", m)
	}
	if a3.chunks.Count() != 2 {
		t.Fatalf("a has %d chunks; want 2 after b and one of a's went for d's 1", a3.chunks.Count())
	}
	ensure(t, d, 0)
	if a3.chunks.Count() != 1 || !a3.Present(0) {
		t.Fatalf("a present %v; want only its first chunk after d's 0", present(a3))
	}
	before := src.reads.Load()
	readAll(t, a3, src.content("a.bin"), func() {})
	if src.reads.Load() == before {
		t.Fatal("a's evicted chunks were not fetched again")
	}
	if d := diskBytes(t, dir); d > 3*testChunk {
		t.Fatalf("%d bytes on disk, budget %d", d, 3*testChunk)
	}
}

// verdicts records Verified events.
type verdicts struct {
	NopEvents
	mu  sync.Mutex
	bad int
}

func (v *verdicts) Verified(path string, ok bool) {
	if !ok {
		v.mu.Lock()
		v.bad++
		v.mu.Unlock()
	}
}

// A chunk of a verified file fetched again after its eviction is judged
// anew: corrupt this time, the file fails verification (and heals) rather
// than keep the verdict of the bytes evicted.
func TestBudgetRefetchedChunkIsVerified(t *testing.T) {
	ev := &verdicts{}
	o := budgetOptions(t.TempDir(), 6)
	o.Events = ev
	c := openTestCache(t, o)
	src := newFakeSource()
	a := testObject(t, c, src.add("a.bin", 3*testChunk+100, 1), src)
	readAll(t, a, src.content("a.bin"), func() {})
	waitFor(t, "a verified", a.Done)
	use(t, a, 0, 1, 2, 3) // in this order: chunks store in any order
	b := testObject(t, c, src.add("b.bin", 3*testChunk, 2), src)
	ensure(t, b, 0, 1, 2)
	if got := present(a); !equalBools(got, []bool{true, false, true, true}) {
		t.Fatalf("a present %v; want its 1 evicted", got)
	}
	// A file being verified loses chunks only after plain ones: wait, so
	// b's 1 is a plain chunk, and the oldest once a's 2 and 3 are used.
	waitFor(t, "b verified", b.Done)
	use(t, a, 2, 3)
	src.mu.Lock()
	src.corrupt["a.bin"] = 1
	src.mu.Unlock()
	ensure(t, a, 1)
	deadline := time.Now().Add(5 * time.Second)
	for !a.Done() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !a.Done() {
		used, lim := c.CacheUsage()
		t.Fatalf("a not healed: %+v present %v; b present %v; used %d of %d", a.Stats(), present(a), present(b), used, lim)
	}
	ev.mu.Lock()
	bad := ev.bad
	ev.mu.Unlock()
	if bad == 0 {
		t.Fatal("a corrupt refetch of an evicted chunk passed verification")
	}
	readAll(t, a, src.content("a.bin"), func() {})
}

// A file being verified may lose a chunk when nothing else can go: the
// hash under way is then stale (its reads fail), a verdict reached anyway
// marks nothing on disk, and the file is filling again.
func TestBudgetEvictingAFileBeingVerified(t *testing.T) {
	c := openTestCache(t, budgetOptions(t.TempDir(), 3))
	src := newFakeSource()
	a := testObject(t, c, src.add("a.bin", 3*testChunk, 1), src)
	ensure(t, a, 0, 1, 2)
	waitFor(t, "a verified", a.Done)
	// As if the verifier had just taken it up again.
	a.mu.Lock()
	a.setStateLocked(stateVerifying)
	gen := a.gen
	a.mu.Unlock()
	os.Remove(filepath.Join(c.Dir(), "objects", a.key[:2], a.key+".ok"))
	b := testObject(t, c, src.add("b.bin", testChunk, 2), src)
	ensure(t, b, 0)
	if got := present(a); !equalBools(got, []bool{true, false, true}) || a.Stats().State != "filling" {
		t.Fatalf("a present %v, state %s; want its 1 evicted and filling", got, a.Stats().State)
	}
	if _, err := a.digest(c.verifier, fetch.AlgoSHA256, gen); err != errStale {
		t.Fatalf("a hash of the old generation: %v, want errStale", err)
	}
	a.chunks.MarkVerified() // a verdict reached before the eviction
	if a.chunks.Verified() {
		t.Fatal("an incomplete file was marked verified")
	}
	readAll(t, a, src.content("a.bin"), func() {})
}
