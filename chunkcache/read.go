package chunkcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/chunkcache/store"
)

// ReadAt fills p from offset off. It returns fewer bytes only at end of
// file. Reads of different chunks, or of present chunks, never wait on each
// other; readers of one missing chunk share one fetch.
func (o *Object) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if o.c.opts.StrictVerify {
		if err := o.awaitVerified(ctx); err != nil {
			return 0, err
		}
	}
	p = o.clientRead(p, off)
	if len(p) == 0 {
		return 0, nil
	}
	return o.copyOut(ctx, p, off)
}

// readInternal is ReadAt for the cache's own planning (safetensors headers,
// index files): it is not a client's read, so it neither starts a
// readahead stream (one per shard would queue every shard's first 64 MiB
// ahead of the loader's order) nor makes background work yield.
func (o *Object) readInternal(ctx context.Context, p []byte, off int64) (int, error) {
	if p = o.clip(p, off); len(p) == 0 {
		return 0, nil
	}
	// Not a reader's: with a shared tier it waits for a chunk another node
	// is fetching rather than race it to the origin (shared.Readahead).
	return o.copyOutAs(ctx, p, off, shared.Readahead)
}

// clip cuts p to the bytes of the file from off.
func (o *Object) clip(p []byte, off int64) []byte {
	if off >= o.file.Size {
		return p[:0]
	}
	if rem := o.file.Size - off; int64(len(p)) > rem {
		p = p[:rem]
	}
	return p
}

// clientRead clips p to the file and records a client read of it at off
// (readahead follows it; background work yields to it). A read of a file
// not verified yet is remembered: if the file then fails verification, its
// readers are told to reload (see mismatch).
func (o *Object) clientRead(p []byte, off int64) []byte {
	if p = o.clip(p, off); len(p) > 0 {
		o.c.clientReads.Add(1)
		// The flag is read first without the lock: once set, the reads of
		// a load that follow cost nothing more here.
		if !o.file.Checksum.IsZero() && !o.served.Load() {
			o.mu.Lock()
			if o.state != stateVerified {
				o.served.Store(true)
			}
			o.mu.Unlock()
		}
		o.noteAccess(off, int64(len(p)))
	}
	return p
}

// ReadRef is ReadAt without the copy where it can: when the bytes asked for
// lie in one chunk, it returns them as a slice of a buffer that is never
// modified (data) or as a section of the cache file (sec) that the caller
// can splice to the kernel, so the daemon never touches them. Otherwise
// they are copied into dest and data is a prefix of dest.
//
// done, when not nil, must be called once the caller is through with data
// or sec (after the reply went out): the buffer is then reused, and the
// chunk may be evicted (budget.go).
func (o *Object) ReadRef(ctx context.Context, dest []byte, off int64) (data []byte, sec *io.SectionReader, done func(), err error) {
	if o.c.opts.StrictVerify {
		if err := o.awaitVerified(ctx); err != nil {
			return nil, nil, nil, err
		}
	}
	dest = o.clientRead(dest, off)
	if len(dest) == 0 {
		return dest, nil, nil, nil
	}
	idx := int(off / o.c.opts.ChunkSize)
	cOff, cLen := o.chunkBounds(idx)
	within := off - cOff
	if within+int64(len(dest)) > cLen {
		n, err := o.copyOut(ctx, dest, off)
		return dest[:n], nil, nil, err
	}
	pc, err := o.readChunk(ctx, idx, within, len(dest), true)
	if err != nil {
		return nil, nil, nil, err
	}
	if pc.Data != nil {
		return pc.Data, nil, pc.Done, nil
	}
	return nil, io.NewSectionReader(pc.File, pc.Off, int64(pc.N)), pc.Done, nil
}

// copyOut copies [off, off+len(p)) into p, chunk by chunk, for a reader.
func (o *Object) copyOut(ctx context.Context, p []byte, off int64) (int, error) {
	return o.copyOutAs(ctx, p, off, shared.Demand)
}

// copyOutAs is copyOut for a read asked for by mode.
func (o *Object) copyOutAs(ctx context.Context, p []byte, off int64, mode shared.Mode) (int, error) {
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		idx := int(pos / o.c.opts.ChunkSize)
		cOff, cLen := o.chunkBounds(idx)
		within := pos - cOff
		want := int(min(int64(len(p)-n), cLen-within))
		pc, err := o.readChunkAs(ctx, idx, within, want, mode)
		if err != nil {
			return n, err
		}
		if pc.Data != nil {
			copy(p[n:n+want], pc.Data)
		} else if _, err := pc.File.ReadAt(p[n:n+want], pc.Off); err != nil && !errors.Is(err, io.EOF) {
			pc.Release()
			return n, fmt.Errorf("%s %s: reading cache file: %w", o.origin, o.file.Path, err)
		}
		pc.Release()
		n += want
	}
	return n, nil
}

// readChunk locates n bytes of chunk idx from offset within, fetching the
// chunk if needed. demand says a reader is waiting (as opposed to prefetch).
//
// A file piece is read after the locks are released. That is safe because
// content is only ever dropped by punching a hole (the file keeps its size,
// so a racing read sees zeros, never a short read that the kernel would
// take for end of file) and a drop evicts the kernel's copy afterwards.
func (o *Object) readChunk(ctx context.Context, idx int, within int64, n int, demand bool) (store.Piece, error) {
	mode := shared.Readahead
	if demand {
		mode = shared.Demand
	}
	return o.readChunkAs(ctx, idx, within, n, mode)
}

