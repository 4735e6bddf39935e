package eager

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/weightfs/weightfs/fetch"
)

// ProgressSuffix names the sidecar beside a part file that records which
// ranges of it are written.
const ProgressSuffix = ".progress"

// progressRecord is the sidecar of a part file. Everything but Done says
// which object the part belongs to: if any of it differs on restart (another
// commit, another chunk size), the part is started over rather than mixing
// bytes of two objects.
type progressRecord struct {
	Version       int    `json:"version"` // 1
	Path          string `json:"path"`
	Size          int64  `json:"size"`
	ChunkSize     int64  `json:"chunk_size"`
	Checksum      string `json:"checksum"`
	ObjectVersion string `json:"object_version"`
	Done          string `json:"done"` // base64 bitmap: bit i (LSB first) = range i written
}

// part is one file being assembled: the part file written with pwrite at
// each range's offset, the set of ranges written, and the running hash of
// its contiguous written prefix.
type part struct {
	t      Target
	read   fetch.RangeReader // t.Reader behind the retry policy
	path   string            // the part file
	chunk  int64
	chunks int
	f      *os.File // nil until opened

	verify bool // the file has a checksum
	prime  int  // GUARDED_BY(Downloader.mu); primeNone, primeWanted, ...

	mu      sync.Mutex
	cond    *sync.Cond // a sidecar write ended
	done    []byte     // GUARDED_BY(mu); bitmap of written ranges
	left    int        // GUARDED_BY(mu); ranges not yet written
	prefix  int64      // GUARDED_BY(mu); bytes [0, prefix) are all written
	settled bool       // GUARDED_BY(mu); no more ranges are wanted (in place, failed, or being committed)
	counted bool       // GUARDED_BY(mu); counted as done or failed (exactly once)
	pass    int        // GUARDED_BY(mu); 1 on the first download, 2 after a mismatch
	resumed int64      // bytes found written by an earlier run
	dirty   bool       // GUARDED_BY(mu); the sidecar is behind
	saving  bool       // GUARDED_BY(mu); a sidecar write is in progress

	// Lock order: hmu, then mu.
	hmu     sync.Mutex
	h       hash.Hash    // GUARDED_BY(hmu); nil unless verify
	hashed  atomic.Int64 // written under hmu: bytes [0, hashed) are in h
	hashErr error        // GUARDED_BY(hmu)
}

func newPart(t Target, read fetch.RangeReader, chunk int64) *part {
	p := &part{t: t, read: read, path: t.Part, chunk: chunk, pass: 1, verify: !t.File.Checksum.IsZero()}
	p.chunks = int((t.File.Size + chunk - 1) / chunk)
	p.cond = sync.NewCond(&p.mu)
	return p
}

// reset forgets every written range (a fresh pass). The bitmap is made only
// once the space check passed (a file is a few bits per MiB).
// LOCKS_REQUIRED(mu)
func (p *part) reset() {
	p.done = make([]byte, (p.chunks+7)/8)
	p.left = p.chunks
	p.prefix = 0
}

func (p *part) sidecar() string { return p.path + ProgressSuffix }

func (p *part) record() progressRecord {
	return progressRecord{Version: 1, Path: p.t.File.Path, Size: p.t.File.Size, ChunkSize: p.chunk,
		Checksum: p.t.File.Checksum.String(), ObjectVersion: p.t.File.Version}
}

func (p *part) isDone(i int) bool { return p.done[i/8]&(1<<(i%8)) != 0 }

