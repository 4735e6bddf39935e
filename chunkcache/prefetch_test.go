package chunkcache

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weightfs/weightfs/fetch"
)

func TestNaturalLess(t *testing.T) {
	in := []string{"layers.10.w", "layers.2.w", "layers.1.w", "embed", "layers.02.x", "a10b", "a9b", "a10a"}
	sort.Slice(in, func(i, j int) bool { return naturalLess(in[i], in[j]) })
	want := "a9b,a10a,a10b,embed,layers.1.w,layers.2.w,layers.02.x,layers.10.w"
	if got := strings.Join(in, ","); got != want {
		t.Fatalf("natural order:\n got %s\nwant %s", got, want)
	}
}

// safetensorsBytes builds a file with tensors of the given sizes, laid out
// in plain string order of their names, as the Rust writer does.
func safetensorsBytes(tensors map[string]int) []byte {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	hdr := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	off := 0
	for _, n := range names {
		hdr[n] = map[string]any{"dtype": "U8", "shape": []int{tensors[n]}, "data_offsets": []int{off, off + tensors[n]}}
		off += tensors[n]
	}
	h, _ := json.Marshal(hdr)
	for (8+len(h))%8 != 0 {
		h = append(h, ' ')
	}
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(h)))
	b.Write(h)
	data := make([]byte, off)
	for i := range data {
		data[i] = byte(i * 7)
	}
	b.Write(data)
	return b.Bytes()
}

// orderSource records the order of range reads and can hold reads of
// chosen files until released.
type orderSource struct {
	*fakeSource
	mu    sync.Mutex
	log   []string // "path@chunk"
	gates map[string]chan struct{}
	delay time.Duration
}

func (s *orderSource) ReadRange(ctx context.Context, f fetch.File, off int64, p []byte) error {
	s.mu.Lock()
	s.log = append(s.log, fmt.Sprintf("%s@%d", f.Path, off/testChunk))
	gate := s.gates[f.Path]
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	return s.fakeSource.ReadRange(ctx, f, off, p)
}

func (s *orderSource) count(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.log {
		if strings.HasPrefix(e, prefix) {
			n++
		}
	}
	return n
}

func (s *orderSource) addBytes(path string, b []byte) fetch.File {
	s.fakeSource.mu.Lock()
	s.files[path] = b
	s.fakeSource.mu.Unlock()
	sum, _ := fetch.Digest(fetch.AlgoSHA256, bytes.NewReader(b), int64(len(b)))
	return fetch.File{Path: path, Size: int64(len(b)), Checksum: fetch.Checksum{Algo: fetch.AlgoSHA256, Value: sum}}
}

func prefetchCache(t *testing.T, workers int) *Cache {
	t.Helper()
	return openTestCache(t, Options{ChunkSize: testChunk, RangeSize: testChunk, MaxWorkers: workers, ReadaheadMax: -1, FetchTimeout: 10 * time.Second})
}

