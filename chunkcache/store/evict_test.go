package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// openChunks is Dir.Open (which applies tombstones) as a *File.
func openChunks(t *testing.T, d *Dir, key string, size int64) *File {
	t.Helper()
	c, err := d.Open(key, size)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*File)
}

func allocated(t *testing.T, f *File) int64 {
	t.Helper()
	n, err := f.Allocated()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Evict releases the chunk's blocks, forgets it (memory copy and verified
// mark too) and records it absent, so it is absent after a restart; the
// others keep their bytes, and a chunk put again after its eviction is
// present after a restart.
func TestEvictPunchesAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	content := randBytes(4*testChunk+100, 5)
	d1 := openTestDir(t, dir, Options{MemoryBytes: 1 << 20})
	f1 := openChunks(t, d1, "ab05", int64(len(content)))
	for idx := 0; idx < 5; idx++ {
		if _, err := f1.Put(idx, chunkOf(content, idx), true); err != nil {
			t.Fatal(err)
		}
	}
	f1.MarkVerified()
	before := allocated(t, f1)
	if err := f1.Evict(1); err != nil {
		t.Fatal(err)
	}
	if err := f1.Evict(4); err != nil { // the short last chunk
		t.Fatal(err)
	}
	if err := f1.Evict(1); err != nil { // absent already: nothing to do
		t.Fatal(err)
	}
	if f1.Present(1) || f1.Present(4) || f1.Count() != 3 || f1.Verified() {
		t.Fatalf("after Evict: present %v %v, count %d, verified %v", f1.Present(1), f1.Present(4), f1.Count(), f1.Verified())
	}
	if after := allocated(t, f1); after > before-testChunk {
		t.Fatalf("allocated %d after evicting a chunk, %d before: its blocks were not released", after, before)
	}
	b := make([]byte, testChunk)
	if _, err := f1.ReadStored(b, testChunk); err != nil || !bytes.Equal(b, make([]byte, testChunk)) {
		t.Fatalf("evicted chunk's range: err %v, zero %v", err, bytes.Equal(b, make([]byte, testChunk)))
	}
	if pc, _ := f1.Get(0, 0, testChunk); !bytes.Equal(pieceBytes(t, pc), chunkOf(content, 0)) {
		t.Fatal("a chunk beside the evicted one changed")
	}
	if st, err := os.Stat(f1.Path()); err != nil || st.Size() != int64(len(content)) {
		t.Fatalf("data file after Evict: %v, %v; want its size kept", st, err)
	}
	// Put again after the eviction: a memory copy of the old epoch must not
	// come back, and the new bytes are what is served.
	if _, err := f1.Put(4, chunkOf(content, 4), false); err != nil {
		t.Fatal(err)
	}
	f1.Close()

	d2 := openTestDir(t, dir, Options{MemoryBytes: -1})
	f2 := openChunks(t, d2, "ab05", int64(len(content)))
	defer f2.Close()
	want := []bool{true, false, true, true, true}
	for idx, p := range want {
		if f2.Present(idx) != p {
			t.Fatalf("after restart chunk %d present %v, want %v", idx, f2.Present(idx), p)
		}
	}
	if f2.Count() != 4 || f2.Verified() {
		t.Fatalf("after restart: count %d, verified %v; want 4, false", f2.Count(), f2.Verified())
	}
	for _, idx := range []int{0, 2, 3, 4} {
		if pc, _ := f2.Get(idx, 0, len(chunkOf(content, idx))); !bytes.Equal(pieceBytes(t, pc), chunkOf(content, idx)) {
			t.Fatalf("chunk %d differs after restart", idx)
		}
	}
}

// A log of the format before tombstones reads as it did; one with
// tombstones read by OpenFile alone (what an older binary does) ignores
// them rather than misreading them as other chunks.
func TestTombstonesAreCompatible(t *testing.T) {
	dir := t.TempDir()
	content := randBytes(3*testChunk, 6)
	d := openTestDir(t, dir, Options{MemoryBytes: -1})
	f := openChunks(t, d, "cd06", int64(len(content)))
	for idx := 0; idx < 3; idx++ {
		f.Put(idx, chunkOf(content, idx), false)
	}
	f.Close()
	raw, _ := os.ReadFile(filepath.Join(dir, "objects", "cd", "cd06.chunks"))
	if len(raw) != 12 || binary.LittleEndian.Uint32(raw[8:]) != 2 {
		t.Fatalf("presence log %x: want three plain records", raw)
	}
	f = openChunks(t, d, "cd06", int64(len(content)))
	if f.Count() != 3 {
		t.Fatalf("count %d after reopening a plain log", f.Count())
	}
	f.Evict(0)
	f.Close()
	old := openTestFile(t, d, "cd06", int64(len(content))) // no tombstones applied
	if old.Count() != 3 {
		t.Fatalf("a reader ignoring tombstones counts %d chunks, want the 3 plain records", old.Count())
	}
	old.Close()
	f = openChunks(t, d, "cd06", int64(len(content)))
	defer f.Close()
	if f.Present(0) || f.Count() != 2 {
		t.Fatalf("with tombstones: chunk 0 present %v, count %d", f.Present(0), f.Count())
	}
}