// open opens (or creates) the part file, takes over the ranges an earlier
// run recorded if its sidecar describes this very object, and reserves the
// file's full size. It returns the indices of the ranges still to fetch.
func (p *part) open() ([]int, error) {
	if err := os.MkdirAll(filepath.Dir(p.path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	p.f = f
	if err := p.resetHash(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reset()
	if info, err := f.Stat(); err == nil && info.Size() == p.t.File.Size {
		p.loadSidecar()
	}
	if p.left == p.chunks {
		// Nothing to take over: start from an empty file, so no stale
		// byte of another object survives in a range we never write.
		if err := f.Truncate(0); err != nil {
			return nil, err
		}
	}
	if err := preallocate(f, p.t.File.Size); err != nil {
		return nil, fmt.Errorf("reserving %d bytes for %s: %w", p.t.File.Size, p.path, err)
	}
	var missing []int
	for i := 0; i < p.chunks; i++ {
		if !p.isDone(i) {
			missing = append(missing, i)
		}
	}
	p.advancePrefix()
	return missing, nil
}

// loadSidecar takes over the written ranges recorded by an earlier run.
// LOCKS_REQUIRED(mu)
func (p *part) loadSidecar() {
	b, err := os.ReadFile(p.sidecar())
	if err != nil {
		return
	}
	var r progressRecord
	if json.Unmarshal(b, &r) != nil {
		return
	}
	want := p.record()
	done, err := base64.StdEncoding.DecodeString(r.Done)
	r.Done = ""
	if err != nil || r != want || len(done) != len(p.done) {
		return
	}
	p.done = done
	p.left = 0
	for i := 0; i < p.chunks; i++ {
		if p.isDone(i) {
			p.resumed += p.rangeLen(i)
		} else {
			p.left++
		}
	}
}

func (p *part) rangeLen(i int) int64 {
	return min(p.chunk, p.t.File.Size-int64(i)*p.chunk)
}

// advancePrefix moves prefix over every written range at its end.
// LOCKS_REQUIRED(mu)
func (p *part) advancePrefix() {
	for p.prefix < p.t.File.Size {
		i := int(p.prefix / p.chunk)
		if !p.isDone(i) {
			break
		}
		p.prefix += p.rangeLen(i)
	}
}

// markDone records range i as written (its pwrite returned), saves the
// sidecar, and reports whether it was the last one of this pass, and which
// pass that is.
func (p *part) markDone(i int) (last bool, pass int) {
	p.mu.Lock()
	pass = p.pass
	if p.isDone(i) || p.settled {
		p.mu.Unlock()
		return false, pass
	}
	p.done[i/8] |= 1 << (i % 8)
	p.left--
	last = p.left == 0
	p.advancePrefix()
	p.mu.Unlock()
	p.saveSidecar()
	return last, pass
}

// saveSidecar writes the record of written ranges. Concurrent callers
// coalesce: one writes while the others mark it dirty. A range is recorded
// only after its bytes were handed to the kernel, so a killed process
// resumes correctly; a power loss may lose recorded bytes, which the
// checksum catches (and the second pass refetches).
func (p *part) saveSidecar() {
	p.mu.Lock()
	p.dirty = true
	if p.saving {
		p.mu.Unlock()
		return
	}
	p.saving = true
	for p.dirty && !p.settled {
		p.dirty = false
		r := p.record()
		r.Done = base64.StdEncoding.EncodeToString(p.done)
		p.mu.Unlock()
		b, _ := json.Marshal(r)
		// Not fsynced: it is rewritten per range, and the part's bytes it
		// vouches for are not synced either until the part is committed; a
		// power loss is caught by the checksum. Best effort: losing it
		// costs a refetch.
		saveRecord(p.sidecar(), b, false)
		p.mu.Lock()
	}
	p.saving = false
	p.cond.Broadcast() // waitSaved
	p.mu.Unlock()
}

// waitSaved returns once no sidecar write is in flight.
func (p *part) waitSaved() {
	p.mu.Lock()
	for p.saving {
		p.cond.Wait()
	}
	p.mu.Unlock()
}

// feed hashes the written prefix as it grows, so that only the last ranges
// are left to hash once the final one lands. The caller has just recorded
// the range at off, whose bytes are still in b: when that range is next in
// line it is hashed from memory; ranges that landed out of order are read
// back from the part file (the page cache, normally). One worker hashes a
// file at a time; the others leave their range to it rather than wait.
// pass is the one b was fetched in: bytes of an abandoned pass are never fed.
func (p *part) feed(off int64, b []byte, pass int) {
	if !p.verify {
		return
	}
	for p.hmu.TryLock() {
		p.mu.Lock()
		if p.pass != pass {
			b = nil
		}
		p.mu.Unlock()
		p.drain(off, b)
		p.hmu.Unlock()
		// A range recorded while we held the lock was left to us.
		if p.prefixNow() <= p.hashed.Load() {
			return
		}
	}
}

// digest hashes whatever is left (every range is written) and returns the
// file's checksum value.
func (p *part) digest() (string, error) {
	p.hmu.Lock()
	defer p.hmu.Unlock()
	p.drain(-1, nil)
	if p.hashErr != nil {
		return "", p.hashErr
	}
	if n := p.hashed.Load(); n != p.t.File.Size {
		return "", fmt.Errorf("hashed %d of %d bytes", n, p.t.File.Size)
	}
	return fetch.SumHex(p.t.File.Checksum.Algo, p.h), nil
}

var readbackBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// drain feeds the hash up to the written prefix.
// LOCKS_REQUIRED(hmu)
func (p *part) drain(off int64, b []byte) {
	for p.hashErr == nil {
		pos, prefix := p.hashed.Load(), p.prefixNow()
		if pos >= prefix {
			return
		}
		if b != nil && off == pos {
			p.h.Write(b)
			p.hashed.Store(pos + int64(len(b)))
			b = nil
			continue
		}
		end := prefix
		if b != nil && off > pos && off < end {
			end = off
		}
		bp := readbackBufs.Get().(*[]byte)
		for pos < end && p.hashErr == nil {
			n := min(int64(len(*bp)), end-pos)
			if _, err := p.f.ReadAt((*bp)[:n], pos); err != nil {
				p.hashErr = fmt.Errorf("reading back %s: %w", p.path, err)
				break
			}
			p.h.Write((*bp)[:n])
			pos += n
			p.hashed.Store(pos)
		}
		readbackBufs.Put(bp)
	}
}

// resetHash starts the hash over (a fresh pass).
func (p *part) resetHash() error {
	p.hmu.Lock()
	defer p.hmu.Unlock()
	p.hashed.Store(0)
	p.hashErr = nil
	if !p.verify {
		return nil
	}
	h, err := fetch.NewHash(p.t.File.Checksum.Algo, p.t.File.Size)
	p.h = h
	return err
}

func (p *part) prefixNow() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.prefix
}

// settleOnce marks the part settled and reports whether this call was the
// first to count it as done or failed.
func (p *part) settleOnce() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.settled = true
	if p.counted {
		return false
	}
	p.counted = true
	return true
}

func (p *part) close() {
	if p.f != nil {
		p.f.Close()
		p.f = nil
	}
}