func TestPrefetchCompletesWholeModelWithNobodyReading(t *testing.T) {
	src := &orderSource{fakeSource: newFakeSource()}
	// Two shards whose tensors interleave in natural order: the plan must
	// follow the weight_map's natural order, not file order.
	s1 := safetensorsBytes(map[string]int{"layers.1.w": 3 * testChunk, "layers.10.w": 3 * testChunk})
	s2 := safetensorsBytes(map[string]int{"layers.2.w": 3 * testChunk, "layers.3.w": 3 * testChunk})
	idx, _ := json.Marshal(map[string]any{"weight_map": map[string]string{
		"layers.1.w": "model-1.safetensors", "layers.10.w": "model-1.safetensors",
		"layers.2.w": "model-2.safetensors", "layers.3.w": "model-2.safetensors"}})
	files := []fetch.File{
		src.addBytes("model-1.safetensors", s1),
		src.addBytes("model-2.safetensors", s2),
		src.addBytes("model.safetensors.index.json", idx),
		src.addBytes("config.json", []byte(`{"a":1}`)),
	}
	c := prefetchCache(t, 1) // one worker: the order is observable
	var objs []*Object
	for _, f := range files {
		o, err := c.Object("t", f, src)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	p := c.StartPrefetch(context.Background(), objs)
	waitFor(t, "prefetch to complete", func() bool { return p.Progress().Complete })
	pr := p.Progress()
	if pr.CachedBytes != pr.TotalBytes || pr.FilesDone != 4 {
		t.Fatalf("progress = %+v", pr)
	}
	for _, o := range objs {
		got := make([]byte, o.file.Size)
		o.ReadAt(context.Background(), got, 0)
		if !bytes.Equal(got, src.content(o.file.Path)) {
			t.Fatalf("%s differs after prefetch", o.file.Path)
		}
	}
	// Order: small files first, then headers, then layers 1, 2, 3, 10.
	src.mu.Lock()
	order := strings.Join(src.log, " ")
	src.mu.Unlock()
	first := func(s string) int { return strings.Index(order, s) }
	if !(first("config.json") < first("model-1.safetensors@0") && first("model-2.safetensors@0") < first("model-1.safetensors@1")) {
		t.Errorf("small files and headers must come first: %s", order)
	}
	// layers.1.w ends in chunk 3 of shard 1; layers.2.w starts in chunk 0 of
	// shard 2; layers.10.w lies in chunks 3-6 of shard 1.
	if !(first("model-2.safetensors@1") < first("model-1.safetensors@5")) {
		t.Errorf("layers.2 must be fetched before layers.10 (natural order): %s", order)
	}
}

// readaheadCache is a cache with readahead on: a window of 2 chunks
// growing to 16.
func readaheadCache(t *testing.T) *Cache {
	t.Helper()
	return openTestCache(t, Options{ChunkSize: testChunk, RangeSize: testChunk, MaxWorkers: 4,
		ReadaheadMin: 2 * testChunk, ReadaheadMax: 16 * testChunk})
}

func TestSequentialReadsTriggerReadahead(t *testing.T) {
	src := &orderSource{fakeSource: newFakeSource()}
	f := src.add("seq.bin", 64*testChunk, 13)
	c := readaheadCache(t)
	o, _ := c.Object("t", f, src)
	p := make([]byte, testChunk/2)
	for off := int64(0); off < 4*testChunk; off += int64(len(p)) {
		if _, err := o.ReadAt(context.Background(), p, off); err != nil {
			t.Fatal(err)
		}
	}
	// After reading 4 chunks sequentially, the window has grown to 16
	// chunks: chunks well past the reader are fetched without being read.
	waitFor(t, "readahead", func() bool { return o.Present(12) })
	if o.Present(40) {
		t.Fatal("readahead went far past its window")
	}
}

// TestPlanningReadsAreNotClientReads: reading a shard's header to plan the
// prefetch must not look like a loader starting on that shard, or every
// shard's first stretch would be read ahead of the loader's order.
func TestPlanningReadsAreNotClientReads(t *testing.T) {
	src := &orderSource{fakeSource: newFakeSource()}
	f := src.addBytes("model-00002-of-00002.safetensors", safetensorsBytes(map[string]int{"a": 20 * testChunk, "b": 20 * testChunk}))
	c := readaheadCache(t)
	o, _ := c.Object("t", f, src)
	spans, err := readSpans(context.Background(), o)
	if err != nil || len(spans) != 2 {
		t.Fatalf("readSpans: %d spans, %v", len(spans), err)
	}
	time.Sleep(100 * time.Millisecond) // room for any readahead to start
	if n := src.count(f.Path + "@"); n != 1 {
		t.Errorf("planning read %d chunks, want only the header's", n)
	}
	if c.clientReads.Load() != 0 {
		t.Error("planning counted as a client read: background work would yield to it")
	}
}
