package store

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// File is one object's chunks on disk: Dir.OpenFile's Chunks.
type File struct {
	d       *Dir
	key     string
	size    int64
	nchunks int

	data   *os.File    // sparse file of size bytes
	direct *directFile // the same file opened O_DIRECT, or nil (see direct.go)
	logMu  sync.Mutex
	logf   *os.File // GUARDED_BY(logMu): little-endian uint32 chunk indices

	mu       sync.Mutex
	present  []bool // GUARDED_BY(mu)
	npresent int    // GUARDED_BY(mu)
	epoch    uint64 // GUARDED_BY(mu); bumped by Drop, so no dropped memory copy is served

	cur      hashCursor     // see inorder.go
	dropping sync.WaitGroup // page drops after a verdict (dropper.go); Close waits
}

// OpenFile is Open returning the concrete type.
func (d *Dir) OpenFile(key string, size int64) (*File, error) {
	if size < 0 || len(key) < 2 {
		return nil, fmt.Errorf("chunk store: object %q of size %d is impossible", key, size)
	}
	f := &File{d: d, key: key, size: size}
	f.cur.idle.L = &f.cur.mu
	f.nchunks = int((size + d.opts.ChunkSize - 1) / d.opts.ChunkSize)
	f.present = make([]bool, f.nchunks)
	dataPath := d.path(key, ".data")
	fail := func(err error) (*File, error) { return nil, DiskError(d.opts.Dir, err) }
	if err := os.MkdirAll(filepath.Dir(dataPath), PrivateDir); err != nil {
		return fail(err)
	}
	var err error
	if f.data, err = OpenPrivate(dataPath, os.O_RDWR|os.O_CREATE); err != nil {
		return fail(err)
	}
	st, err := f.data.Stat()
	if err != nil {
		f.data.Close()
		return fail(err)
	}
	if st.Size() != size {
		// A different size means a different (or torn) object: start over.
		if err := f.data.Truncate(0); err == nil {
			err = f.data.Truncate(size)
		}
		if err != nil {
			f.data.Close()
			return fail(err)
		}
		os.Remove(d.path(key, ".chunks"))
		os.Remove(d.path(key, ".ok"))
	}
	if f.logf, err = OpenPrivate(d.path(key, ".chunks"), os.O_RDWR|os.O_CREATE|os.O_APPEND); err != nil {
		f.data.Close()
		return fail(err)
	}
	if f.direct, err = openDirect(dataPath, size, d.opts.DirectWrites, !d.opts.NoReserve); err != nil {
		f.data.Close()
		f.logf.Close()
		return fail(err)
	}
	f.loadLog()
	return f, nil
}

// loadLog reads the presence log. A torn last record (crash mid-append) is
// ignored, so a chunk only counts once its index was fully written, which
// happens only after its bytes were; and it is cut off, or every record
// appended after it would be read askew (its two bytes and the next
// record's first two make an index whose chunk was never written).
func (f *File) loadLog() {
	b, err := io.ReadAll(f.logf)
	if err != nil {
		return
	}
	if torn := len(b) % 4; torn != 0 {
		b = b[:len(b)-torn]
		f.logf.Truncate(int64(len(b)))
	}
	for i := 0; i+4 <= len(b); i += 4 {
		idx := int(binary.LittleEndian.Uint32(b[i:]))
		if idx < f.nchunks && !f.present[idx] {
			f.present[idx] = true
			f.npresent++
		}
	}
}

// Close closes the files, once the page drops under way are done.
func (f *File) Close() {
	f.dropping.Wait()
	f.data.Close()
	f.direct.close()
	f.logMu.Lock()
	f.logf.Close()
	f.logMu.Unlock()
}

func (f *File) bounds(idx int) (off, n int64) {
	cs := f.d.opts.ChunkSize
	off = int64(idx) * cs
	return off, min(cs, f.size-off)
}

func (f *File) memKey(epoch uint64, idx int) string {
	return f.key + "/" + strconv.FormatUint(epoch, 10) + "/" + strconv.Itoa(idx)
}

// Present reports whether chunk idx is on disk.
func (f *File) Present(idx int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return idx >= 0 && idx < f.nchunks && f.present[idx]
}

// Count is the number of chunks present.
func (f *File) Count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.npresent
}

