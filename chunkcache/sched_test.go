package chunkcache

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// The scheduler's tests: a fake origin (orderSource, fakeSource) and a fake
// store (memStore), no disk, no mount.

// schedOptions: one ranged read per chunk, so the origin's log is a log
// of chunk fetches.
func schedOptions(workers int, readahead bool) Options {
	o := Options{ChunkSize: testChunk, RangeSize: testChunk, MaxWorkers: workers, FetchTimeout: 10 * time.Second, ReadaheadMax: -1}
	if readahead {
		o.ReadaheadMin, o.ReadaheadMax = 2*testChunk, 4*testChunk
	}
	return o
}

func (s *orderSource) order() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

func indexOf(log []string, e string) int {
	for i, x := range log {
		if x == e {
			return i
		}
	}
	return -1
}

// Readers of one missing chunk, and a background fetch of it, share one
// fetch and one put.
func TestSchedSingleFlight(t *testing.T) {
	src := newFakeSource()
	f := src.add("a.bin", testChunk, 1)
	src.stall = 50 * time.Millisecond
	c, _ := fakeCache(t, schedOptions(4, false), true)
	o := testObject(t, c, f, src)
	var wg sync.WaitGroup
	errs := make(chan error, 17)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, 1000)
			off := int64(i * 1000)
			if _, err := o.ReadAt(context.Background(), p, off); err != nil {
				errs <- err
			} else if !bytes.Equal(p, src.content(f.Path)[off:off+1000]) {
				errs <- errors.New("wrong bytes")
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); errs <- o.Ensure(context.Background(), 0) }()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := src.reads.Load(); got != 1 {
		t.Fatalf("origin saw %d reads, want 1 (one fetch)", got)
	}
	if n := memChunksOf(o).putsOf(0); n != 1 {
		t.Fatalf("chunk put %d times, want once", n)
	}
}

// Demand before readahead before prefetch: with the only worker held on a
// prefetch job, a reader's chunk is fetched at once (demand never queues
// behind background work), and once the worker is free the reader's
// readahead goes before the plan's next job.
func TestSchedPriorities(t *testing.T) {
	gate := make(chan struct{})
	src := &orderSource{fakeSource: newFakeSource(), gates: map[string]chan struct{}{"plan.bin": gate}}
	fp := src.add("plan.bin", 20*testChunk, 2)
	fr := src.add("read.bin", 20*testChunk, 3)
	c, _ := fakeCache(t, schedOptions(1, true), true)
	op, or := testObject(t, c, fp, src), testObject(t, c, fr, src)
	c.StartPrefetch(context.Background(), []*Object{op})
	waitFor(t, "the worker to take plan.bin@0", func() bool { return src.count("plan.bin@0") == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p := make([]byte, 100)
	if _, err := or.ReadAt(ctx, p, 0); err != nil {
		t.Fatalf("demand read while the worker is held: %v", err)
	}
	if !bytes.Equal(p, src.content(fr.Path)[:100]) {
		t.Fatal("demand read: wrong bytes")
	}
	close(gate)
	// Exact entry: a prefix count of "plan.bin@1" would take in @10-@19.
	waitFor(t, "the plan to go on", func() bool { return indexOf(src.order(), "plan.bin@1") >= 0 })
	log := src.order()
	for _, ra := range []string{"read.bin@1", "read.bin@2"} {
		if i := indexOf(log, ra); i < 0 || i > indexOf(log, "plan.bin@1") {
			t.Errorf("readahead %s must come before the plan's plan.bin@1: %s", ra, strings.Join(log, " "))
		}
	}
	if indexOf(log, "read.bin@0") > indexOf(log, "read.bin@1") {
		t.Errorf("demand read.bin@0 must come before its readahead: %s", strings.Join(log, " "))
	}
}

// While a reader waits on the network, no new plan job starts: demand
// preempts prefetch, which resumes once the reader is served.
func TestSchedDemandPreemptsPlan(t *testing.T) {
	gate := make(chan struct{})
	src := &orderSource{fakeSource: newFakeSource(), gates: map[string]chan struct{}{"wanted.bin": gate}, delay: 2 * time.Millisecond}
	big := src.add("big.bin", 400*testChunk, 4)
	want := src.add("wanted.bin", testChunk, 5)
	c, _ := fakeCache(t, schedOptions(4, false), true)
	ob, ow := testObject(t, c, big, src), testObject(t, c, want, src)
	c.StartPrefetch(context.Background(), []*Object{ob})
	waitFor(t, "prefetch to start", func() bool { return src.count("big.bin") > 8 })
	done := make(chan error, 1)
	go func() {
		_, err := ow.ReadAt(context.Background(), make([]byte, 100), 0)
		done <- err
	}()
	waitFor(t, "the demand read to reach the origin", func() bool { return src.count("wanted.bin") > 0 })
	time.Sleep(30 * time.Millisecond) // plan fetches already in flight finish
	before := src.count("big.bin")
	time.Sleep(150 * time.Millisecond)
	if during := src.count("big.bin") - before; during != 0 {
		t.Fatalf("prefetch started %d fetches while a reader waited on the network", during)
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "prefetch to resume", func() bool { return src.count("big.bin") > before })
}

// A reader that gives up is released at once, but the fetch it started
// goes on detached and is stored, so the next reader needs no new fetch.
func TestSchedCanceledReaderLeavesFetch(t *testing.T) {
	gate := make(chan struct{})
	src := &orderSource{fakeSource: newFakeSource(), gates: map[string]chan struct{}{"a.bin": gate}}
	f := src.add("a.bin", 2*testChunk, 6)
	c, _ := fakeCache(t, schedOptions(2, false), true)
	o := testObject(t, c, f, src)
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, err := o.ReadAt(ctx, make([]byte, 10), 0)
		res <- err
	}()
	waitFor(t, "the read to reach the origin", func() bool { return src.count("a.bin@0") == 1 })
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled read: err %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a canceled reader was not released")
	}
	close(gate)
	waitFor(t, "the detached fetch to store the chunk", func() bool { return o.Present(0) })
	p := make([]byte, 10)
	if _, err := o.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, src.content(f.Path)[:10]) {
		t.Fatalf("read after: err %v", err)
	}
	if n := src.count("a.bin@0"); n != 1 {
		t.Fatalf("origin saw %d fetches of the chunk, want 1", n)
	}
}

