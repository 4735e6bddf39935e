package fleetsim

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/weightfs/weightfs/chunkcache/shared"
)

// The shared store as the simulated nodes reach it: latency, each node's
// link, the store's aggregate bandwidth, injected errors, a weak
// exclusive create and the kill switch.

// nodeStore is the store as one node sees it.
type nodeStore struct{ n *node }

var _ shared.Blobs = nodeStore{}

func (b nodeStore) String() string        { return "sim://store" }
func (b nodeStore) ExclusiveCreate() bool { return !b.n.f.s.Weak }

// begin counts a request, waits its latency and maybe fails it.
func (b nodeStore) begin(ctx context.Context, count func(*Ops)) error {
	n := b.n
	if n.dead.Load() {
		return errDead
	}
	n.f.reqs.Add(1)
	fail := n.f.s.StoreErrRate > 0 && rand.Float64() < n.f.s.StoreErrRate
	n.mu.Lock()
	count(&n.ops)
	if fail {
		n.ops.Failed++
	}
	n.mu.Unlock()
	at := time.Now().Add(n.f.s.StoreLatency)
	if n.f.reqCap != nil {
		if slot := n.f.reqCap.reserve(1); slot.After(at) {
			at = slot
		}
	}
	if err := sleepUntil(ctx, at); err != nil {
		n.timedOut()
		return err
	}
	if fail {
		return errInjected
	}
	return nil
}

// transfer paces size bytes through the node's link and the store.
func (b nodeStore) transfer(ctx context.Context, size int) error {
	for size > 0 {
		k := min(size, piece)
		t1, t2 := b.n.link.reserve(k), b.n.f.store.reserve(k)
		if t2.After(t1) {
			t1 = t2
		}
		if err := sleepUntil(ctx, t1); err != nil {
			b.n.timedOut()
			return err
		}
		size -= k
	}
	return nil
}

func (b nodeStore) Open(ctx context.Context, name string) (rc io.ReadCloser, sz int64, err error) {
	var hit bool
	count := func(o *Ops) {
		switch {
		case strings.HasPrefix(name, "leases/"):
			o.LeaseGet++
		case strings.HasPrefix(name, "chunks/"):
			// decided below, once we know; provisional
		default:
			o.Other++
		}
	}
	b.n.f.gets.Add(1)
	if err := b.begin(ctx, count); err != nil {
		if strings.HasPrefix(name, "chunks/") {
			b.n.mu.Lock()
			b.n.ops.ChunkGetMiss++
			b.n.mu.Unlock()
		}
		return nil, 0, err
	}
	r, size, err := b.n.f.mem.Open(ctx, name)
	hit = err == nil
	if strings.HasPrefix(name, "chunks/") {
		b.n.mu.Lock()
		if hit {
			b.n.ops.ChunkGetHit++
		} else {
			b.n.ops.ChunkGetMiss++
		}
		b.n.mu.Unlock()
	}
	if err != nil {
		return nil, 0, err
	}
	if err := b.transfer(ctx, int(size)); err != nil {
		r.Close()
		return nil, 0, err
	}
	return r, size, nil
}

func (b nodeStore) Put(ctx context.Context, name string, data [][]byte, ifAbsent bool) (err error) {
	b.n.f.puts.Add(1)
	existed := false
	if ifAbsent && b.n.f.s.Weak {
		if r, _, err := b.n.f.mem.Open(ctx, name); err == nil {
			r.Close()
			existed = true
		}
	}
	err = b.begin(ctx, func(o *Ops) {
		switch {
		case strings.HasPrefix(name, "leases/"):
			o.LeasePut++
		case strings.HasPrefix(name, "chunks/"):
			o.ChunkPut++
		default:
			o.Other++
		}
	})
	if err != nil {
		return err
	}
	size := 0
	for _, d := range data {
		size += len(d)
	}
	if err := b.transfer(ctx, size); err != nil {
		return err
	}
	if b.n.dead.Load() {
		return errDead
	}
	switch {
	case existed:
		err = fmt.Errorf("%s: %w", name, shared.ErrExists)
	case b.n.f.s.Weak:
		err = b.n.f.mem.Put(ctx, name, data, false)
	default:
		err = b.n.f.mem.Put(ctx, name, data, ifAbsent)
	}
	if err == nil && strings.HasPrefix(name, "chunks/") {
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			if idx, e := strconv.Atoi(name[i+1:]); e == nil && idx < len(b.n.f.landed) {
				b.n.f.landed[idx].CompareAndSwap(0, int64(time.Since(b.n.f.start)))
			}
		}
	}
	return err
}

func (b nodeStore) Delete(ctx context.Context, name string) (err error) {
	if err := b.begin(ctx, func(o *Ops) { o.Delete++ }); err != nil {
		return err
	}
	return b.n.f.mem.Delete(ctx, name)
}

func (b nodeStore) List(ctx context.Context, prefix string, fn func(shared.BlobInfo) error) error {
	if err := b.begin(ctx, func(o *Ops) { o.Other++ }); err != nil {
		return err
	}
	return b.n.f.mem.List(ctx, prefix, fn)
}

func (b nodeStore) Free(ctx context.Context) (int64, error) {
	if err := b.begin(ctx, func(o *Ops) { o.Other++ }); err != nil {
		return -1, err
	}
	return b.n.f.mem.Free(ctx)
}
