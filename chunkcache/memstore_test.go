package chunkcache

import (
	"sync"
	"testing"

	"github.com/weightfs/weightfs/chunkcache/store"
)

// memStore is a chunk store in memory: the scheduler's tests run on it
// with no disk (and no mount), and see what was put, in which order.
type memStore struct {
	chunk int64
	mu    sync.Mutex
	files map[string]*memChunks // GUARDED_BY(mu)
}

var (
	_ store.Store  = (*memStore)(nil)
	_ store.Chunks = (*memChunks)(nil)
)

func newMemStore(chunk int64) *memStore {
	return &memStore{chunk: chunk, files: map[string]*memChunks{}}
}

func (s *memStore) Open(key string, size int64) (store.Chunks, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.files[key]; ok && int64(len(f.data)) == size {
		return f, nil
	}
	n := int((size + s.chunk - 1) / s.chunk)
	f := &memChunks{chunk: s.chunk, data: make([]byte, size), present: make([]bool, n)}
	s.files[key] = f
	return f, nil
}

func (s *memStore) Close() {}

type memChunks struct {
	chunk    int64
	mu       sync.Mutex
	data     []byte // GUARDED_BY(mu)
	present  []bool // GUARDED_BY(mu)
	count    int    // GUARDED_BY(mu)
	verified bool   // GUARDED_BY(mu)
	puts     []int  // GUARDED_BY(mu): chunk indices, in the order they were put
	drops    int    // GUARDED_BY(mu)
}

func (f *memChunks) Present(idx int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return idx >= 0 && idx < len(f.present) && f.present[idx]
}

func (f *memChunks) Count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}

// Get hands out a copy: a piece must not change while it is held.
func (f *memChunks) Get(idx int, within int64, n int) (store.Piece, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	off := int64(idx)*f.chunk + within
	return store.Piece{Data: append([]byte(nil), f.data[off:off+int64(n)]...), N: n}, "memory"
}

func (f *memChunks) Put(idx int, buf []byte, toMem bool) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	copy(f.data[int64(idx)*f.chunk:], buf)
	if !f.present[idx] {
		f.present[idx] = true
		f.count++
	}
	f.puts = append(f.puts, idx)
	return false, nil
}

func (f *memChunks) ReadStored(b []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return copy(b, f.data[off:]), nil
}

func (f *memChunks) Drop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.present)
	f.count, f.verified = 0, false
	f.drops++
}

func (f *memChunks) Punch() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.data)
}

func (f *memChunks) Verified() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.verified
}

func (f *memChunks) MarkVerified() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.verified = true
}

func (f *memChunks) Direct() bool { return false }
func (f *memChunks) Path() string { return "" }
func (f *memChunks) Close()       {}

func (f *memChunks) dropCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.drops
}

// putsOf is how often each chunk was put.
func (f *memChunks) putsOf(idx int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, i := range f.puts {
		if i == idx {
			n++
		}
	}
	return n
}

// fakeCache is a Cache over a memStore; closeAtEnd closes it when the test
// ends (a test of Close closes it itself).
func fakeCache(t *testing.T, o Options, closeAtEnd bool) (*Cache, *memStore) {
	t.Helper()
	o, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	st := newMemStore(o.ChunkSize)
	c := newCache(o, st, nil)
	if closeAtEnd {
		t.Cleanup(func() { c.Close() })
	}
	return c, st
}

func memChunksOf(o *Object) *memChunks { return o.chunks.(*memChunks) }