// Close cancels fetches stalled at the origin and releases their readers;
// reads after Close fail with ErrClosed instead of fetching.
func TestSchedCloseCancelsFetches(t *testing.T) {
	src := newFakeSource()
	f := src.add("s.bin", 2*testChunk, 7)
	src.stall = time.Hour
	c, _ := fakeCache(t, schedOptions(2, false), false)
	o := testObject(t, c, f, src)
	res := make(chan error, 1)
	go func() {
		_, err := o.ReadAt(context.Background(), make([]byte, 10), 0)
		res <- err
	}()
	waitFor(t, "the read to reach the origin", func() bool { return src.reads.Load() == 1 })
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close waited on a stalled fetch")
	}
	if err := <-res; err == nil {
		t.Fatal("a reader of a canceled fetch got no error")
	}
	if _, err := o.ReadAt(context.Background(), make([]byte, 10), testChunk); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: err %v, want ErrClosed", err)
	}
}

// Verification and healing are the scheduler's: over the fake store a file
// corrupted once is dropped, refetched, healed and verified.
func TestSchedVerifiesAndHealsOverStore(t *testing.T) {
	src := newFakeSource()
	f := src.add("w.safetensors", 4*testChunk, 8)
	src.corrupt[f.Path] = 1
	o := schedOptions(2, false)
	o.RetryMax = 200 * time.Millisecond
	c, _ := fakeCache(t, o, true)
	obj := testObject(t, c, f, src)
	p := make([]byte, f.Size)
	if _, err := obj.ReadAt(context.Background(), p, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a verdict", func() bool { return obj.Done() || obj.Failed() })
	if !obj.Done() || !memChunksOf(obj).Verified() || memChunksOf(obj).dropCount() != 1 {
		t.Fatalf("stats %+v, store verified %v, drops %d: want healed, marked, one drop", obj.Stats(), memChunksOf(obj).Verified(), memChunksOf(obj).dropCount())
	}
	if _, err := obj.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, src.content(f.Path)) {
		t.Fatalf("read after healing: err %v", err)
	}
}
