package shared

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"time"
)

// Waiting for a chunk another node fetches: await (under its lease) and
// awaitOwner (its share of the prefetch, members.go).

// await polls for the chunk another node holds the lease on, until it
// lands (hit), the lease expires (nil), a demand read has waited as long
// as the origin would take, or the store fails. The polls back off from
// 20 ms to 250 ms for a reader, and to about 1 s (jittered, so a fleet's
// polls do not fall in step) for readahead and the plan's last pass: the
// store's request rate, not the origin, is what a large fleet runs out of.
//
// On a store whose exclusive create is weak, the lease (lname) is read
// again every ConfirmDelay: errLeaseOurs says it names this node. Two
// mounts of one DFS can each show the other's racing create at the
// read-back (confirmed), so both nodes step back and each waits on the
// other, whose lease is then never renewed nor released: on two SeaweedFS
// mounts the chunk waited out the whole TTL (11 s with the origin idle).
// Once the store settles, the lease names one of them, and that one is
// the node to fetch.
func (t *Tier) await(ctx context.Context, r Request, name, lname string, other leaseDoc, start time.Time) (bool, error) {
	wait := 20 * time.Millisecond
	maxWait := 250 * time.Millisecond
	if r.Mode != Demand {
		maxWait = 750*time.Millisecond + time.Duration(mrand.Int64N(int64(500*time.Millisecond)))
	}
	weak := !t.blobs.ExclusiveCreate()
	recheck := t.now().Add(t.opts.ConfirmDelay)
	for t.now().UnixMilli() < other.Expires {
		if r.Mode == Demand && t.now().Sub(start)+wait > r.OriginTime {
			return false, errOriginSooner
		}
		if err := t.sleep(ctx, wait); err != nil {
			return false, err
		}
		wait = min(wait*2, maxWait)
		if hit, err := t.get(ctx, r, name); hit || err != nil {
			return hit, err
		}
		if weak && !t.now().Before(recheck) {
			recheck = t.now().Add(t.opts.ConfirmDelay)
			if got, err := t.readLease(ctx, lname); err == nil && got.Holder == t.opts.Holder {
				return false, errLeaseOurs
			}
		}
	}
	return false, nil
}

// errLeaseOurs is await's answer when the lease it waits on names this
// node after all.
var errLeaseOurs = errors.New("the lease waited on is this node's")

// awaitOwner polls, about once a second, for a chunk another live node
// owns, until it lands (hit) or the owner is no longer live and this node
// owns it instead (nil), or the store fails.
func (t *Tier) awaitOwner(ctx context.Context, r Request, name string) (bool, error) {
	wait := 50 * time.Millisecond
	for {
		if hit, err := t.get(ctx, r, name); hit || err != nil {
			return hit, err
		}
		if err := t.sleep(ctx, wait); err != nil {
			return false, err
		}
		wait = min(2*wait, 750*time.Millisecond+time.Duration(mrand.Int64N(int64(500*time.Millisecond))))
		t.refreshMembers()
		if mine, split := t.owner(r.Key, r.Index); !split || mine {
			return false, nil
		}
	}
}
