package chunkcache

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/weightfs/weightfs/fetch"
)

const testChunk = 64 << 10

// openTestCache opens a cache with o, in a fresh directory unless o.Dir
// is set, and closes it when the test ends.
func openTestCache(t *testing.T, o Options) *Cache {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newTestCache(t *testing.T, dir string) *Cache {
	t.Helper()
	// Readahead off: these tests count origin reads exactly.
	return openTestCache(t, Options{Dir: dir, ChunkSize: testChunk, RangeSize: 16 << 10, FetchTimeout: 5 * time.Second, ReadaheadMax: -1})
}

// testObject opens f, read from src, in c.
func testObject(t *testing.T, c *Cache, f fetch.File, src fetch.RangeReader) *Object {
	t.Helper()
	o, err := c.Object("test", f, src)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReadAtReturnsOriginBytes(t *testing.T) {
	src := newFakeSource()
	size := 5*testChunk + 123
	f := src.add("model.safetensors", size, 1)
	want := src.content(f.Path)
	c := newTestCache(t, t.TempDir())
	o := testObject(t, c, f, src)
	cases := []struct {
		name    string
		off, n  int
		wantLen int
	}{
		{"first byte", 0, 1, 1},
		{"within a chunk", 100, 1000, 1000},
		{"across one boundary", testChunk - 10, 20, 20},
		{"across several chunks", testChunk / 2, 3 * testChunk, 3 * testChunk},
		{"last partial chunk", 5 * testChunk, 123, 123},
		{"past end is short", size - 10, 100, 10},
		{"at end is empty", size, 10, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := make([]byte, tc.n)
			n, err := o.ReadAt(context.Background(), p, int64(tc.off))
			if err != nil || n != tc.wantLen {
				t.Fatalf("ReadAt = %d, %v; want %d", n, err, tc.wantLen)
			}
			if !bytes.Equal(p[:n], want[tc.off:tc.off+n]) {
				t.Fatal("bytes differ from origin")
			}
		})
	}
	// Reading everything completes and verifies the object.
	all := make([]byte, size)
	if _, err := o.ReadAt(context.Background(), all, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "verification", o.Done)
	if s := o.Stats(); !s.Verified || s.CachedBytes != int64(size) {
		t.Fatalf("stats = %+v", s)
	}
	if p, ok := o.BackingPath(); !ok {
		t.Fatal("no backing path after verification")
	} else if b, _ := os.ReadFile(p); !bytes.Equal(b, want) {
		t.Fatal("backing file differs from origin")
	}
}

func TestConcurrentReadersShareOneFetch(t *testing.T) {
	src := newFakeSource()
	f := src.add("a.bin", testChunk, 2)
	src.stall = 50 * time.Millisecond
	c := newTestCache(t, t.TempDir())
	o, _ := c.Object("test", f, src)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p := make([]byte, 1000)
			off := int64(i * 1000)
			if _, err := o.ReadAt(context.Background(), p, off); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(p, src.content(f.Path)[off:off+1000]) {
				errs <- errors.New("wrong bytes")
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// One chunk of 64 KiB in 16 KiB ranges: exactly 4 range reads.
	if got := src.reads.Load(); got != 4 {
		t.Fatalf("origin saw %d range reads, want 4 (one fetch)", got)
	}
}

func TestVerificationRefetchesOnceThenFails(t *testing.T) {
	for _, tc := range []struct {
		name       string
		corrupt    int // corrupted range reads
		wantFailed bool
	}{
		{"clean", 0, false},
		{"corrupt once, healed by refetch", 1, false},
		{"corrupt always", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource()
			f := src.add("w.safetensors", 3*testChunk, 3)
			src.corrupt[f.Path] = tc.corrupt
			c := newTestCache(t, t.TempDir())
			o, _ := c.Object("test", f, src)
			p := make([]byte, f.Size)
			o.ReadAt(context.Background(), p, 0)
			waitFor(t, "a verdict", func() bool { return o.Done() || o.Failed() })
			if o.Failed() != tc.wantFailed {
				t.Fatalf("failed = %v, want %v (%+v)", o.Failed(), tc.wantFailed, o.Stats())
			}
			_, err := o.ReadAt(context.Background(), p, 0)
			if tc.wantFailed {
				if !errors.Is(err, ErrBadContent) {
					t.Fatalf("read after failed verification: err = %v, want ErrBadContent", err)
				}
				return
			}
			if err != nil || !bytes.Equal(p, src.content(f.Path)) {
				t.Fatalf("read after verification: err=%v, bytes equal=%v", err, bytes.Equal(p, src.content(f.Path)))
			}
		})
	}
}

func TestRestartServesCachedChunksWithoutOrigin(t *testing.T) {
	dir := t.TempDir()
	src := newFakeSource()
	f := src.add("x.bin", 3*testChunk, 4)
	c1, _ := Open(Options{Dir: dir, ChunkSize: testChunk, ReadaheadMax: -1})
	o1, _ := c1.Object("test", f, src)
	p := make([]byte, testChunk)
	if _, err := o1.ReadAt(context.Background(), p, testChunk); err != nil {
		t.Fatal(err)
	}
	c1.Close()
	// Append a torn record (a crash mid-append): it must be ignored.
	key := ObjectKey("test", f)
	lf, _ := os.OpenFile(filepath.Join(dir, "objects", key[:2], key+".chunks"), os.O_WRONLY|os.O_APPEND, 0)
	lf.Write([]byte{2, 0})
	lf.Close()

	src.failN = 1 << 30 // the origin is gone
	c2 := newTestCache(t, dir)
	o2, _ := c2.Object("test", f, src)
	q := make([]byte, testChunk)
	if _, err := o2.ReadAt(context.Background(), q, testChunk); err != nil || !bytes.Equal(p, q) {
		t.Fatalf("cached chunk after restart: err=%v equal=%v", err, bytes.Equal(p, q))
	}
	if !o2.Present(1) || o2.Present(2) || o2.Present(0) {
		t.Fatal("presence after restart is wrong")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := o2.ReadAt(ctx, q, 0); err == nil {
		t.Fatal("uncached chunk with the origin gone should fail")
	}
}

func TestStalledOriginFailsWithinReadDeadline(t *testing.T) {
	src := newFakeSource()
	f := src.add("s.bin", testChunk, 5)
	src.stall = time.Hour
	c := newTestCache(t, t.TempDir())
	o, _ := c.Object("test", f, src)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := o.ReadAt(ctx, make([]byte, 10), 0)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("read took %s despite a 100ms deadline", d)
	}
}

func TestZeroByteFile(t *testing.T) {
	src := newFakeSource()
	f := src.add("empty.txt", 0, 6)
	c := newTestCache(t, t.TempDir())
	o, _ := c.Object("test", f, src)
	n, err := o.ReadAt(context.Background(), make([]byte, 10), 0)
	if n != 0 || err != nil {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	waitFor(t, "verification", o.Done)
	if src.reads.Load() != 0 {
		t.Fatal("a zero-byte file needs no fetch")
	}
}

// TestCacheFileBytesWithAndWithoutDirectIO fills a file through both write
// paths (O_DIRECT where the filesystem takes it, buffered otherwise) and
// checks the cache file itself, byte for byte, and its verdict. The size
// leaves a last chunk that is not a multiple of the page size, which always
// takes the buffered path.
func TestCacheFileBytesWithAndWithoutDirectIO(t *testing.T) {
	for _, tc := range []struct {
		name     string
		buffered bool
	}{
		{"direct", false},
		{"buffered", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource()
			size := 3*testChunk + 4321
			f := src.add("model.safetensors", size, 9)
			c := openTestCache(t, Options{ChunkSize: testChunk, RangeSize: 16 << 10, ReadaheadMax: -1, DirectWrites: !tc.buffered})
			o := testObject(t, c, f, src)
			if !tc.buffered && !o.chunks.Direct() {
				t.Log("this filesystem refused O_DIRECT: only the buffered fallback ran")
			}
			if tc.buffered && o.chunks.Direct() {
				t.Fatal("DirectWrites unset, yet the cache file was opened O_DIRECT")
			}
			for idx := 0; idx < o.NumChunks(); idx++ {
				if err := o.Ensure(context.Background(), idx); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "verification", o.Done)
			got, err := os.ReadFile(o.chunks.Path())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, src.content(f.Path)) {
				t.Fatal("cache file differs from the origin")
			}
			// Reads of the stored chunks, at unaligned offsets and up
			// to the file's unaligned end (O_DIRECT reads with
			// DirectWrites, buffered or spliced otherwise).
			for _, r := range []struct{ off, n int }{{0, 1}, {5, 4096}, {testChunk + 123, 10000}, {size - 999, 999}} {
				data, sec, done, err := o.ReadRef(context.Background(), make([]byte, r.n), int64(r.off))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := refBytes(t, data, sec)
				if !bytes.Equal(b, got[r.off:r.off+r.n]) {
					t.Fatalf("%d bytes at %d differ from the origin's", r.n, r.off)
				}
				if done != nil {
					done()
				}
			}
		})
	}
}
