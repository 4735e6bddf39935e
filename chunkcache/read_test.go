package chunkcache

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weightfs/weightfs/fetch"
)

// refBytes resolves what ReadRef returned into bytes, and says which form
// it came in.
func refBytes(t *testing.T, data []byte, sec *io.SectionReader) ([]byte, string) {
	t.Helper()
	if sec == nil {
		return data, "memory"
	}
	if _, ok := func() (io.ReaderAt, bool) { r, _, _ := sec.Outer(); _, ok := r.(*os.File); return r, ok }(); !ok {
		t.Fatal("section is not of a file: the fs layer could not splice it")
	}
	b := make([]byte, sec.Size())
	if _, err := sec.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return b, "file"
}

func TestReadRefAvoidsCopies(t *testing.T) {
	src := newFakeSource()
	size := 4*testChunk + 77
	f := src.add("model.safetensors", size, 3)
	want := src.content(f.Path)
	c := newTestCache(t, t.TempDir())
	o := testObject(t, c, f, src)
	// Chunk 2 lands on disk before anyone reads it (prefetch).
	if err := o.Ensure(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "chunk 2 stored", func() bool { return o.Present(2) })
	for _, tc := range []struct {
		name     string
		off, n   int
		wantForm string // memory: a buffer or dest; file: a section to splice
		wantLen  int
	}{
		{"missing chunk: served from the fetch buffer", 10, 100, "memory", 100},
		{"same chunk again: memory tier", 500, 100, "memory", 100},
		{"prefetched chunk: section of the cache file", 2*testChunk + 5, 1000, "file", 1000},
		{"across chunks: copied into dest", testChunk - 50, 100, "memory", 100},
		{"short at end of file", size - 7, 100, "memory", 7},
		{"at end of file", size, 10, "memory", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, sec, done, err := o.ReadRef(context.Background(), make([]byte, tc.n), int64(tc.off))
			if err != nil {
				t.Fatal(err)
			}
			if done != nil {
				defer done()
			}
			got, form := refBytes(t, data, sec)
			if form != tc.wantForm {
				t.Errorf("answered from %s, want %s", form, tc.wantForm)
			}
			if len(got) != tc.wantLen || !bytes.Equal(got, want[tc.off:tc.off+tc.wantLen]) {
				t.Fatalf("got %d bytes that differ from the origin's", len(got))
			}
		})
	}
}

// TestRecycledBuffersNeverReachReaders holds on to every buffer ReadRef
// lends while background fetches churn through the pool, and checks the
// bytes again just before handing it back: a buffer reused while lent would
// by then hold some other chunk's bytes.
func TestRecycledBuffersNeverReachReaders(t *testing.T) {
	src := newFakeSource()
	src.stall = time.Millisecond
	size := 64 * testChunk
	f := src.add("model.safetensors", size, 4)
	want := src.content(f.Path)
	c := openTestCache(t, Options{ChunkSize: testChunk, RangeSize: 16 << 10, MemoryBytes: -1, ReadaheadMax: -1})
	o := testObject(t, c, f, src)
	churn, _ := c.Object("test", src.add("other", 64*testChunk, 5), src)
	var lent atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ { // background fetches, buffers recycled
		wg.Add(1)
		go func() {
			defer wg.Done()
			for idx := w; idx < 64; idx += 4 {
				o.Ensure(context.Background(), idx)
				churn.Ensure(context.Background(), idx)
			}
		}()
	}
	for r := 0; r < 4; r++ { // readers holding what they were lent
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			for i := 0; i < 200; i++ {
				off := rng.IntN(size - 4096)
				data, _, done, err := o.ReadRef(context.Background(), make([]byte, 4096), int64(off))
				if err != nil {
					t.Error(err)
					return
				}
				if done == nil {
					continue // copied, or a file section: nothing lent
				}
				time.Sleep(200 * time.Microsecond) // a reply on its way
				if !bytes.Equal(data, want[off:off+len(data)]) {
					t.Errorf("bytes lent at offset %d changed before they were handed back: a buffer was reused while lent", off)
				}
				done()
				lent.Add(1)
			}
		}()
	}
	wg.Wait()
	if lent.Load() == 0 {
		t.Fatal("no read was answered with a lent buffer; the test checks nothing")
	}
}

