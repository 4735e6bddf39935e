package store

import (
	"errors"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// With Options.DirectWrites, the daemon moves bytes between its buffers
// and the cache files with O_DIRECT where the filesystem allows it: chunks
// are written so, read back so (into pooled buffers lent to the reply) and
// verified so. Why: a byte read through the mount already sits in the
// kernel's page cache of the FUSE file (FOPEN_KEEP_CACHE); a buffered write
// puts a second copy in the page cache of the cache file, doubling the
// memory a cold load fills and the copying it costs. Measured on the
// benchmark VM: a third of the daemon CPU and a cold 2 GiB load in 3.3-3.8 s
// instead of 4.8-5.4 s. It is off by default: chunks read back come from
// the disk, not memory (slower on network disks), verdicts come later, and
// on that VM much of the gain was memory it had to fault in from its host,
// a cost that moved to the next reader of the files rather than going away
// (warm reloads took 3.1-3.7 s instead of 1.05 s). See BENCHMARKS.md.
//
// direct is nil where O_DIRECT is off or refused (tmpfs on old kernels,
// some overlay filesystems); the first EINVAL turns it off for good.

// readDirect reads n bytes at off of the cache file with O_DIRECT into a
// pooled buffer, when writes are direct too: the bytes were written past the
// page cache, and reading them through it would fill it after all. ok is
// false when it cannot (not enabled, too big, refused): read buffered then.
func (f *File) readDirect(off int64, n int) (Piece, bool) {
	if f.direct == nil || f.direct.off.Load() {
		return Piece{}, false
	}
	start := off / directAlign * directAlign
	span := (off + int64(n) - start + directAlign - 1) / directAlign * directAlign
	if span > int64(f.d.readBufs.Size()) {
		return Piece{}, false
	}
	buf := f.d.readBufs.Get(span)
	got, done, err := f.direct.readAt(buf, start)
	if !done || err != nil || int64(got) < off-start+int64(n) {
		f.d.readBufs.Put(buf)
		return Piece{}, false
	}
	return Piece{Data: buf[off-start : off-start+int64(n)], N: n, Done: func() { f.d.readBufs.Put(buf) }}, true
}

// directAlign is the alignment O_DIRECT needs of offsets, lengths and
// buffers on every common filesystem and block device.
const directAlign = 4096

// openDirect opens the cache file at path O_DIRECT and reserves its blocks.
// Why reserve: O_DIRECT writes allocate blocks in the order chunks arrive,
// which is not file order, and a cache file written so was measured in 60
// pieces per 512 MiB on ext4 and twice as slow to read back; reserving the
// whole file first keeps it in a few. A full disk then shows up here, at
// open, instead of halfway through a load. A bounded cache does not
// reserve (Options.NoReserve): a file may be bigger than its budget.
func openDirect(path string, size int64, enabled, reserve bool) (*directFile, error) {
	if !enabled {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		return nil, nil // O_DIRECT refused here: buffered writes
	}
	if size > 0 && reserve {
		err := unix.Fallocate(int(f.Fd()), 0, 0, size)
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			f.Close()
			return nil, err
		}
	}
	return &directFile{f: f}, nil
}

// directFile is an O_DIRECT descriptor of a cache file.
type directFile struct {
	f   *os.File
	off atomic.Bool // refused once: use buffered I/O from then on
}

func aligned(b []byte, off int64) bool {
	return len(b) > 0 && off%directAlign == 0 && len(b)%directAlign == 0 &&
		uintptr(unsafe.Pointer(&b[0]))%directAlign == 0
}

// writeAt writes b at off directly when it can; done is false when the
// caller must write it buffered instead.
func (d *directFile) writeAt(b []byte, off int64) (done bool, err error) {
	if d == nil || d.off.Load() || !aligned(b, off) {
		return false, nil
	}
	if _, err := d.f.WriteAt(b, off); err != nil {
		if errors.Is(err, syscall.EINVAL) {
			d.off.Store(true)
			return false, nil
		}
		return true, err
	}
	return true, nil
}

// readAt fills b from off directly when it can. b may run past the end of
// the file as long as its capacity is aligned; n counts the bytes read.
func (d *directFile) readAt(b []byte, off int64) (n int, done bool, err error) {
	if d == nil || d.off.Load() {
		return 0, false, nil
	}
	m := (len(b) + directAlign - 1) / directAlign * directAlign
	if cap(b) < m {
		return 0, false, nil
	}
	full := b[:m]
	if !aligned(full, off) {
		return 0, false, nil
	}
	n, err = d.f.ReadAt(full, off)
	if errors.Is(err, syscall.EINVAL) {
		d.off.Store(true)
		return 0, false, nil
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return min(n, len(b)), true, err
}

func (d *directFile) close() {
	if d != nil {
		d.f.Close()
	}
}

// writeData writes b at off of the cache file, with O_DIRECT when it can.
func (f *File) writeData(b []byte, off int64) error {
	if done, err := f.direct.writeAt(b, off); done {
		return err
	}
	_, err := f.data.WriteAt(b, off)
	return err
}

// readData reads b at off of the cache file, with O_DIRECT when it can.
func (f *File) readData(b []byte, off int64) (int, error) {
	if n, done, err := f.direct.readAt(b, off); done {
		return n, err
	}
	return f.data.ReadAt(b, off)
}
