// Package store keeps the chunks of remote files at rest: a sparse data
// file per object, an append-only log of which chunks in it are complete, a
// marker once the whole file is verified, and a bounded memory tier for hot
// chunks. It is the layer below chunkcache's fetch scheduler and knows
// nothing of origins, readahead, prefetch or when to verify: it is told
// which chunk to put, get or drop, and tested without any origin.
//
// Layout under the cache dir: objects/<key[:2]>/<key>.data (the bytes),
// .chunks (little-endian uint32 chunk indices; with the top bit set, a
// tombstone: the chunk was evicted, see evict.go) and .ok (verified).
package store

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/weightfs/weightfs/chunkcache/internal/bufpool"
)

// Piece locates part of one chunk: bytes in memory (immutable for as long
// as anyone holds them), or N bytes at Off of File.
type Piece struct {
	Data []byte
	File *os.File // when Data is nil: read or splice N bytes at Off of it
	Off  int64
	N    int
	Done func() // set when Data is a lent buffer: hands it back
}

// Release lets go of the piece's buffer, if it borrowed one.
func (p Piece) Release() {
	if p.Done != nil {
		p.Done()
	}
}

// Chunks is one file's chunks at rest, in chunks of the store's size (the
// last one shorter). Every method is safe for concurrent use, but Close,
// which must come after every other call has returned.
type Chunks interface {
	// Present reports whether chunk idx is stored; Count how many are.
	Present(idx int) bool
	Count() int
	// Get locates n bytes of present chunk idx from within, and names the
	// tier ("memory" or "disk") that holds them.
	Get(idx int, within int64, n int) (Piece, string)
	// Put stores chunk idx and marks it present; toMem offers buf to the
	// memory tier too. kept says the tier took buf: the caller must then
	// never modify or reuse it.
	Put(idx int, buf []byte, toMem bool) (kept bool, err error)
	// ReadStored reads stored bytes at off, present or not (verification
	// and healing compare what is on disk).
	ReadStored(b []byte, off int64) (int, error)
	// Drop marks every chunk absent and forgets the verified mark and the
	// memory copies; the bytes stay until Punch zeroes them.
	Drop()
	Punch()
	// Verified reports the mark MarkVerified left, surviving restarts.
	Verified() bool
	MarkVerified()
	// Direct reports whether stored bytes bypass the page cache (O_DIRECT).
	Direct() bool
	// Path is the data file, for FUSE passthrough once it is complete.
	Path() string
	Close()
}

// Store opens the Chunks of objects by key.
type Store interface {
	Open(key string, size int64) (Chunks, error)
	Close()
}

var (
	_ Store  = (*Dir)(nil)
	_ Chunks = (*File)(nil)
)

// Options configure a Dir.
type Options struct {
	Dir         string // the cache directory (required)
	ChunkSize   int64  // bytes per chunk (required)
	MemoryBytes int64  // memory tier budget; <= 0 disables it
	// DirectWrites writes and reads chunks with O_DIRECT where the
	// filesystem allows it (see direct.go).
	DirectWrites bool
	// NoReserve keeps O_DIRECT files sparse: without it their blocks are
	// reserved whole at open (see openDirect), which a bounded cache, whose
	// files may be bigger than its budget, must not do.
	NoReserve bool
}

// Dir is the chunk store in one cache directory.
type Dir struct {
	opts     Options
	mem      *memTier
	readBufs *bufpool.Pool // O_DIRECT reads of the cache files
}

// Open prepares the objects directory under o.Dir.
func Open(o Options) (*Dir, error) {
	if o.Dir == "" {
		return nil, fmt.Errorf("cache dir is not set: pass --cache-dir")
	}
	if o.ChunkSize <= 0 {
		return nil, fmt.Errorf("chunk store: chunk size %d must be positive", o.ChunkSize)
	}
	if err := MakePrivateDirs(o.Dir, "objects"); err != nil {
		return nil, err
	}
	mem, err := newMemTier(o.MemoryBytes)
	if err != nil {
		return nil, err
	}
	// Reads of a cache file written with O_DIRECT (see readDirect): up to
	// a FUSE request, 1 MiB, plus alignment slack.
	return &Dir{opts: o, mem: mem, readBufs: bufpool.New(1<<20+2*directAlign, 16, true)}, nil
}

// Close releases the memory tier; close every File first.
func (d *Dir) Close() { d.mem.close() }

func (d *Dir) path(key, ext string) string {
	return filepath.Join(d.opts.Dir, "objects", key[:2], key+ext)
}

// Path is where the bytes of object key lie.
func (d *Dir) Path(key string) string { return d.path(key, ".data") }

// Open opens (creating) the chunks of object key, a file of size bytes.
// Chunks stored before, by this or an earlier process, are present again;
// a data file of another size is a different (or torn) object and starts
// over empty. Chunks evicted before (evict.go) stay absent.
func (d *Dir) Open(key string, size int64) (Chunks, error) {
	f, err := d.OpenFile(key, size)
	if err != nil {
		return nil, err
	}
	f.applyTombstones()
	return f, nil
}
