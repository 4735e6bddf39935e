package chunkcache

import (
	"context"
	"fmt"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/weightfs/weightfs/fetch"
)

// Healing a file that failed verification.
//
// A whole-file checksum says that some byte is wrong, not which. Dropping
// the file and fetching it again, as weightfs did first, fails again on an
// origin that corrupts a fifth of its responses: a refetch of hundreds of
// ranges is almost never clean. Instead the file is cut into blocks, and a
// block is kept only once two copies of it agree: the copy on disk (the one
// that failed) is the first candidate, every chunk is fetched again, and a
// block that disagrees with every copy seen so far is fetched alone until
// one matches. Random corruption practically never produces the same wrong
// bytes twice, so the healed file verifies; if it still does not, the origin
// sends the same wrong bytes every time, and only then is the file given
// up on (stateBad).
//
// While a file heals its chunks are absent: a reader waits for the chunk it
// needs to be confirmed, and never sees the bytes that failed.

// healBlockMin is the finest unit of comparison. Ranges of a chunk fetch
// start on multiples of it (see newCall), so a corrupt response spoils few
// blocks and a refetch of one block is one small request.
const healBlockMin = 256 << 10

// maxCopies bounds how many differing copies of one block are compared
// before its fetch fails; the chunk is then retried later from scratch.
const maxCopies = 6

// healState is what is known about the copies of a healing file's blocks.
type healState struct {
	block int64
	ready chan struct{} // closed once first is computed

	mu    sync.Mutex
	first []uint64           // GUARDED_BY(mu); hash of each block of the copy that failed; nil if unreadable
	seen  map[int64][]uint64 // GUARDED_BY(mu); other candidates per block; an empty entry drops first's
}

// newHealState picks the block size: healBlockMin, doubled while the file
// would need more than 2^20 blocks (8 MiB of hashes), and at most a chunk.
func newHealState(size, chunk int64) *healState {
	b := int64(healBlockMin)
	for size/b > 1<<20 && b < chunk {
		b *= 2
	}
	if b > chunk || chunk%b != 0 {
		b = chunk
	}
	return &healState{block: b, ready: make(chan struct{}), seen: map[int64][]uint64{}}
}

// offer reports whether a copy of block b with hash h agrees with one seen
// before, and records it as a candidate if not. full says the block has
// had maxCopies differing copies: its candidates are then forgotten, so a
// later attempt starts afresh.
func (hs *healState) offer(b int64, h uint64) (agreed, full bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	cands, dropped := hs.seen[b]
	if !dropped && hs.first != nil && b < int64(len(hs.first)) && hs.first[b] == h {
		return true, false
	}
	for _, c := range cands {
		if c == h {
			return true, false
		}
	}
	if len(cands)+1 >= maxCopies {
		hs.seen[b] = []uint64{}
		return false, true
	}
	hs.seen[b] = append(cands, h)
	return false, false
}

// mismatch handles a failed verdict of generation gen. A file that was not
// healing starts to; one that was, whose every block had two agreeing
// copies, is corrupt at the origin itself and fails for good.
func (o *Object) mismatch(gen uint64, want fetch.Checksum, got string) {
	o.dataMu.Lock()
	o.mu.Lock()
	if o.gen != gen || o.closed {
		o.mu.Unlock()
		o.dataMu.Unlock()
		return
	}
	persistent := o.heal != nil
	servedBad := o.served.Swap(false)
	o.servedBad = o.servedBad || servedBad
	o.mu.Unlock()
	o.forget()
	var hs *healState
	o.mu.Lock()
	newGen := o.gen
	if persistent {
		o.heal = nil
		o.lastErr = fmt.Errorf("%s %q: %s mismatch (want %s, got %s) though two copies of every block agree: the origin serves the same wrong bytes every time, so its reads fail with EIO; fix the object at the origin, then remount", o.origin, o.file.Path, want.Algo, want.Value, got)
		o.setStateLocked(stateBad)
	} else {
		hs = newHealState(o.file.Size, o.c.opts.ChunkSize)
		o.heal = hs
		o.lastErr = fmt.Errorf("%s %q: %s mismatch (want %s, got %s): healing it", o.origin, o.file.Path, want.Algo, want.Value, got)
	}
	o.mu.Unlock()
	if persistent {
		o.chunks.Punch()
	}
	o.dataMu.Unlock()
	// Not on this goroutine: evicting the kernel's pages waits for the
	// FUSE reads that hold them, and a strict reader's read waits for a
	// verdict from the verifier that runs this.
	go o.notifyDrop()
	if persistent {
		o.c.log.Error("file is corrupt at the origin: two copies of every block agree and still fail verification; its reads now fail with EIO",
			"file", o.file.Path, "origin", o.origin, "algo", want.Algo, "want", want.Value, "got", got)
	} else {
		o.c.log.Warn("file failed verification; healing it: refetching its chunks and keeping blocks two copies agree on",
			"file", o.file.Path, "origin", o.origin, "algo", want.Algo, "want", want.Value, "got", got)
	}
	if servedBad {
		o.c.opts.Events.ServedBad(o.file.Path)
		o.c.log.Error("bytes of this file were served before it failed verification: processes that loaded it must reload it (use --strict-verify, or gate on `weightfs wait`, to never see them)",
			"file", o.file.Path, "origin", o.origin)
	}
	if hs != nil {
		o.forgetShared()
		go o.startHeal(hs, newGen)
	}
}

