package chunkcache

import (
	"fmt"
	"io"
	"os"

	"github.com/weightfs/weightfs/fetch"
)

// Digest computes the checksum of r (size bytes) with algo, hex encoded.
func Digest(algo string, r io.Reader, size int64) (string, error) {
	return fetch.Digest(algo, r, size)
}

// verify hashes the complete data file. On a match the object is marked
// verified on disk (so a restart skips the hash). On a mismatch its chunks
// are dropped and fetched once more; a second mismatch makes the file fail
// its reads with EIO, because serving bytes known to be wrong is worse.
func (o *Object) verify() {
	want := o.file.Checksum
	if want.IsZero() {
		o.setState(stateComplete)
		return
	}
	o.dataMu.RLock()
	o.mu.Lock()
	gen, closed := o.gen, o.closed
	o.mu.Unlock()
	if closed {
		o.dataMu.RUnlock()
		return
	}
	got, err := Digest(want.Algo, io.NewSectionReader(o.data, 0, o.file.Size), o.file.Size)
	o.dataMu.RUnlock()
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
	o.data.Truncate(0)
	o.data.Truncate(o.file.Size)
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
