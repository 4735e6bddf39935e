package chunkcache

import (
	"context"
	"errors"
	"time"

	"github.com/weightfs/weightfs/chunkcache/shared"
)

// The shared tier (chunkcache/shared) sits between the local store and
// the origin when Options.Shared is set: a chunk missing here is read from
// the fleet's shared store if another node put it there, and fetched from
// the origin under a lease otherwise, then written back. Healing bypasses
// it: a file that failed verification is refetched from the origin alone,
// and its shared chunks are deleted.

// sharedFill is a fill that went through the shared tier, to publish.
type sharedFill struct {
	req *shared.Request // nil: no shared tier
	f   shared.Filled
}

// fill gets chunk idx into buf and reports whether the origin supplied it.
func (o *Object) fill(ctx context.Context, idx int, cl *call, cOff int64, buf []byte) (sharedFill, bool, error) {
	origin := func(ctx context.Context) error {
		start := time.Now()
		err := o.fetchParts(ctx, cOff, buf, cl.parts, cl.heal == nil)
		if err == nil {
			o.c.noteOriginChunk(time.Since(start))
		}
		return err
	}
	t := o.c.opts.Shared
	if t == nil || cl.heal != nil {
		err := origin(ctx)
		if err == nil && cl.heal != nil {
			err = o.confirm(ctx, cl.heal, cOff, buf)
		}
		return sharedFill{}, true, err
	}
	req := &shared.Request{Volume: o.origin, Key: o.key, Index: idx, ChunkSize: o.c.opts.ChunkSize, Buf: buf,
		Mode: cl.mode, Origin: origin, OriginTime: o.c.originChunkTime()}
	f, err := t.Fill(ctx, *req)
	if err != nil {
		return sharedFill{}, false, err
	}
	return sharedFill{req: req, f: f}, f.Source == shared.FromOrigin, nil
}

// publish writes back what the origin gave, once readers were served.
func (o *Object) publish(sf sharedFill) {
	if sf.req != nil {
		o.c.opts.Shared.Publish(*sf.req, sf.f)
	}
}

// forgetShared deletes the shared copies of a file that failed
// verification here, so no node reads them again.
func (o *Object) forgetShared() {
	if t := o.c.opts.Shared; t != nil {
		go t.Forget(o.key, o.c.opts.ChunkSize, o.nchunks)
	}
}

// isDeferred says a prefetch fetch was put off: another node holds the
// chunk's lease. It is neither a failure nor retried: the plan comes back.
func isDeferred(err error) bool { return errors.Is(err, shared.ErrDeferred) }

// originChunkTime is how long a chunk has lately taken from the origin
// (a moving average), 2 s before any was fetched.
func (c *Cache) originChunkTime() time.Duration {
	if ns := c.originNanos.Load(); ns > 0 {
		return time.Duration(ns)
	}
	return 2 * time.Second
}

func (c *Cache) noteOriginChunk(d time.Duration) {
	for {
		old := c.originNanos.Load()
		nw := int64(d)
		if old > 0 {
			nw = (old*7 + int64(d)) / 8
		}
		if c.originNanos.CompareAndSwap(old, nw) {
			return
		}
	}
}

// Shared is the shared tier, or nil.
func (c *Cache) Shared() *shared.Tier { return c.opts.Shared }
