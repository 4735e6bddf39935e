package fs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weightfs/weightfs/fetch"
)

// fileNode is one file of a volume. Its content is opened lazily.
type fileNode struct {
	gofs.Inode
	vol    string
	file   fetch.File
	mtime  time.Time
	opener Opener
	cfg    *config

	mu       sync.Mutex
	content  Content // GUARDED_BY(mu); nil until first open
	cachedIO int     // GUARDED_BY(mu); open handles served by the daemon
}

var _ = (gofs.NodeGetattrer)((*fileNode)(nil))
var _ = (gofs.NodeSetattrer)((*fileNode)(nil))
var _ = (gofs.NodeOpener)((*fileNode)(nil))
var _ = (gofs.NodeReader)((*fileNode)(nil))

func (n *fileNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer n.cfg.recovered("getattr", n.vol, n.file.Path, &errno)
	a := &out.Attr
	a.Mode = fileMode
	a.Nlink = 1
	a.Size = uint64(n.file.Size)
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = 1 << 20 // hint to stdio: read in big pieces
	a.SetTimes(&n.mtime, &n.mtime, &n.mtime)
	return 0
}

// Setattr refuses every change: the tree is immutable.
func (n *fileNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// openContent is contentLocked under n.mu, released even if Open panics.
func (n *fileNode) openContent() (Content, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.contentLocked()
}

func (n *fileNode) contentLocked() (Content, error) {
	if n.content == nil {
		c, err := n.opener.Open(n.vol, n.file)
		if err != nil {
			return nil, err
		}
		if d, ok := c.(DropNotifier); ok {
			// Bytes that failed verification may sit in the kernel's page
			// cache (FOPEN_KEEP_CACHE): evict them so they are never
			// served again; the next read comes back to the daemon.
			d.OnDrop(func() { n.NotifyContent(0, 0) })
		}
		n.content = c
	}
	return n.content, nil
}

// Open refuses writes and hands back a handle. The page cache is kept
// across opens (FOPEN_KEEP_CACHE) because the files never change. A file
// that is complete and verified is handed to the kernel as a backing file
// (passthrough), so its reads and mmaps bypass the daemon, unless the
// inode already has daemon-served handles open: the kernel refuses to mix
// cached and passthrough I/O modes on one inode.
func (n *fileNode) Open(ctx context.Context, flags uint32) (_ gofs.FileHandle, _ uint32, errno syscall.Errno) {
	defer n.cfg.recovered("open", n.vol, n.file.Path, &errno)
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND|syscall.O_CREAT) != 0 {
		return nil, 0, syscall.EROFS
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	c, err := n.contentLocked()
	if err != nil {
		n.cfg.log.Error("open failed", "volume", n.vol, "file", n.file.Path, "err", err)
		return nil, 0, syscall.EIO
	}
	h := &handle{node: n}
	if n.cfg.passthrough && n.cachedIO == 0 {
		// Pinned before the check, so a bounded cache cannot evict a
		// chunk of the file between it and the kernel's reads.
		pin, _ := c.(Pinner)
		if pin != nil {
			pin.Pin()
		}
		if p, ok := c.BackingPath(); ok {
			if f, err := os.Open(p); err == nil {
				h.backing = f
				h.pin = pin
			}
		}
		if pin != nil && h.backing == nil {
			pin.Unpin()
		}
	}
	if h.backing == nil {
		n.cachedIO++
	}
	return h, fuse.FOPEN_KEEP_CACHE, 0
}

// Read serves a read from the cache. It runs under the mount's read
// deadline, so a stalled origin becomes EIO instead of a hung process.
func (n *fileNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (_ fuse.ReadResult, errno syscall.Errno) {
	if n.cfg.onRead != nil {
		defer func(start time.Time) {
			var err error
			if errno != 0 {
				err = errno
			}
			n.cfg.onRead(time.Since(start), err)
		}(time.Now())
	}
	// Deferred after onRead, so it runs first and onRead sees the EIO.
	defer n.cfg.recovered("read", n.vol, n.file.Path, &errno)
	if h, ok := fh.(*handle); ok && h.backing != nil {
		// The kernel normally reads the backing file itself; this path
		// is only taken where it declined passthrough.
		if rem := n.file.Size - off; int64(len(dest)) > rem {
			dest = dest[:max(rem, 0)]
		}
		return fuse.ReadResultFd(h.backing.Fd(), off, len(dest)), 0
	}
	c, err := n.openContent()
	if err != nil {
		return nil, syscall.EIO
	}
	rctx, cancel := context.WithTimeout(ctx, n.cfg.readTimeout)
	defer cancel()
	data, sec, done, err := c.ReadRef(rctx, dest, off)
	if err != nil {
		n.cfg.readFailed(n.vol, n.file.Path, off, err)
		return nil, syscall.EIO
	}
	if sec == nil {
		return &dataResult{data: data, done: done, cfg: n.cfg, vol: n.vol, path: n.file.Path}, 0
	}
	if f, base, size := sec.Outer(); size <= int64(len(dest)) {
		if f, ok := f.(*os.File); ok {
			// Spliced from the cache file's page cache straight into
			// the reply: no copy through the daemon.
			if done != nil {
				return &fdResult{fd: f.Fd(), off: base, sz: int(size), done: done, cfg: n.cfg, vol: n.vol, path: n.file.Path}, 0
			}
			return fuse.ReadResultFd(f.Fd(), base, int(size)), 0
		}
	}
	k, err := sec.ReadAt(dest[:min(sec.Size(), int64(len(dest)))], 0)
	if done != nil {
		done()
	}
	if err != nil && !errors.Is(err, io.EOF) {
		n.cfg.readFailed(n.vol, n.file.Path, off, err)
		return nil, syscall.EIO
	}
	return &dataResult{data: dest[:k]}, 0
}

// dataResult is a reply of bytes in memory. It offers them as slices, so
// go-fuse writes them with one writev; a plain fuse.ReadResultData first
// tries, and fails, to splice them (a pipe write and drain per read).
type dataResult struct {
	data []byte
	done func() // when set, called once the reply is out: data is lent

	// For the log, should done panic.
	cfg       *config
	vol, path string
}

func (r *dataResult) Size() int                          { return len(r.data) }
func (r *dataResult) Bytes([]byte) ([]byte, fuse.Status) { return r.data, fuse.OK }
func (r *dataResult) Slices() ([][]byte, fuse.Status)    { return [][]byte{r.data}, fuse.OK }
func (r *dataResult) Done() {
	if r.done != nil {
		// Called by go-fuse after the reply, outside any handler's
		// recover: a panic here would end the process.
		defer func() {
			if p := recover(); p != nil {
				r.cfg.logPanic("read done", r.vol, r.path, p)
			}
		}()
		r.done()
	}
}

// fdResult is fuse.ReadResultFd that says when the reply is out: go-fuse
// splices any result with a Seekable method (or preads it where it cannot
// splice) and calls Done after the write, so done releases the section of
// the cache file only once the kernel has its bytes (a bounded cache may
// evict the chunk after that).
type fdResult struct {
	fd   uintptr
	off  int64
	sz   int
	done func()

	// For the log, should done panic.
	cfg       *config
	vol, path string
}

func (r *fdResult) Seekable() (uintptr, int64, int) { return r.fd, r.off, r.sz }
func (r *fdResult) Size() int                       { return r.sz }
func (r *fdResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	n, err := syscall.Pread(int(r.fd), buf[:min(len(buf), r.sz)], r.off)
	if n < 0 {
		n = 0
	}
	if err != nil {
		return buf[:n], fuse.ToStatus(err)
	}
	return buf[:n], fuse.OK
}
func (r *fdResult) Done() {
	// As dataResult.Done: outside any handler's recover.
	defer func() {
		if p := recover(); p != nil {
			r.cfg.logPanic("read done", r.vol, r.path, p)
		}
	}()
	r.done()
}

// Pinner is implemented by Content whose local copy a bounded cache could
// evict: Pin keeps it whole from before BackingPath is asked until the
// passthrough handle is released (Unpin), since the kernel then reads the
// file without the daemon. Probed for, like DropNotifier, and asserted
// where the daemon's Content is built.
type Pinner interface {
	Pin()
	Unpin()
}

// DropNotifier is implemented by Content that can discard bytes it served
// (they failed verification): fn is then called, and the file's pages are
// evicted from the kernel's cache. It is probed for, not required, so the
// Content a daemon opens is asserted to be one where it is built
// (cmd/weightfs): a rename must not silently turn eviction off.
type DropNotifier interface{ OnDrop(fn func()) }

// handle is one open file. backing is set when the kernel reads a local
// copy directly.
type handle struct {
	node    *fileNode
	backing *os.File
	pin     Pinner // pinned for as long as backing is open, or nil
}

var _ = (gofs.FilePassthroughFder)((*handle)(nil))
var _ = (gofs.FileReleaser)((*handle)(nil))

func (h *handle) PassthroughFd() (fd int, ok bool) {
	defer h.node.cfg.recovered("passthrough", h.node.vol, h.node.file.Path, nil)
	if h.backing == nil {
		return 0, false
	}
	return int(h.backing.Fd()), true
}

func (h *handle) Release(ctx context.Context) (errno syscall.Errno) {
	defer h.node.cfg.recovered("release", h.node.vol, h.node.file.Path, &errno)
	if h.backing != nil {
		h.backing.Close()
		if h.pin != nil {
			h.pin.Unpin()
		}
		return 0
	}
	h.node.mu.Lock()
	h.node.cachedIO--
	h.node.mu.Unlock()
	return 0
}

// config is what every node needs from the mount.
type config struct {
	log         *slog.Logger
	readTimeout time.Duration
	passthrough bool
	onRead      func(time.Duration, error) // optional; see Options.OnRead

	mu       sync.Mutex
	lastWarn time.Time // GUARDED_BY(mu); rate-limits read failure logs

	panics panicLog // which handler panics were logged (recover.go)
}

// readFailed logs a failed read, at most a few lines a second, because a
// loader hitting a dead origin fails thousands of page faults at once.
func (c *config) readFailed(vol, p string, off int64, err error) {
	c.mu.Lock()
	now := time.Now()
	quiet := now.Sub(c.lastWarn) < 200*time.Millisecond
	if !quiet {
		c.lastWarn = now
	}
	c.mu.Unlock()
	if !quiet {
		c.log.Error("read failed; returning EIO", "volume", vol, "file", p, "offset", off, "err", err)
	}
}