// readChunkAs is readChunk for a fetch asked for by mode: a prefetch
// (shared.Background) gives up on a chunk another node of the fleet is
// fetching, and comes back to it later.
func (o *Object) readChunkAs(ctx context.Context, idx int, within int64, n int, mode shared.Mode) (store.Piece, error) {
	demand := mode == shared.Demand
	for attempt := 0; ; attempt++ {
		o.dataMu.RLock()
		o.mu.Lock()
		if o.state == stateBad {
			o.mu.Unlock()
			o.dataMu.RUnlock()
			return store.Piece{}, fmt.Errorf("%s %s: %w", o.origin, o.file.Path, ErrBadContent)
		}
		gen := o.gen
		if o.chunks.Present(idx) {
			h := o.holdLocked(idx) // not evicted while read (budget.go)
			o.mu.Unlock()
			o.dataMu.RUnlock()
			return h.piece(o.presentPiece(idx, within, n)), nil
		}
		cl, ok := o.inflight[idx]
		if !ok {
			if !o.c.startFetch() {
				o.mu.Unlock()
				o.dataMu.RUnlock()
				return store.Piece{}, fmt.Errorf("%s %s: %w", o.origin, o.file.Path, ErrClosed)
			}
			cl = o.newCall(idx, gen, mode)
			o.inflight[idx] = cl
			go o.fetch(idx, cl)
		}
		if demand {
			o.waiters[idx] = struct{}{}
		}
		if n > 0 {
			cl.refs++ // this reader may be handed the buffer
		}
		o.mu.Unlock()
		o.dataMu.RUnlock()
		if demand {
			o.c.opts.Events.Miss()
			o.c.sched.readerWaits()
		}
		start := time.Now()
		// A background fetch (n == 0) waits until the chunk is stored, so
		// chunk buffers being written out count against the workers and
		// a slow disk slows prefetch instead of piling up buffers.
		wait := cl.done
		if n == 0 && !demand {
			wait = cl.stored
		}
		// A reader needing only part of the chunk is served as soon as the
		// ranges holding it are in.
		pc, early, err := o.awaitParts(ctx, cl, within, n)
		if !early && err == nil {
			select {
			case <-wait:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		if err != nil {
			err = fmt.Errorf("%s %s: waiting for chunk %d: %w", o.origin, o.file.Path, idx, err)
		}
		if demand {
			o.c.sched.readerDone()
			o.c.opts.Events.Waited(time.Since(start))
		}
		if early {
			return pc, nil
		}
		if err != nil || cl.err != nil || cl.buf == nil {
			if n > 0 {
				o.unref(cl)
			}
		}
		if err != nil {
			return store.Piece{}, err
		}
		if cl.err != nil && isDeferred(cl.err) && mode != shared.Background {
			// Joined a prefetch that was put off: fetch it as asked.
			continue
		}
		if cl.err != nil {
			return store.Piece{}, cl.err
		}
		if cl.buf != nil {
			pc := store.Piece{Data: cl.buf[within : within+int64(n)], N: n}
			if n > 0 {
				pc.Done = func() { o.unref(cl) }
			}
			return pc, nil
		}
		// The fetch finished but its bytes were dropped (verification
		// failed meanwhile): look again, a bounded number of times.
		if attempt >= 2 {
			return store.Piece{}, fmt.Errorf("%s %s: chunk %d: content dropped during read", o.origin, o.file.Path, idx)
		}
	}
}

// presentPiece serves a present chunk from the store: its memory tier, or
// the data file.
func (o *Object) presentPiece(idx int, within int64, n int) store.Piece {
	if n == 0 {
		return store.Piece{}
	}
	pc, tier := o.chunks.Get(idx, within, n)
	o.c.opts.Events.Hit(tier)
	return pc
}

// Ensure makes chunk idx present (fetching it if needed) without copying it
// anywhere; prefetch and readahead use it.
func (o *Object) Ensure(ctx context.Context, idx int) error {
	if idx < 0 || idx >= o.nchunks {
		return nil
	}
	_, err := o.readChunk(ctx, idx, 0, 0, false)
	return err
}

// ensurePlan is Ensure for the prefetch plan: with a shared tier, a chunk
// another node is fetching is left to it (shared.ErrDeferred), so the
// nodes of a fleet split the model between them.
func (o *Object) ensurePlan(ctx context.Context, idx int) error {
	if idx < 0 || idx >= o.nchunks {
		return nil
	}
	_, err := o.readChunkAs(ctx, idx, 0, 0, shared.Background)
	return err
}

// ensureFinal is Ensure for the plan's last pass: a chunk another node of
// the fleet owns is waited for (shared.Patient).
func (o *Object) ensureFinal(ctx context.Context, idx int) error {
	if idx < 0 || idx >= o.nchunks {
		return nil
	}
	_, err := o.readChunkAs(ctx, idx, 0, 0, shared.Patient)
	return err
}
