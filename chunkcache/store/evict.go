package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Eviction: a bounded cache (chunkcache's --cache-size) removes single
// chunks. Evict punches the chunk's range out of the data file
// (FALLOC_FL_PUNCH_HOLE: the blocks go back to the filesystem, the file
// keeps its size) and appends a tombstone to the presence log: the chunk's
// index with the top bit set. The log stays a sequence of little-endian
// uint32 records and a chunk's last record says whether it is present, so
// a log without tombstones reads as it always did, and a chunk recorded
// absent is absent after a restart (Dir.Open applies the tombstones).
//
// Order, for crashes: the verified mark goes first, then the tombstone is
// written, then the bytes are punched. A crash between the last two leaves
// a chunk recorded absent whose bytes are still there (refetched, wasted
// space), never one recorded present whose bytes are gone.

// tombstone marks a presence-log record as "chunk absent from here on".
// A binary that predates it ignores such records (their value is past any
// chunk index), so going back to one sees an evicted chunk as present:
// files with a checksum then fail verification and heal, as the verified
// mark is gone.
const tombstone = 1 << 31

// ErrBusy is returned by Evict when the file's in-order hash is moving on
// (a Put is hashing): the chunk stays; try another.
var ErrBusy = errors.New("chunk store: a put is hashing the file; chunk not evicted")

// ErrNoEvict is returned by Evict where chunks cannot be removed one by one
// (the filesystem cannot punch holes, or the file is too large to log
// tombstones for).
var ErrNoEvict = errors.New("chunk store: this filesystem cannot punch holes, so chunks cannot be evicted")

// Evicter is implemented by Chunks that can remove one chunk.
type Evicter interface {
	// Evict makes present chunk idx absent, on disk too: its bytes are
	// released and its memory copy and the file's verified mark are
	// dropped. The caller guarantees nobody reads or writes the chunk
	// meanwhile. Evicting an absent chunk does nothing.
	Evict(idx int) error
	// Allocated is the bytes the data file takes on disk (st_blocks).
	Allocated() (int64, error)
	// PunchAbsent releases the blocks of every absent chunk, left by a
	// crash or an older version; nobody may write the file meanwhile.
	PunchAbsent() error
}

var _ Evicter = (*File)(nil)

// Evict removes chunk idx (see Evicter).
func (f *File) Evict(idx int) error {
	if idx < 0 || idx >= f.nchunks {
		return fmt.Errorf("chunk store: evicting chunk %d of %d", idx, f.nchunks)
	}
	if f.nchunks >= tombstone {
		return ErrNoEvict
	}
	// Marked absent under the in-order hash's lock, and only while no Put
	// is hashing: one might be reading idx back (inorder.go), and none can
	// start to once idx is absent. If the hash took idx in, it is given up
	// (as inorder.go does when it cannot read a chunk back) and the whole
	// file left to the verifier: the chunk fetched again may differ, and a
	// verdict must be on the bytes on disk.
	c := &f.cur
	c.mu.Lock()
	if c.busy {
		c.mu.Unlock()
		return ErrBusy
	}
	f.mu.Lock()
	if !f.present[idx] {
		f.mu.Unlock()
		c.mu.Unlock()
		return nil
	}
	f.present[idx] = false
	f.npresent--
	epoch := f.epoch
	f.mu.Unlock()
	if c.next > idx {
		c.h, c.next, c.taken = nil, 0, true
	}
	c.mu.Unlock()
	f.d.mem.del(f.memKey(epoch, idx))
	if err := os.Remove(f.d.path(f.key, ".ok")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return DiskError(f.d.opts.Dir, err)
	}
	var rec [4]byte
	binary.LittleEndian.PutUint32(rec[:], uint32(idx)|tombstone)
	f.logMu.Lock()
	_, err := f.logf.Write(rec[:])
	if err == nil {
		f.compactLogLocked()
	}
	f.logMu.Unlock()
	if err != nil {
		return DiskError(f.d.opts.Dir, err)
	}
	off, n := f.bounds(idx)
	if err := punch(f.data, off, n); err != nil {
		return err
	}
	return nil
}

// punch releases [off, off+n) of the file, keeping its size.
func punch(file *os.File, off, n int64) error {
	if n <= 0 {
		return nil
	}
	err := unix.Fallocate(int(file.Fd()), unix.FALLOC_FL_KEEP_SIZE|unix.FALLOC_FL_PUNCH_HOLE, off, n)
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
		return ErrNoEvict
	}
	if err != nil {
		return fmt.Errorf("chunk store: releasing bytes %d-%d of %s: %w", off, off+n-1, file.Name(), err)
	}
	return nil
}

// Allocated is the bytes the data file takes on disk.
func (f *File) Allocated() (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.data.Fd()), &st); err != nil {
		return 0, DiskError(f.d.opts.Dir, err)
	}
	return st.Blocks * 512, nil
}

