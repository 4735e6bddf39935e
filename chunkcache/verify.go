package chunkcache

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"time"

	"github.com/weightfs/weightfs/chunkcache/store"
	"github.com/weightfs/weightfs/fetch"
)

// verifier hashes complete files, one at a time, in the background. Hashing
// a model costs about a core-second per 2 GB, which on a small machine is
// CPU a loader needs, so while readers are active it works in short bursts
// with pauses (a quarter of one core at most) and runs flat out only once
// they go quiet. Most of a file is usually hashed already, from the fetch
// buffers as its chunks were stored in order (store.InOrder); the verifier
// then reads back only the rest. Bytes are served before their file's verdict either way
// (a file cannot be hashed before all of it has arrived); what a failed
// verdict does is in verifyObject.
type verifier struct {
	c    *Cache
	mu   sync.Mutex
	q    []*Object // GUARDED_BY(mu)
	wake chan struct{}
	quit chan struct{}
	done chan struct{}

	seenReads int64 // client reads counted at the last block (loop goroutine only)
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
// active (one read since the last block, or one waits on the network) it
// sleeps three times as long. It reports false when the cache is closing.
func (v *verifier) pace(d time.Duration) bool {
	// A strict reader waiting for a verdict needs this very work done.
	if v.c.busySince(&v.seenReads) && v.c.verdictWaiters.Load() == 0 {
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
// verified on disk (so a restart skips the hash). On a mismatch the file is
// healed (heal.go): every chunk is fetched again and kept only once two
// copies of each of its blocks agree, then the file is verified again. A
// mismatch of a healed file means the origin serves the same wrong bytes
// every time; only then do its reads fail with EIO for good.
func (o *Object) verify(v *verifier) {
	want := o.file.Checksum
	if want.IsZero() {
		o.mu.Lock()
		o.setStateLocked(stateComplete)
		o.mu.Unlock()
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
		// The cache file could not be read back: try again later.
		o.noteFailure(-1, fmt.Errorf("%s %s: verifying the cached file: %w", o.origin, fetch.QuoteName(o.file.Path), err))
		return
	}
	if got == want.Value {
		o.chunks.MarkVerified()
		o.mu.Lock()
		healed := o.heal != nil
		if o.gen == gen {
			o.heal = nil
			o.lastErr = nil
			o.setStateLocked(stateVerified)
		}
		o.mu.Unlock()
		o.c.opts.Events.Verified(o.file.Path, true)
		if healed {
			o.c.log.Info("file healed and verified", "file", o.file.Path, "origin", o.origin)
		}
		return
	}
	o.c.opts.Events.Verified(o.file.Path, false)
	o.mismatch(gen, want, got)
}

var errStale = errors.New("content changed while hashing")

// digest hashes the data file block by block, pacing itself, and fails
// with errStale if the content is dropped or the cache closed meanwhile.
// What the store already hashed in order as the chunks were put (see
// store.InOrder) is taken over, not read again: when chunks arrive mostly
// in order, as they do for a loader reading a file front to back, nothing
// is left to read.
func (o *Object) digest(v *verifier, algo string, gen uint64) (string, error) {
	h, off, err := o.takeHash(algo, gen)
	if err != nil {
		return "", err
	}
	o.c.log.Debug("verifying", "file", o.file.Path, "hashed_as_stored", off, "to_read_back", o.file.Size-off)
	if off < o.file.Size {
		buf := o.c.bufs.Get(verifyBlock)
		defer o.c.bufs.Put(buf)
		for off < o.file.Size {
			start := time.Now()
			b := buf[:min(int64(len(buf)), o.file.Size-off)]
			if err := o.readStored(b, off, gen); err != nil {
				return "", err
			}
			h.Write(b)
			off += int64(len(b))
			if !v.pace(time.Since(start)) {
				return "", errStale
			}
		}
	}
	return fetch.SumHex(algo, h), nil
}

// newHasher starts the store's in-order hash of the file's chunks (see
// store.InOrder), where the store offers one and the file has a checksum.
// Called before every put; only the first call of a generation counts.
func (o *Object) newHasher() {
	ih, ok := o.chunks.(store.InOrder)
	want := o.file.Checksum
	if !ok || want.IsZero() {
		return
	}
	if _, err := fetch.NewHash(want.Algo, o.file.Size); err != nil {
		return // the verifier reports it
	}
	ih.HashInOrder(func() hash.Hash {
		h, _ := fetch.NewHash(want.Algo, o.file.Size)
		return h
	})
}

// takeHash returns a hash of the file's first off bytes of generation
// gen: the store's in-order hash where it kept one, else a fresh hash and
// off 0.
func (o *Object) takeHash(algo string, gen uint64) (hash.Hash, int64, error) {
	o.dataMu.RLock()
	o.mu.Lock()
	stale := o.gen != gen || o.closed
	o.mu.Unlock()
	var h hash.Hash
	var off int64
	if ih, ok := o.chunks.(store.InOrder); ok && !stale {
		h, off = ih.TakeHash()
	}
	o.dataMu.RUnlock()
	if stale {
		return nil, 0, errStale
	}
	if h != nil && algo == o.file.Checksum.Algo {
		return h, off, nil
	}
	h, err := fetch.NewHash(algo, o.file.Size)
	return h, 0, err
}

// readStored fills b with the stored bytes at off of generation gen, or
// fails with errStale once content was dropped or the cache closed.
func (o *Object) readStored(b []byte, off int64, gen uint64) error {
	o.dataMu.RLock()
	defer o.dataMu.RUnlock()
	o.mu.Lock()
	stale := o.gen != gen || o.closed
	o.mu.Unlock()
	if stale {
		return errStale
	}
	n, err := o.chunks.ReadStored(b, off)
	if n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			err = fmt.Errorf("%d bytes at %d, want %d", n, off, len(b))
		}
		return fmt.Errorf("cache file is short: %w", err)
	}
	return nil
}

// setStateLocked changes the state and wakes everyone waiting for a change
// (strict readers).
// LOCKS_REQUIRED(mu)
func (o *Object) setStateLocked(s state) {
	o.state = s
	o.progress = time.Now()
	close(o.stateCh)
	o.stateCh = make(chan struct{})
}

// forget marks every chunk absent under a new generation, so in-flight
// fetches of the old one are never served, and drops them in the store
// (its presence log, verified mark and memory copies). The bytes stay in
// the data file (healing compares against them) until punched.
// LOCKS_REQUIRED(dataMu, exclusive)
func (o *Object) forget() {
	o.mu.Lock()
	o.gen++
	o.setStateLocked(stateFilling)
	o.mu.Unlock()
	o.chunks.Drop()
}

// notifyDrop tells the layers above that content they may hold is gone.
func (o *Object) notifyDrop() {
	o.mu.Lock()
	fns := append([]func(){}, o.onDrop...)
	o.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}
