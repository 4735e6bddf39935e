package shared

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
)

// What a node's prefetch plan asks the tier beyond Fill: which chunks of a
// file have landed in the store (Landed), which are this node's to fetch
// (Owns), and a slot to fetch one of them from the origin (slots).
//
// The slots are why chunks land early. A node alone keeps about 8 chunks in
// flight, and they arrive one after another. A fleet whose nodes each put
// their whole share in flight at once has N times as many in flight. The
// origin's bandwidth is split between all of them, so they all land at the
// end of the origin's download, and no node can read another's chunk until
// then: the fleet's copying and hashing come after the download instead of
// beside it. With the slots split between the live nodes, the fleet keeps
// about as many chunks in flight as one node does, and every chunk lands
// as soon as one node alone would have had it.

// DefaultFleetOriginChunks is Options.FleetOriginChunks' default: what one
// node's prefetch starts with (chunkcache's workers adapt from 8).
const DefaultFleetOriginChunks = 8

// errOutOfUse is Landed's answer while the store is out of use.
var errOutOfUse = errors.New("shared cache is out of use after failures")

// slots counts this node's prefetch fetches from the origin.
type slots struct {
	mu    sync.Mutex
	inUse int           // GUARDED_BY(mu)
	freed chan struct{} // GUARDED_BY(mu); closed and replaced when one is given back or the fleet listed
}

// slotLimit is this node's share of the fleet's origin chunks: all of them
// split between the live nodes, at least one; no limit for a node alone.
// A node that has not yet listed the fleet twice does not know that it is
// alone: nodes that start together each see none of the others at first,
// and would each put the whole model in flight. It keeps to startSlots
// until then (a quarter of a second, see refreshMembers).
func (t *Tier) slotLimit() (limit int, known bool) {
	m := &t.members
	m.mu.Lock()
	lists := m.lists
	m.mu.Unlock()
	list, split := t.fleet()
	n := len(list)
	if !split {
		if lists < 2 {
			return startSlots, false
		}
		return int(^uint(0) >> 1), true
	}
	return max(1, (t.opts.FleetOriginChunks+n-1)/n), true
}

// OriginSlots is how many chunks this node's prefetch may fetch from the
// origin at once now.
func (t *Tier) OriginSlots() int {
	n, _ := t.slotLimit()
	return n
}

const startSlots = 1

// takeSlot gets a slot to fetch a chunk from the origin for the prefetch.
// Without wait it reports false at once when none is free, once the node
// knows its fleet (until then it waits: it may be alone, and a node alone
// is never put off); with wait it waits for one, or for ctx.
func (t *Tier) takeSlot(ctx context.Context, wait bool) (release func(), ok bool) {
	s := &t.slots
	for {
		limit, known := t.slotLimit()
		s.mu.Lock()
		if s.inUse < limit {
			s.inUse++
			s.mu.Unlock()
			var once sync.Once
			return func() { once.Do(t.giveSlot) }, true
		}
		if s.freed == nil {
			s.freed = make(chan struct{})
		}
		freed := s.freed
		s.mu.Unlock()
		if !wait && known {
			return nil, false
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return nil, false
		}
	}
}

func (t *Tier) giveSlot() {
	t.slots.mu.Lock()
	t.slots.inUse--
	t.slots.mu.Unlock()
	t.slotsChanged()
}

// slotsChanged wakes the waiters for a slot: one was given back, or the
// fleet was listed (the limit may have moved).
func (t *Tier) slotsChanged() {
	s := &t.slots
	s.mu.Lock()
	if s.freed != nil {
		close(s.freed)
		s.freed = nil
	}
	s.mu.Unlock()
}

// Owns says whether chunk idx of key is this node's to fetch from the
// origin: its share of the fleet's split, or any chunk while the split
// does not apply (a node alone, or one whose record is not in yet).
func (t *Tier) Owns(key string, idx int) bool {
	mine, split := t.owner(key, idx)
	return mine || !split
}

// Landed lists which of the nchunks chunks of key are in the store, with
// one listing. A name that is not a chunk of it in range is ignored: the
// listing is the store's, not ours. It fails when the store does, or is
// out of use (then the caller falls back to Fill, which goes to the
// origin).
//
// It also keeps this node's view of the fleet fresh, as Fill does: a node
// whose own chunks are all in makes no Fill while it waits for the others'
// (gather.go), and with the view it had, a node killed meanwhile stayed
// the owner of its share until gather's stall claim, 30 s later (4 runs of
// 6 of the kill test), instead of until its record aged out.
func (t *Tier) Landed(ctx context.Context, key string, chunkSize int64, nchunks int) ([]bool, error) {
	if !t.h.readable() {
		return nil, errOutOfUse
	}
	t.refreshMembers()
	prefix := strings.TrimSuffix(chunkName(key, chunkSize, 0), "0")
	landed := make([]bool, nchunks)
	err := t.op(ctx, func(ctx context.Context) error {
		clear(landed)
		return t.blobs.List(ctx, prefix, func(bi BlobInfo) error {
			if bi.Temp {
				return nil
			}
			idx, err := strconv.Atoi(strings.TrimPrefix(bi.Name, prefix))
			if err == nil && idx >= 0 && idx < nchunks && strconv.Itoa(idx) == bi.Name[len(prefix):] {
				landed[idx] = true
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return landed, nil
}