// startHeal hashes the copy on disk, block by block, then fetches every
// chunk again. Fetches of the new generation wait for the hashes (see
// confirm) and nothing writes to the data file until they are in.
func (o *Object) startHeal(hs *healState, gen uint64) {
	first, err := o.hashStored(hs.block, gen)
	hs.mu.Lock()
	if err == nil {
		hs.first = first
	}
	hs.mu.Unlock()
	close(hs.ready)
	if err != nil {
		o.c.log.Debug("cannot hash the failed copy; healing from fresh copies only", "file", o.file.Path, "err", err)
	}
	o.fillAll()
}

// hashStored hashes every block of the data file.
func (o *Object) hashStored(block int64, gen uint64) ([]uint64, error) {
	n := (o.file.Size + block - 1) / block
	out := make([]uint64, 0, n)
	buf := o.c.bufs.Get(o.c.opts.ChunkSize)
	defer o.c.bufs.Put(buf)
	for off := int64(0); off < o.file.Size; {
		b := buf[:min(int64(len(buf)), o.file.Size-off)]
		if err := o.readStored(b, off, gen); err != nil {
			return nil, err
		}
		for s := int64(0); s < int64(len(b)); s += block {
			out = append(out, xxhash.Sum64(b[s:min(s+block, int64(len(b)))]))
		}
		off += int64(len(b))
	}
	return out, nil
}

// confirm checks a healing chunk fetched into buf (at cOff of the file)
// block by block, fetching a block again alone until a copy agrees with
// one seen before. buf then holds confirmed bytes only.
func (o *Object) confirm(ctx context.Context, hs *healState, cOff int64, buf []byte) error {
	select {
	case <-hs.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	for s := int64(0); s < int64(len(buf)); s += hs.block {
		blk := buf[s:min(s+hs.block, int64(len(buf)))]
		b := (cOff + s) / hs.block
		for {
			agreed, full := hs.offer(b, xxhash.Sum64(blk))
			if agreed {
				break
			}
			if full {
				return fmt.Errorf("healing: %d copies of bytes %d-%d from the origin all differ", maxCopies, cOff+s, cOff+s+int64(len(blk))-1)
			}
			if err := o.src.ReadRange(ctx, o.file, cOff+s, blk); err != nil {
				return err
			}
		}
	}
	return nil
}

// fillAll fetches every absent chunk: after a failed verdict (healing),
// and for a strict reader, who needs the whole file before its first byte.
// Every fillAll of the cache shares one budget of chunks in flight
// (Cache.fills, half the workers): four strict loaders opening four shards
// at once must not put a hundred ranges on a link that carries a few, or
// none of them finishes within its deadline. Failures are left to the
// retries (noteFailure).
func (o *Object) fillAll() {
	var wg sync.WaitGroup
	for i := 0; i < o.nchunks; i++ {
		if o.Present(i) {
			continue
		}
		select {
		case o.c.fills <- struct{}{}:
		case <-o.c.sched.ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func(i int) {
			defer func() { <-o.c.fills; wg.Done() }()
			ctx, cancel := context.WithTimeout(o.c.sched.ctx, o.c.opts.FetchTimeout)
			defer cancel()
			o.Ensure(ctx, i)
		}(i)
	}
	wg.Wait()
}