// Get serves a present chunk from the memory tier, or else reads it with
// O_DIRECT (see readDirect), or else points at the data file.
func (f *File) Get(idx int, within int64, n int) (Piece, string) {
	if n == 0 {
		return Piece{}, ""
	}
	f.mu.Lock()
	epoch := f.epoch
	f.mu.Unlock()
	if b, ok := f.d.mem.get(f.memKey(epoch, idx)); ok {
		return Piece{Data: b[within : within+int64(n)], N: n}, "memory"
	}
	cOff, _ := f.bounds(idx)
	if pc, ok := f.readDirect(cOff+within, n); ok {
		return pc, "disk"
	}
	return Piece{File: f.data, Off: cOff + within, N: n}, "disk"
}

// Put writes chunk idx, then appends it to the presence log (so a crash
// between the two leaves it absent), then offers it to the memory tier,
// then marks it present: a chunk marked present is found where it is.
// Last it moves the in-order hash on (inorder.go), while buf is at hand.
func (f *File) Put(idx int, buf []byte, toMem bool) (kept bool, err error) {
	if idx < 0 || idx >= f.nchunks {
		return false, fmt.Errorf("chunk store: chunk %d of %d", idx, f.nchunks)
	}
	cOff, _ := f.bounds(idx)
	err = f.writeData(buf, cOff)
	if err == nil {
		var rec [4]byte
		binary.LittleEndian.PutUint32(rec[:], uint32(idx))
		f.logMu.Lock()
		_, err = f.logf.Write(rec[:])
		f.logMu.Unlock()
	}
	if err != nil {
		return false, DiskError(f.d.opts.Dir, err)
	}
	f.mu.Lock()
	epoch := f.epoch
	f.mu.Unlock()
	if toMem {
		kept = f.d.mem.put(f.memKey(epoch, idx), buf)
	}
	f.mu.Lock()
	if !f.present[idx] {
		f.present[idx] = true
		f.npresent++
	}
	f.mu.Unlock()
	f.advance(idx, buf)
	return kept, nil
}

// ReadStored reads b at off of the data file, with O_DIRECT when it can.
func (f *File) ReadStored(b []byte, off int64) (int, error) { return f.readData(b, off) }

// Drop marks every chunk absent under a new epoch, so memory-tier entries
// of the old one are never served, and clears the presence log and the
// verified mark. The bytes stay in the data file until punched.
func (f *File) Drop() {
	f.mu.Lock()
	old := f.epoch
	f.epoch++
	for i := range f.present {
		f.present[i] = false
	}
	f.npresent = 0
	f.mu.Unlock()
	for i := 0; i < f.nchunks; i++ {
		f.d.mem.del(f.memKey(old, i))
	}
	f.logMu.Lock()
	f.logf.Truncate(0)
	f.logMu.Unlock()
	f.resetCursor()
	os.Remove(f.d.path(f.key, ".ok"))
}

// Punch zeroes the data file without changing its size, so a read racing
// the drop sees zeros (then evicted) rather than a short read, which the
// kernel would take for the end of the file.
func (f *File) Punch() {
	if f.size == 0 {
		return
	}
	err := unix.Fallocate(int(f.data.Fd()), unix.FALLOC_FL_KEEP_SIZE|unix.FALLOC_FL_PUNCH_HOLE, 0, f.size)
	if err != nil {
		// No hole punching on this filesystem: the gap is only a window
		// of a few microseconds.
		f.data.Truncate(0)
		f.data.Truncate(f.size)
	}
}

// Verified reports whether MarkVerified was called since the last Drop.
func (f *File) Verified() bool {
	_, err := os.Stat(f.d.path(f.key, ".ok"))
	return err == nil
}

// MarkVerified records that the whole file matched its checksum, so a
// restart skips the hash, and lets the page cache drop the file's pages
// once they are on disk (dropper.go).
func (f *File) MarkVerified() {
	if m, err := OpenPrivate(f.d.path(f.key, ".ok"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC); err == nil {
		m.Close()
	}
	f.dropWhenWritten()
}

// Direct reports whether the file is written with O_DIRECT.
func (f *File) Direct() bool { return f.direct != nil }

// Path is the data file.
func (f *File) Path() string { return f.d.path(f.key, ".data") }
