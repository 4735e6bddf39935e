package shared

import (
	"context"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Members splits a fleet's prefetch between its nodes without any service
// of their own: each node keeps a record nodes/<holder> fresh in the store
// while it fetches (rewritten at most every LeaseTTL/3, from Fill and
// Landed, so an idle node writes nothing), and lists nodes/ at most every
// 2 s (250 ms while it knows no other). A chunk's owner is the live node
// that rendezvous hashing picks for it, so when a node joins or dies only
// its share moves. Prefetch fetches only the chunks this node owns (the
// others return ErrDeferred at once, with no request made), and the plan's
// last, patient pass waits for the owners' chunks to land instead of
// racing them for leases. That split is what
// keeps the dedupe on a store whose exclusive create is weak: two nodes
// rarely reach for one chunk at all.
type members struct {
	mu     sync.Mutex
	list   []string  // GUARDED_BY(mu); live holders, sorted
	listed time.Time // GUARDED_BY(mu); when list was read
	lists  int       // GUARDED_BY(mu); listings read so far
	wrote  time.Time // GUARDED_BY(mu); when our record was last written
	busy   bool      // GUARDED_BY(mu); a refresh is running
}

const membersEvery = 2 * time.Second

// memberLife is how old a record may be (by the store's clock) and still be
// a live node's: 1.5 lease TTLs. A node that fetches rewrites it every third
// of a TTL, as it renews its leases, so by then it has missed four
// rewrites: the same test as a lapsed lease, with room for a write that a
// slow store holds up, and for clocks a little apart. It was 3 TTLs, and
// the fleet then waited that long for a killed node's share (30 s by
// default).
func memberLife(ttl time.Duration) time.Duration { return ttl * 3 / 2 }

func memberName(holder string) string { return "nodes/" + holder }

// refreshMembers rewrites our record and re-lists, when due. It runs on its
// own goroutine, so no Fill waits for it.
func (t *Tier) refreshMembers() {
	now := t.now()
	m := &t.members
	m.mu.Lock()
	// While no other node is known, list 8 times as often: nodes that
	// start together each see themselves alone until the first listing
	// after the others' records are in, and fetch as if alone till then.
	every := membersEvery
	if len(m.list) < 2 {
		every = membersEvery / 8
	}
	due := !m.busy && (now.Sub(m.wrote) >= t.opts.LeaseTTL/3 || now.Sub(m.listed) >= every)
	if due {
		m.busy = true
	}
	m.mu.Unlock()
	if !due {
		return
	}
	go func() {
		defer func() {
			m.mu.Lock()
			m.busy = false
			m.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), t.opts.OpTimeout)
		defer cancel()
		m.mu.Lock()
		write := now.Sub(m.wrote) >= t.opts.LeaseTTL/3
		m.mu.Unlock()
		if write {
			doc := []byte(`{"holder":` + strconv.Quote(t.opts.Holder) + `}`)
			if t.op(ctx, func(ctx context.Context) error {
				return t.blobs.Put(ctx, memberName(t.opts.Holder), [][]byte{doc}, false)
			}) == nil {
				m.mu.Lock()
				m.wrote = now
				m.mu.Unlock()
			}
		}
		life := memberLife(t.opts.LeaseTTL)
		var live []string
		err := t.op(ctx, func(ctx context.Context) error {
			live = live[:0]
			return t.blobs.List(ctx, "nodes/", func(bi BlobInfo) error {
				if !bi.Temp && t.now().Sub(bi.ModTime) < life && len(live) < maxMembers {
					live = append(live, bi.Name[len("nodes/"):])
				}
				return nil
			})
		})
		if err != nil {
			return
		}
		sort.Strings(live)
		m.mu.Lock()
		if !slices.Equal(m.list, live) {
			t.log.Debug("shared cache: the fleet changed", "nodes", len(live), "was", len(m.list))
		}
		m.list, m.listed = live, t.now()
		m.lists++
		again := m.lists < 2
		m.mu.Unlock()
		t.slotsChanged()
		if again {
			// Until it has listed twice a node keeps to one origin slot
			// (plan.go), so the second listing is not left to the next
			// Fill: that may be waiting for the slot.
			time.AfterFunc(membersEvery/8, t.refreshMembers)
		}
	}()
}

// dropLapsed takes holder out of the fleet when this node took over a
// lease of its that had lapsed. A fetching node renews its leases every
// third of a TTL, so it missed three renewals: most likely it is dead (kill
// -9, a lost machine). Its record is deleted, so every node splits its
// share again at its next listing (2 s), instead of when the record ages
// out (memberLife, 15 s by default, the dead node's share of the model
// waiting all that time). A node that was only stalled writes its record
// again at its next fetch and rejoins; that costs a few of its chunks
// fetched twice. Only a holder in the last listing is dropped: a lease's holder is
// the store's word, not a name to delete on.
func (t *Tier) dropLapsed(holder string) {
	m := &t.members
	m.mu.Lock()
	i := slices.Index(m.list, holder)
	if i < 0 || holder == t.opts.Holder {
		m.mu.Unlock()
		return
	}
	m.list = slices.Delete(slices.Clone(m.list), i, i+1) // fleet() hands out the old one
	m.mu.Unlock()
	t.slotsChanged()
	t.log.Debug("shared cache: a node let its lease lapse; taken out of the fleet", "holder", holder)
	go t.deleteQuietly(memberName(holder))
}

// maxMembers bounds what a listing of nodes/ may make us hold.
const maxMembers = 100000

// owner says whether this node owns chunk idx of key, and whether the
// split applies at all (more than one live node known, this one among
// them).
func (t *Tier) owner(key string, idx int) (mine, split bool) {
	list, split := t.fleet()
	if !split {
		return true, false
	}
	var best string
	var bestW uint64
	id := key + "/" + strconv.Itoa(idx) + "/"
	for _, h := range list {
		if w := xxhash.Sum64String(id + h); best == "" || w > bestW {
			best, bestW = h, w
		}
	}
	return best == t.opts.Holder, true
}

// fleet is the live nodes as last listed, and whether the split applies:
// more than one node, this one among them (until our record is in, we
// fetch as if alone).
func (t *Tier) fleet() (list []string, split bool) {
	m := &t.members
	m.mu.Lock()
	list = m.list
	m.mu.Unlock()
	return list, len(list) >= 2 && slices.Contains(list, t.opts.Holder)
}

// Leave deletes this node's record, so the fleet stops counting on it at
// once rather than memberLife later: the chunks it owned but did not
// deliver go to the others now. A clean unmount calls it; a crash leaves
// the record to age out. Nil-safe.
func (t *Tier) Leave() {
	if t == nil {
		return
	}
	m := &t.members
	m.mu.Lock()
	wrote := !m.wrote.IsZero()
	m.mu.Unlock()
	if !wrote {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(t.opts.OpTimeout, 2*time.Second))
	defer cancel()
	_ = t.op(ctx, func(ctx context.Context) error { return t.blobs.Delete(ctx, memberName(t.opts.Holder)) })
}
