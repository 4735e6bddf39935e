package chunkcache

import (
	"context"

	"golang.org/x/sync/errgroup"

	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/chunkcache/store"
)

// headRange is the size of the first ranged read of a file's first chunk.
// A safetensors header is its first few KiB to a few hundred KiB, and every
// loader reads it before anything else; fetched on its own, it arrives one
// first-byte latency after the request instead of after a whole range.
const headRange = 256 << 10

// call is one in-flight chunk fetch that any number of readers may wait on.
//
// Its buffer is recycled once nobody holds it: the fetch holds one
// reference until the chunk is stored, and every reader that may be handed
// the buffer holds one until its reply has gone out (see unref).
type call struct {
	done   chan struct{} // closed when the bytes are in (or failed)
	stored chan struct{} // closed when they are on disk too and the fetch is over
	err    error         // set before done is closed
	buf    []byte        // the chunk, immutable once done is closed; nil if dropped
	gen    uint64        // the object's generation when the fetch started
	parts  []part        // the ranged reads, in offset order
	owned  []byte        // GUARDED_BY(Object.mu); the buffer, to recycle
	refs   int           // GUARDED_BY(Object.mu); the fetch plus readers holding buf
	kept   bool          // GUARDED_BY(Object.mu); the memory tier took the buffer
	heal   *healState    // set when the file is healing: bytes are confirmed before use
	mode   shared.Mode   // who asked: what a lease held by another node means (tier.go)
}

// part is one ranged read of a chunk fetch. ready is closed once its bytes
// are in the buffer (never on failure); they do not change after that, so a
// reader that needs only them is served without waiting for the rest of
// the chunk. That matters most for the kernel's first small reads of a
// file, and for a loader reading one tensor that starts mid-chunk.
type part struct {
	off, end int64 // within the chunk
	ready    chan struct{}
}

// newCall plans the fetch of chunk idx. A chunk is split into ranges of
// RangeSize, because a single connection is capped (~50 MB/s to a CDN)
// while the link is not. A chunk a reader is already waiting for, and the
// first chunk of every file (a safetensors header, which every loader
// reads before anything else), are split into ranges of half that size:
// that cuts the wait for them, at the price of more requests, which only
// those chunks pay. A first chunk also starts with a headRange read.
func (o *Object) newCall(idx int, gen uint64, mode shared.Mode) *call {
	demand := mode == shared.Demand
	_, cLen := o.chunkBounds(idx)
	rs := o.c.opts.RangeSize
	if (demand || idx == 0) && rs >= 512<<10 {
		rs /= 2
	}
	cl := &call{done: make(chan struct{}), stored: make(chan struct{}), refs: 1, gen: gen, heal: o.heal, mode: mode} // refs: the fetch's
	next := func(s int64) int64 { return min((s/rs+1)*rs, cLen) }
	if idx == 0 && cLen > headRange && rs > headRange {
		next = func(s int64) int64 {
			if s == 0 {
				return headRange
			}
			return min((s/rs+1)*rs, cLen)
		}
	}
	for s := int64(0); s < cLen; {
		e := next(s)
		cl.parts = append(cl.parts, part{off: s, end: e, ready: make(chan struct{})})
		s = e
	}
	return cl
}

// fetchParts reads every part of a chunk at off into buf, in parallel.
// signal says whether readers may be served each part as it arrives.
func (o *Object) fetchParts(ctx context.Context, off int64, buf []byte, parts []part, signal bool) error {
	if len(parts) == 1 {
		if err := o.src.ReadRange(ctx, o.file, off, buf); err != nil {
			return err
		}
		if signal {
			close(parts[0].ready)
		}
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range parts {
		g.Go(func() error {
			if err := o.src.ReadRange(gctx, o.file, off+p.off, buf[p.off:p.end]); err != nil {
				return err
			}
			if signal {
				close(p.ready)
			}
			return nil
		})
	}
	return g.Wait()
}

// awaitParts waits for the parts of cl that hold [within, within+n) and
// returns those bytes as a piece holding the reader's reference. early is
// false when the whole call finished first (the caller then looks at its
// outcome), when n is 0 (background fetches wait for the whole chunk), or
// when content was dropped since the fetch started.
func (o *Object) awaitParts(ctx context.Context, cl *call, within int64, n int) (pc store.Piece, early bool, err error) {
	if n == 0 || len(cl.parts) < 2 {
		return store.Piece{}, false, nil
	}
	end := within + int64(n)
	for _, p := range cl.parts {
		if p.end <= within || p.off >= end {
			continue
		}
		select {
		case <-p.ready:
		case <-cl.done:
			return store.Piece{}, false, nil
		case <-ctx.Done():
			return store.Piece{}, false, ctx.Err()
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.gen != cl.gen || cl.owned == nil {
		return store.Piece{}, false, nil
	}
	return store.Piece{Data: cl.owned[within:end], N: n, Done: func() { o.unref(cl) }}, true, nil
}
