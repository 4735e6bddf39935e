package store

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

const testChunk = 64 << 10

// These tests use no origin: the store is told what to put and checked on
// what it gives back.

func openTestDir(t *testing.T, dir string, o Options) *Dir {
	t.Helper()
	o.Dir = dir
	if o.ChunkSize == 0 {
		o.ChunkSize = testChunk
	}
	d, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func openTestFile(t *testing.T, d *Dir, key string, size int64) *File {
	t.Helper()
	f, err := d.OpenFile(key, size)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func randBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 3))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// chunkOf is chunk idx of content, as the scheduler would fetch it.
func chunkOf(content []byte, idx int) []byte {
	end := min((idx+1)*testChunk, len(content))
	return bytes.Clone(content[idx*testChunk : end])
}

// pieceBytes resolves a Piece into its bytes.
func pieceBytes(t *testing.T, pc Piece) []byte {
	t.Helper()
	if pc.Data != nil {
		return pc.Data
	}
	b := make([]byte, pc.N)
	if _, err := pc.File.ReadAt(b, pc.Off); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPutGetBytesAndTiers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     Options
		toMem    bool
		wantTier string
		wantFile bool // served as a section of the data file
	}{
		{"buffered, to disk", Options{MemoryBytes: -1}, false, "disk", true},
		{"buffered, memory tier", Options{MemoryBytes: 1 << 20}, true, "memory", false},
		{"memory tier disabled", Options{MemoryBytes: -1}, true, "disk", true},
		{"O_DIRECT where the filesystem takes it", Options{MemoryBytes: -1, DirectWrites: true}, false, "disk", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := openTestDir(t, t.TempDir(), tc.opts)
			size := 3*testChunk + 4321
			content := randBytes(size, 1)
			f := openTestFile(t, d, "ab01", int64(size))
			defer f.Close()
			if tc.opts.DirectWrites && !f.Direct() {
				t.Log("this filesystem refused O_DIRECT: only the buffered fallback ran")
				tc.wantFile = true
			}
			for idx := 0; idx < 4; idx++ {
				if f.Present(idx) {
					t.Fatalf("chunk %d present before any put", idx)
				}
				if _, err := f.Put(idx, chunkOf(content, idx), tc.toMem); err != nil {
					t.Fatal(err)
				}
				if !f.Present(idx) || f.Count() != idx+1 {
					t.Fatalf("after put %d: present %v, count %d", idx, f.Present(idx), f.Count())
				}
			}
			for _, r := range []struct {
				idx    int
				within int64
				n      int
			}{{0, 0, 1}, {0, 5, 4096}, {1, 123, 10000}, {3, 4321 - 999, 999}} {
				pc, tier := f.Get(r.idx, r.within, r.n)
				if tier != tc.wantTier {
					t.Errorf("chunk %d served from %q, want %q", r.idx, tier, tc.wantTier)
				}
				if (pc.Data == nil) != tc.wantFile {
					t.Errorf("chunk %d: file section %v, want %v", r.idx, pc.Data == nil, tc.wantFile)
				}
				off := int64(r.idx)*testChunk + r.within
				if got := pieceBytes(t, pc); !bytes.Equal(got, content[off:off+int64(r.n)]) {
					t.Fatalf("%d bytes at %d differ from what was put", r.n, off)
				}
				pc.Release()
			}
			got, err := os.ReadFile(f.Path())
			if err != nil || !bytes.Equal(got, content) {
				t.Fatalf("data file differs from what was put (err %v)", err)
			}
			b := make([]byte, size)
			if n, err := f.ReadStored(b, 0); n != size || (err != nil && n != size) || !bytes.Equal(b, content) {
				t.Fatalf("ReadStored = %d, %v; bytes equal %v", n, err, bytes.Equal(b, content))
			}
		})
	}
}