// A cache that keeps evicting and refetching does not grow the presence
// log without bound: it is compacted, and reads the same after.
func TestLogCompacts(t *testing.T) {
	dir := t.TempDir()
	const chunk = 4096
	content := randBytes(4*chunk, 7)
	d := openTestDir(t, dir, Options{MemoryBytes: -1, ChunkSize: chunk})
	f := openChunks(t, d, "ef07", int64(len(content)))
	put := func(idx int) {
		if _, err := f.Put(idx, content[idx*chunk:(idx+1)*chunk], false); err != nil {
			t.Fatal(err)
		}
	}
	put(0)
	put(3)
	for i := 0; i < 2000; i++ {
		put(1)
		if err := f.Evict(1); err != nil {
			t.Fatal(err)
		}
	}
	put(2)
	f.Close()
	st, err := os.Stat(filepath.Join(dir, "objects", "ef", "ef07.chunks"))
	if err != nil || st.Size() > 4*(4*4+1024+2) {
		t.Fatalf("presence log %v, %v: not compacted", st.Size(), err)
	}
	f = openChunks(t, d, "ef07", int64(len(content)))
	defer f.Close()
	for idx, p := range []bool{true, false, true, true} {
		if f.Present(idx) != p {
			t.Fatalf("after compaction chunk %d present %v, want %v", idx, f.Present(idx), p)
		}
	}
}

// PunchAbsent releases blocks that no present chunk owns (a crash between
// a write and its log record); Stored and Remove list and delete objects.
func TestPunchAbsentStoredRemove(t *testing.T) {
	dir := t.TempDir()
	content := randBytes(3*testChunk, 8)
	d := openTestDir(t, dir, Options{MemoryBytes: -1})
	f := openChunks(t, d, "aa08", int64(len(content)))
	f.Put(0, chunkOf(content, 0), false)
	if err := os.WriteFile(f.Path()+".x", nil, 0o600); err != nil { // not an object
		t.Fatal(err)
	}
	// Bytes of chunk 2 without a record, as a crash leaves them.
	if _, err := f.data.WriteAt(chunkOf(content, 2), 2*testChunk); err != nil {
		t.Fatal(err)
	}
	if a := allocated(t, f); a < 2*testChunk {
		t.Fatalf("allocated %d: the stray write took no blocks", a)
	}
	if err := f.PunchAbsent(); err != nil {
		t.Fatal(err)
	}
	if a := allocated(t, f); a > testChunk+8192 {
		t.Fatalf("allocated %d after PunchAbsent; want about one chunk", a)
	}
	if pc, _ := f.Get(0, 0, testChunk); !bytes.Equal(pieceBytes(t, pc), chunkOf(content, 0)) {
		t.Fatal("PunchAbsent touched a present chunk")
	}
	f.Close()
	objs, err := d.Stored()
	if err != nil || len(objs) != 1 || objs[0].Key != "aa08" || objs[0].Size != int64(len(content)) || objs[0].Allocated < testChunk || objs[0].Used.IsZero() {
		t.Fatalf("Stored = %+v, %v", objs, err)
	}
	if err := d.Remove("aa08"); err != nil {
		t.Fatal(err)
	}
	if objs, err := d.Stored(); err != nil || len(objs) != 0 {
		t.Fatalf("after Remove: %+v, %v", objs, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "objects", "aa", "aa08.chunks")); !os.IsNotExist(err) {
		t.Fatalf("presence log left after Remove: %v", err)
	}
}

// Evicting a chunk the in-order hash took in rewinds the hash: the chunk
// put again (other bytes here, as a corrupt refetch would be) is what the
// hash handed over covers, never the bytes evicted.
func TestEvictRewindsInOrderHash(t *testing.T) {
	d := openTestDir(t, t.TempDir(), Options{MemoryBytes: -1})
	content := randBytes(3*testChunk, 9)
	f := openChunks(t, d, "ab09", int64(len(content)))
	defer f.Close()
	f.HashInOrder(sha256.New)
	for idx := 0; idx < 3; idx++ {
		if _, err := f.Put(idx, chunkOf(content, idx), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Evict(1); err != nil {
		t.Fatal(err)
	}
	other := randBytes(testChunk, 10)
	if _, err := f.Put(1, other, false); err != nil {
		t.Fatal(err)
	}
	h, off := f.TakeHash()
	onDisk := make([]byte, len(content))
	if _, err := f.ReadStored(onDisk, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk[testChunk:2*testChunk], other) {
		t.Fatal("the chunk put again is not on disk")
	}
	want := sha256.Sum256(onDisk[:off])
	if h == nil {
		if off != 0 {
			t.Fatalf("no hash, but off %d", off)
		}
		return
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("the in-order hash of the first %d bytes is not of the bytes on disk", off)
	}
}