// TestEnsureReturnsOnceStored: a background fetch holds its buffer until
// the chunk is on disk, which is what bounds the daemon's memory by its
// workers; so when Ensure returns the chunk must be present.
func TestEnsureReturnsOnceStored(t *testing.T) {
	src := newFakeSource()
	f := src.add("model.safetensors", 8*testChunk, 11)
	c := newTestCache(t, t.TempDir())
	o := testObject(t, c, f, src)
	for idx := 0; idx < o.NumChunks(); idx++ {
		if err := o.Ensure(context.Background(), idx); err != nil {
			t.Fatal(err)
		}
		if !o.Present(idx) {
			t.Fatalf("Ensure(%d) returned before the chunk was stored", idx)
		}
	}
}

// TestVerificationFinishesWhileClientsRead: the verifier slows down while
// clients read, but must not starve: a file completed under a reader that
// never stops still gets its verdict.
func TestVerificationFinishesWhileClientsRead(t *testing.T) {
	src := newFakeSource()
	size := 16 * testChunk
	f := src.add("model.safetensors", size, 12)
	c := newTestCache(t, t.TempDir())
	o := testObject(t, c, f, src)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a client reading without pause, so the cache stays busy
		p := make([]byte, 4096)
		for off := int64(0); ; off = (off + 4096) % int64(size) {
			select {
			case <-stop:
				return
			default:
			}
			o.ReadAt(context.Background(), p, off)
		}
	}()
	var seen int64
	c.busySince(&seen)
	waitFor(t, "the cache to look busy", func() bool { return c.busySince(&seen) })
	waitFor(t, "verification under constant reads", o.Done)
	if s := o.Stats(); !s.Verified {
		t.Fatalf("stats = %+v", s)
	}
}

// gatedSource holds every ranged read that starts at or after from until
// open is closed.
type gatedSource struct {
	*fakeSource
	from int64
	open chan struct{}
}

func (g *gatedSource) ReadRange(ctx context.Context, f fetch.File, off int64, p []byte) error {
	if off >= g.from {
		select {
		case <-g.open:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.fakeSource.ReadRange(ctx, f, off, p)
}

// TestReadersServedFromArrivedParts: a reader waits only for the ranges of
// a chunk that hold its bytes, so a header is served one range after the
// request, whatever the rest of its chunk is doing.
func TestReadersServedFromArrivedParts(t *testing.T) {
	const chunk = 4 << 20
	for _, tc := range []struct {
		name      string
		held      int64 // ranged reads starting here or later are held
		off, n    int64
		wantEarly bool // served while the held reads are still held
	}{
		{"header: first bytes of a file", headRange, 0, 4096, true},
		{"tensor starting mid-chunk", chunk + 1<<20, chunk + 600<<10, 100 << 10, true},
		{"read reaching into a held range waits", headRange, 0, headRange + 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &gatedSource{fakeSource: newFakeSource(), from: tc.held, open: make(chan struct{})}
			f := src.add("model.safetensors", 2*chunk, 13)
			want := src.content(f.Path)[tc.off : tc.off+tc.n]
			c := openTestCache(t, Options{ChunkSize: chunk, RangeSize: 1 << 20, FetchTimeout: 10 * time.Second, ReadaheadMax: -1})
			release := sync.OnceFunc(func() { close(src.open) })
			defer release()
			o := testObject(t, c, f, src)
			type result struct {
				got []byte
				err error
			}
			res := make(chan result, 1)
			go func() {
				data, sec, done, err := o.ReadRef(context.Background(), make([]byte, tc.n), tc.off)
				var got []byte
				if err == nil {
					got, _ = refBytes(t, data, sec)
					got = bytes.Clone(got)
				}
				if done != nil {
					done()
				}
				res <- result{got, err}
			}()
			var r result
			if tc.wantEarly {
				select {
				case r = <-res:
				case <-time.After(5 * time.Second):
					t.Fatal("the read waited for ranges that do not hold its bytes")
				}
			} else {
				select {
				case r = <-res:
					t.Fatalf("the read returned (err %v) before all of its bytes had arrived", r.err)
				case <-time.After(100 * time.Millisecond):
				}
				release()
				r = <-res
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			if !bytes.Equal(r.got, want) {
				t.Fatalf("got %d bytes that differ from the origin's", len(r.got))
			}
		})
	}
}
