package shared

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// GCOptions configure GC.
type GCOptions struct {
	UnusedFor time.Duration // remove objects nobody used for this long (required)
	// TempAge is how old a temporary file (a write a crash abandoned) must
	// be before it goes; default 1 h, far longer than any write takes.
	// It is also how long a lapsed lease, a takeover claim or a node's
	// record must have gone unwritten before it goes (see sweepStale).
	TempAge time.Duration
	DryRun  bool
	Now     time.Time // default time.Now()
}

// GCReport says what GC found and did.
type GCReport struct {
	Objects      int   `json:"objects"` // distinct objects in the store
	Removed      int   `json:"objects_removed"`
	BytesRemoved int64 `json:"bytes_removed"`
	KeptLeased   int   `json:"kept_under_lease"` // unused long enough, but a lease is live
	TempRemoved  int   `json:"temp_removed"`
	// Leases and takeover claims that lapsed with their holder (a node
	// killed mid-fetch leaves one per chunk it was fetching), and the
	// nodes/ records of nodes gone without a clean unmount.
	LeasesRemoved int `json:"stale_leases_removed"`
	NodesRemoved  int `json:"stale_nodes_removed"`
}

// usage is what the store holds of one object.
type usage struct {
	lastUsed time.Time // newest of its access record and its chunks
	chunks   []string
	bytes    int64
	access   bool
}

// GC removes every object nobody has used for o.UnusedFor: its chunks and
// its access record. A node records its use of an object at most every
// Options.AccessEvery, and a chunk's write counts as use too, so the cost
// of knowing is a few small writes per node per object and day. An object
// with a live lease on any chunk is being filled and stays, whatever its
// age; so does a temporary file younger than TempAge. Lapsed leases and
// the records of gone nodes go too (sweepStale).
func GC(ctx context.Context, b Blobs, o GCOptions) (GCReport, error) {
	if o.UnusedFor <= 0 {
		return GCReport{}, fmt.Errorf("gc: --unused-for must be positive")
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.TempAge <= 0 {
		o.TempAge = time.Hour
	}
	var rep GCReport
	objs := map[string]*usage{}
	get := func(key string) *usage {
		u := objs[key]
		if u == nil {
			u = &usage{}
			objs[key] = u
		}
		return u
	}
	var temps []string
	for _, prefix := range []string{"access/", "chunks/"} {
		err := b.List(ctx, prefix, func(bi BlobInfo) error {
			if bi.Temp {
				if o.Now.Sub(bi.ModTime) >= o.TempAge {
					temps = append(temps, bi.Name)
				}
				return nil
			}
			key, ok := objectOf(bi.Name)
			if !ok {
				return nil // not ours: leave it
			}
			u := get(key)
			if bi.ModTime.After(u.lastUsed) {
				u.lastUsed = bi.ModTime
			}
			if prefix == "chunks/" {
				u.chunks = append(u.chunks, bi.Name)
				u.bytes += bi.Size
			} else {
				u.access = true
			}
			return nil
		})
		if err != nil {
			return rep, fmt.Errorf("gc: listing %s in %s: %w", prefix, b, err)
		}
	}
	rep.Objects = len(objs)
	tier := New(b, Options{}) // for reading leases
	// First, so the live-lease checks below do not read again the lapsed
	// leases it removes.
	if err := sweepStale(ctx, tier, o, &rep); err != nil {
		return rep, err
	}
	for key, u := range objs {
		if o.Now.Sub(u.lastUsed) < o.UnusedFor {
			continue
		}
		leased, err := liveLease(ctx, tier, key, o.Now)
		if err != nil {
			return rep, fmt.Errorf("gc: reading leases of %s in %s: %w", key, b, err)
		}
		if leased {
			rep.KeptLeased++
			continue
		}
		rep.Removed++
		rep.BytesRemoved += u.bytes
		if o.DryRun {
			continue
		}
		for _, name := range u.chunks {
			if err := b.Delete(ctx, name); err != nil {
				return rep, fmt.Errorf("gc: deleting %s in %s: %w", name, b, err)
			}
		}
		if u.access {
			if err := b.Delete(ctx, accessName(key)); err != nil {
				return rep, fmt.Errorf("gc: deleting %s in %s: %w", accessName(key), b, err)
			}
		}
	}
	for _, name := range temps {
		if !o.DryRun {
			if err := b.Delete(ctx, name); err != nil {
				return rep, fmt.Errorf("gc: deleting %s in %s: %w", name, b, err)
			}
		}
		rep.TempRemoved++
	}
	return rep, nil
}

// objectOf is the object key in a name "chunks/ab/KEY/..." or "access/ab/KEY".
func objectOf(name string) (string, bool) {
	parts := strings.Split(name, "/")
	if len(parts) < 3 || len(parts[2]) < 2 || parts[1] != parts[2][:2] {
		return "", false
	}
	return parts[2], true
}

// liveLease reports whether any chunk of key is under a lease that has not
// expired (an unreadable lease counts as live: someone may be writing it).
func liveLease(ctx context.Context, t *Tier, key string, now time.Time) (bool, error) {
	var names []string
	err := t.blobs.List(ctx, "leases/"+key[:2]+"/"+key+"/", func(bi BlobInfo) error {
		if !bi.Temp {
			names = append(names, bi.Name)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	for _, n := range names {
		doc, err := t.readLease(ctx, n)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return true, nil
		}
		if now.UnixMilli() < doc.Expires {
			return true, nil
		}
	}
	return false, nil
}

// sweepStale removes what crashed nodes leave behind besides temporary
// files: nothing else ever deletes them. A lease is released (deleted) by
// its holder, and a takeover claim with the lease it took over; a killed
// holder leaves both, and a claim is named after the lease it took over,
// so no later takeover looks at it again. A node's record goes with a clean
// unmount; a crash leaves it to age out of every listing, but not out of
// the store.
//
// Only what has not been written for TempAge is a candidate: a live lease
// is rewritten every third of its TTL and a fetching node's record as
// often. A candidate lease still goes only when it has expired (or cannot
// be read as one): one whose holder set it to last longer stays. Deleting
// a lease a node recreated between the read and the delete costs at most
// one more origin fetch of that chunk, never a wrong byte.
func sweepStale(ctx context.Context, t *Tier, o GCOptions, rep *GCReport) error {
	var leases, nodes []string
	for _, prefix := range []string{"leases/", "nodes/"} {
		err := t.blobs.List(ctx, prefix, func(bi BlobInfo) error {
			if bi.Temp || o.Now.Sub(bi.ModTime) < o.TempAge {
				return nil
			}
			if prefix == "nodes/" {
				nodes = append(nodes, bi.Name)
			} else {
				leases = append(leases, bi.Name)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("gc: listing %s in %s: %w", prefix, t.blobs, err)
		}
	}
	var stale []string
	for _, name := range leases {
		doc, err := t.readLease(ctx, name)
		switch {
		case errors.Is(err, ErrNotFound):
			continue // released meanwhile
		case errors.Is(err, errBadLease):
		case err != nil:
			return fmt.Errorf("gc: reading lease %s in %s: %w", name, t.blobs, err)
		case o.Now.UnixMilli() < doc.Expires:
			continue
		}
		stale = append(stale, name)
	}
	rep.LeasesRemoved, rep.NodesRemoved = len(stale), len(nodes)
	if o.DryRun {
		return nil
	}
	for _, name := range append(stale, nodes...) {
		if err := t.blobs.Delete(ctx, name); err != nil {
			return fmt.Errorf("gc: deleting %s in %s: %w", name, t.blobs, err)
		}
	}
	return nil
}