// PunchAbsent releases the blocks of every run of absent chunks.
func (f *File) PunchAbsent() error {
	f.mu.Lock()
	absent := make([]bool, f.nchunks)
	for i, p := range f.present {
		absent[i] = !p
	}
	f.mu.Unlock()
	for i := 0; i < len(absent); {
		if !absent[i] {
			i++
			continue
		}
		j := i
		for j < len(absent) && absent[j] {
			j++
		}
		off, _ := f.bounds(i)
		end, n := f.bounds(j - 1)
		if err := punch(f.data, off, end+n-off); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// compactLogLocked rewrites the presence log from the bitmap once
// tombstones and re-puts have made it much longer than the chunks it
// describes (a cache that keeps evicting and refetching), so it neither
// grows without bound nor slows the next open. The new log is written
// beside the old and renamed over it: a crash leaves one or the other.
// LOCKS_REQUIRED(logMu)
func (f *File) compactLogLocked() {
	st, err := f.logf.Stat()
	if err != nil || st.Size()/4 <= int64(4*f.nchunks+1024) {
		return
	}
	f.mu.Lock()
	b := make([]byte, 0, 4*f.npresent)
	for i, p := range f.present {
		if p {
			b = binary.LittleEndian.AppendUint32(b, uint32(i))
		}
	}
	f.mu.Unlock()
	// A Put between its log record and its presence bit is left out: it
	// is absent after a restart, and refetched then. Safe, and rare.
	path := f.d.path(f.key, ".chunks")
	tmp := path + ".tmp"
	nf, err := OpenPrivate(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND)
	if err != nil {
		return
	}
	if _, err := nf.Write(b); err != nil || nf.Sync() != nil || os.Rename(tmp, path) != nil {
		nf.Close()
		os.Remove(tmp)
		return
	}
	f.logf.Close()
	f.logf = nf
}

// applyTombstones reads the presence log again and marks absent every
// chunk whose last record is a tombstone. loadLog counts a chunk present
// once any record names it; this runs right after it, before the File is
// handed out.
func (f *File) applyTombstones() {
	b, err := os.ReadFile(f.d.path(f.key, ".chunks"))
	if err != nil {
		return
	}
	b = b[:len(b)/4*4] // loadLog cut off a torn record already
	var last map[int]bool
	for i := 0; i+4 <= len(b); i += 4 {
		rec := binary.LittleEndian.Uint32(b[i:])
		idx := int(rec &^ tombstone)
		if idx >= f.nchunks {
			continue
		}
		if rec&tombstone != 0 && last == nil {
			last = map[int]bool{}
		}
		if last != nil {
			last[idx] = rec&tombstone == 0
		}
	}
	if last == nil {
		return // no tombstones: loadLog got it right
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for idx, present := range last {
		if !present && f.present[idx] {
			f.present[idx] = false
			f.npresent--
		}
	}
}

// StoredObject is an object found in the cache directory.
type StoredObject struct {
	Key       string
	Size      int64     // the data file's size
	Allocated int64     // bytes it takes on disk
	Used      time.Time // when its data or presence log last changed
}

// Stored lists the objects in the cache directory, for a bounded cache to
// count the bytes of those nobody opened yet.
func (d *Dir) Stored() ([]StoredObject, error) {
	var out []StoredObject
	root := filepath.Join(d.opts.Dir, "objects")
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() || !strings.HasSuffix(p, ".data") {
			return nil
		}
		key := strings.TrimSuffix(filepath.Base(p), ".data")
		if len(key) < 2 || filepath.Base(filepath.Dir(p)) != key[:2] {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return nil // removed meanwhile
		}
		used := time.Unix(st.Mtim.Unix())
		if fi, err := os.Stat(d.path(key, ".chunks")); err == nil && fi.ModTime().After(used) {
			used = fi.ModTime()
		}
		out = append(out, StoredObject{Key: key, Size: st.Size, Allocated: st.Blocks * 512, Used: used})
		return nil
	})
	if err != nil {
		return out, DiskError(d.opts.Dir, err)
	}
	return out, nil
}

// Remove deletes object key from the cache directory. It must not be open.
func (d *Dir) Remove(key string) error {
	if len(key) < 2 {
		return fmt.Errorf("chunk store: object %q is impossible", key)
	}
	var first error
	for _, ext := range []string{".ok", ".chunks", ".data"} {
		if err := os.Remove(d.path(key, ext)); err != nil && !errors.Is(err, fs.ErrNotExist) && first == nil {
			first = DiskError(d.opts.Dir, err)
		}
	}
	return first
}

// DiskUsage is what the data files of the cache directory dir take on disk
// (allocated blocks: punched chunks do not count), for checking a budget
// from outside a running cache.
func DiskUsage(dir string) (int64, error) {
	objs, err := (&Dir{opts: Options{Dir: dir}}).Stored()
	var n int64
	for _, o := range objs {
		n += o.Allocated
	}
	return n, err
}
