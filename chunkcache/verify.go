package chunkcache

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weightfs/weightfs/fetch"
)

// verifier hashes complete files, one at a time, in the background. Hashing
// a model costs about a core-second per 2 GB, which on a small machine is
// CPU a loader needs, so while readers are active it works in short bursts
// with pauses (a quarter of one core at most) and runs flat out only once
// they go quiet. Bytes are served before their file's verdict either way
// (a file cannot be hashed before all of it has arrived); what a failed
// verdict does is in verifyObject.
type verifier struct {
	c    *Cache
	mu   sync.Mutex
	q    []*Object // GUARDED_BY(mu)
	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

// verifyBlock is how much is hashed between looks at the readers.
const verifyBlock = 4 << 20

func newVerifier(c *Cache) *verifier {
	v := &verifier{c: c, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go v.loop()
	return v
}

func (v *verifier) queue(o *Object) {
	v.mu.Lock()
	v.q = append(v.q, o)
	v.mu.Unlock()
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

func (v *verifier) stop() {
	close(v.quit)
	<-v.done
}

func (v *verifier) loop() {
	defer close(v.done)
	for {
		v.mu.Lock()
		var o *Object
		if len(v.q) > 0 {
			o, v.q = v.q[0], v.q[1:]
		}
		v.mu.Unlock()
		if o == nil {
			select {
			case <-v.wake:
				continue
			case <-v.quit:
				return
			}
		}
		o.verify(v)
	}
}

// pace is called after each block that took d to hash: while readers are
// active it sleeps three times as long. It reports false when the cache is
// closing.
func (v *verifier) pace(d time.Duration) bool {
	if v.c.busy() {
		select {
		case <-time.After(3 * d):
		case <-v.quit:
			return false
		}
	}
	select {
	case <-v.quit:
		return false
	default:
		return true
	}
}

// verify hashes the complete data file. On a match the object is marked
// verified on disk (so a restart skips the hash). On a mismatch its chunks
// are dropped and fetched once more; a second mismatch makes the file fail
// its reads with EIO, because serving bytes known to be wrong is worse.
func (o *Object) verify(v *verifier) {
	want := o.file.Checksum
	if want.IsZero() {
		o.setState(stateComplete)
		return
	}
	o.mu.Lock()
	gen, closed := o.gen, o.closed
	o.mu.Unlock()
	if closed {
		return
	}
	got, err := o.digest(v, want.Algo, gen)
	if errors.Is(err, errStale) {
		return // dropped or closed meanwhile; whoever did it decides what next
	}
	if err != nil {
		o.c.log.Error("cannot verify cached file", "file", o.file.Path, "origin", o.origin, "err", err)
		o.setState(stateFilling)
		return
	}
	if got == want.Value {
		if f, err := os.Create(o.c.objectPath(o.key, ".ok")); err == nil {
			f.Close()
		}
		o.mu.Lock()
		if o.gen == gen {
			o.state = stateVerified
		}
		o.mu.Unlock()
		o.c.opts.Events.Verified(o.file.Path, true)
		return
	}
	o.c.opts.Events.Verified(o.file.Path, false)
	o.mu.Lock()
	o.mismatches++
	retry := o.mismatches < 2
	o.mu.Unlock()
	o.drop()
	if !retry {
		o.mu.Lock()
		o.state = stateBad
		o.lastErr = fmt.Errorf("%s %s: %s mismatch after refetch (want %s, got %s): reads fail with EIO", o.origin, o.file.Path, want.Algo, want.Value, got)
		o.mu.Unlock()
		o.c.log.Error("file failed verification twice; its reads now fail with EIO", "file", o.file.Path, "origin", o.origin, "algo", want.Algo, "want", want.Value, "got", got)
		return
	}
	o.c.log.Warn("file failed verification; dropped its chunks and fetching it again", "file", o.file.Path, "origin", o.origin, "algo", want.Algo, "want", want.Value, "got", got)
	go o.refill()
}

var errStale = errors.New("content changed while hashing")

// digest hashes the data file block by block, pacing itself, and fails
// with errStale if the content is dropped or the cache closed meanwhile.
func (o *Object) digest(v *verifier, algo string, gen uint64) (string, error) {
	h, err := fetch.NewHash(algo, o.file.Size)
	if err != nil {
		return "", err
	}
	buf := o.c.bufs.get(verifyBlock)
	defer o.c.bufs.put(buf)
	for off := int64(0); off < o.file.Size; {
		start := time.Now()
		b := buf[:min(int64(len(buf)), o.file.Size-off)]
		o.dataMu.RLock()
		o.mu.Lock()
		stale := o.gen != gen || o.closed
		o.mu.Unlock()
		if stale {
			o.dataMu.RUnlock()
			return "", errStale
		}
		n, err := o.readData(b, off)
		o.dataMu.RUnlock()
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		if n < len(b) {
			return "", fmt.Errorf("cache file is short: %d bytes at %d, want %d", n, off, len(b))
		}
		h.Write(b)
		off += int64(len(b))
		if !v.pace(time.Since(start)) {
			return "", errStale
		}
	}
	return fetch.SumHex(algo, h), nil
}

func (o *Object) setState(s state) {
	o.mu.Lock()
	o.state = s
	o.mu.Unlock()
}

// drop forgets every chunk: bumps the generation (so in-flight fetches and
// memory-tier entries of the old one are never served), clears the log and
// punches out the data file.
func (o *Object) drop() {
	defer func() {
		o.mu.Lock()
		fns := append([]func(){}, o.onDrop...)
		o.mu.Unlock()
		for _, fn := range fns {
			fn()
		}
	}()
	o.dataMu.Lock()
	defer o.dataMu.Unlock()
	o.mu.Lock()
	oldGen := o.gen
	o.gen++
	for i := range o.present {
		o.present[i] = false
	}
	o.npresent = 0
	o.state = stateFilling
	o.mu.Unlock()
	for i := 0; i < o.nchunks; i++ {
		o.c.mem.del(o.memKey(oldGen, i))
	}
	o.logMu.Lock()
	o.logf.Truncate(0)
	o.logMu.Unlock()
	o.punch()
	os.Remove(o.c.objectPath(o.key, ".ok"))
}

// refill fetches every chunk again after a verification failure, a few at a
// time, so the second verdict comes without waiting for readers.
func (o *Object) refill() {
	sem := make(chan struct{}, 8)
	for i := 0; i < o.nchunks; i++ {
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem }()
			ctx, cancel := contextWithTimeout(o.c.opts.FetchTimeout)
			defer cancel()
			o.Ensure(ctx, i)
		}(i)
	}
	for i := 0; i < cap(sem); i++ {
		sem <- struct{}{}
	}
}

// punch zeroes the data file without changing its size, so a read racing
// the drop sees zeros (then evicted) rather than a short read, which the
// kernel would take for the end of the file.
// LOCKS_REQUIRED(dataMu)
func (o *Object) punch() {
	if o.file.Size == 0 {
		return
	}
	err := unix.Fallocate(int(o.data.Fd()), unix.FALLOC_FL_KEEP_SIZE|unix.FALLOC_FL_PUNCH_HOLE, 0, o.file.Size)
	if err != nil {
		// No hole punching on this filesystem: the gap is only a window
		// of a few microseconds.
		o.data.Truncate(0)
		o.data.Truncate(o.file.Size)
	}
}