// Presence and the verified mark survive a restart; a torn last record of
// the presence log (a crash mid-append) is ignored; a data file of another
// size is another object and starts over. Fails before this change: the
// records appended after a torn one were read askew (count 2 after all 3
// chunks were put, and an index made of two records' bytes could mark a
// chunk present that was never written).
func TestReopenKeepsPresence(t *testing.T) {
	dir := t.TempDir()
	content := randBytes(3*testChunk, 2)
	d1 := openTestDir(t, dir, Options{MemoryBytes: -1})
	f1 := openTestFile(t, d1, "cd02", int64(len(content)))
	if _, err := f1.Put(1, chunkOf(content, 1), false); err != nil {
		t.Fatal(err)
	}
	f1.Close()
	lf, err := os.OpenFile(filepath.Join(dir, "objects", "cd", "cd02.chunks"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	lf.Write([]byte{2, 0})
	lf.Close()

	d2 := openTestDir(t, dir, Options{MemoryBytes: -1})
	f2 := openTestFile(t, d2, "cd02", int64(len(content)))
	if !f2.Present(1) || f2.Present(0) || f2.Present(2) || f2.Count() != 1 {
		t.Fatalf("presence after restart: %v %v %v, count %d; want only chunk 1", f2.Present(0), f2.Present(1), f2.Present(2), f2.Count())
	}
	pc, _ := f2.Get(1, 0, testChunk)
	if !bytes.Equal(pieceBytes(t, pc), chunkOf(content, 1)) {
		t.Fatal("chunk 1 after restart differs")
	}
	for idx := 0; idx < 3; idx++ {
		f2.Put(idx, chunkOf(content, idx), false)
	}
	f2.MarkVerified()
	f2.Close()

	f3 := openTestFile(t, d2, "cd02", int64(len(content)))
	if !f3.Verified() || f3.Count() != 3 {
		t.Fatalf("after restart: verified %v, count %d; want the mark and 3 chunks", f3.Verified(), f3.Count())
	}
	f3.Close()
	f4 := openTestFile(t, d2, "cd02", int64(len(content))+1)
	defer f4.Close()
	if f4.Verified() || f4.Count() != 0 {
		t.Fatalf("another size: verified %v, count %d; want a fresh object", f4.Verified(), f4.Count())
	}
}

// Drop forgets presence, the mark and the memory copies, but keeps the
// bytes for healing to compare against until Punch zeroes them; the file
// keeps its size throughout, so a racing read is never short.
func TestDropThenPunch(t *testing.T) {
	d := openTestDir(t, t.TempDir(), Options{MemoryBytes: 1 << 20})
	content := randBytes(2*testChunk, 3)
	f := openTestFile(t, d, "ef03", int64(len(content)))
	defer f.Close()
	for idx := 0; idx < 2; idx++ {
		if _, err := f.Put(idx, chunkOf(content, idx), true); err != nil {
			t.Fatal(err)
		}
	}
	f.MarkVerified()
	f.Drop()
	if f.Present(0) || f.Present(1) || f.Count() != 0 || f.Verified() {
		t.Fatalf("after Drop: present %v %v, count %d, verified %v", f.Present(0), f.Present(1), f.Count(), f.Verified())
	}
	b := make([]byte, len(content))
	if _, err := f.ReadStored(b, 0); err != nil || !bytes.Equal(b, content) {
		t.Fatalf("ReadStored after Drop: %v; the failed copy must stay for healing", err)
	}
	// A new copy put after the drop is what Get serves, never the memory
	// tier's copy of the old one.
	other := randBytes(testChunk, 4)
	if _, err := f.Put(0, other, true); err != nil {
		t.Fatal(err)
	}
	if pc, _ := f.Get(0, 0, testChunk); !bytes.Equal(pieceBytes(t, pc), other) {
		t.Fatal("Get served the dropped copy")
	}
	f.Punch()
	if _, err := f.ReadStored(b, 0); err != nil || !bytes.Equal(b, make([]byte, len(b))) {
		t.Fatalf("after Punch: err %v, bytes zero %v", err, bytes.Equal(b, make([]byte, len(b))))
	}
	if st, err := os.Stat(f.Path()); err != nil || st.Size() != int64(len(content)) {
		t.Fatalf("data file after Punch: %v, %v; want its size kept", st, err)
	}
}

// Fails before this change (in chunkcache): dirs were 0755 and files 0644.
func TestStoreIsPrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "cache")
	d := openTestDir(t, dir, Options{MemoryBytes: -1})
	f := openTestFile(t, d, "ab04", testChunk)
	f.Put(0, randBytes(testChunk, 5), false)
	f.MarkVerified()
	f.Close()
	n := 0
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		n++
		want := PrivateFile
		if fi.IsDir() {
			want = PrivateDir
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if n != 6 { // cache, objects, ab, .data, .chunks, .ok
		t.Fatalf("walked %d entries, want 6", n)
	}
}

func TestImpossibleObjectsRefused(t *testing.T) {
	d := openTestDir(t, t.TempDir(), Options{MemoryBytes: -1})
	for _, tc := range []struct {
		key  string
		size int64
	}{{"ab05", -1}, {"a", 10}} {
		if f, err := d.OpenFile(tc.key, tc.size); err == nil {
			f.Close()
			t.Errorf("key %q size %d: opened", tc.key, tc.size)
		}
	}
	f := openTestFile(t, d, "ab06", 10)
	defer f.Close()
	if _, err := f.Put(1, []byte{1}, false); err == nil {
		t.Error("put of a chunk past the end succeeded")
	}
}
