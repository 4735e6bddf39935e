package chunkcache

import (
	"context"
	mrand "math/rand/v2"
	"time"

	"github.com/weightfs/weightfs/chunkcache/shared"
)

// gather is the plan's last pass with a shared tier. What is still missing
// then is the chunks other nodes own (put off when the plan reached them)
// and this node's own that found no free origin slot (shared/plan.go).
//
// Waiting on them one by one in file order would block a worker on a chunk
// its owner fetches last, while chunks that have landed wait behind it. So
// each round asks the store which chunks of a file have landed, with one
// listing per file, and queues those: they are read from the store at once.
// It queues this node's own chunks too, a few more than it has origin
// slots, since each waits for one. Then it looks again: soon after a round
// that found something, later after one that did not (up to the time
// between two chunks landing in the fleet, at most a second, see
// gatherCap). The rounds end when every chunk is here; nothing runs
// once the model is in.
//
// A chunk whose owner is live but never delivers it (a node that serves
// other models, or whose write-back the store lost) is claimed, under a
// lease as readahead is, after gatherStall without any progress. Every
// chunk is claimed at once when the store cannot list. (Letting only the
// node next in line claim at first did worse on two SeaweedFS mounts,
// whose nodes see the fleet differently at moments: egress 1.7-2.3x the
// model in 4 runs of 4, against 1.0x in most runs with every node.)
func (p *Prefetcher) gather(ctx context.Context, ch chan job, objs []*Object) {
	t := p.c.opts.Shared
	sent := map[job]time.Time{}
	wait := gatherMinWait
	lastProgress := time.Now()
	present := -1
	claimed := false // logged once
	start := 0       // files are listed from here, gatherLists a round
	for {
		n, missing := 0, 0
		progressed := false
		stalled := time.Since(lastProgress) > p.gatherStall()
		if stalled && !claimed {
			claimed = true
			p.c.log.Debug("prefetch: no chunk arrived for a while; claiming the other nodes' chunks too", "since", time.Since(lastProgress).Round(time.Millisecond))
		}
		lists := 0
		own := 0 // own chunks queued lately and not yet here
		for j, at := range sent {
			if j.o.Present(j.idx) {
				delete(sent, j)
			} else if j.own && time.Since(at) < p.c.opts.FetchTimeout {
				own++
			}
		}
		for i := range objs {
			o := objs[(start+i)%len(objs)]
			var miss []int
			for k := 0; k < o.nchunks; k++ {
				if o.Present(k) {
					n++
				} else {
					miss = append(miss, k)
				}
			}
			if len(miss) == 0 {
				continue
			}
			missing += len(miss)
			var landed []bool
			if lists < gatherLists {
				lists++
				var err error
				if landed, err = t.Landed(ctx, o.key, p.c.opts.ChunkSize, o.nchunks); err != nil {
					if ctx.Err() != nil {
						return
					}
					stalled = true // the store cannot say: claim them
				}
			}
			for _, k := range miss {
				j := job{o: o, idx: k, final: true}
				switch {
				case landed != nil && landed[k]:
				case t.Owns(o.key, k):
					j.own = true
				case stalled:
					j = job{o: o, idx: k, patient: true}
				default:
					continue
				}
				if at, ok := sent[j]; ok && time.Since(at) < p.c.opts.FetchTimeout {
					continue // queued lately: still on its way (and counted in own)
				}
				if j.own {
					if own >= max(gatherOwn, min(t.OriginSlots(), p.c.opts.MaxWorkers)) {
						continue
					}
					own++
				}
				if !p.send(ctx, ch, j) {
					return
				}
				sent[j] = time.Now()
				progressed = true
			}
		}
		if missing == 0 {
			return
		}
		start += gatherLists
		if n > present {
			present, lastProgress = n, time.Now()
		}
		if progressed {
			wait = gatherMinWait
		} else {
			wait = min(2*wait, gatherCap(p.c.originChunkTime()))
		}
		// Jittered, so a fleet's listings do not fall in step.
		d := wait/2 + time.Duration(mrand.Int64N(int64(wait)))
		tm := time.NewTimer(d)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			return
		case <-p.c.sched.quit:
			tm.Stop()
			return
		}
	}
}

const (
	gatherMinWait = 100 * time.Millisecond
	gatherMaxWait = time.Second
	gatherLists   = 8 // files listed per round: a model may have hundreds of shards
	// gatherOwn bounds this node's own chunks queued at once beyond its
	// origin slots: each waits for a slot, and a worker waiting is one not
	// reading chunks that landed.
	gatherOwn = 4
)

// gatherStall is how long gather waits without any chunk arriving before
// it claims the chunks other nodes own: 8 origin chunk times, and never
// under 30 s, so a healthy fleet on a slow origin or a slow store is left
// to split the work (its chunks keep arriving). With 10 s, the fleet on
// two SeaweedFS mounts (whose reads can pause for longer) claimed early
// and fetched up to 1.9x the model.
func (p *Prefetcher) gatherStall() time.Duration {
	return max(30*time.Second, 8*p.c.originChunkTime())
}

// gatherCap caps the rounds' backoff at about the time between two chunks
// landing in the fleet (a node's origin chunk time over the
// shared.DefaultFleetOriginChunks the fleet keeps in flight), kept within
// gatherMinWait and gatherMaxWait: a small fleet's last chunks are seen soon
// after they land, and a large fleet, whose chunks each take long, still
// lists about once a second.
//
// It matters only after a round that queued nothing: a round that found
// something is followed by gatherMinWait anyway. With the fixed 1 s cap, a
// node of 8 saw the fleet's last chunks up to 1.5 s (the cap, jittered)
// after they landed, on a load of 3-5 s.
func gatherCap(originChunk time.Duration) time.Duration {
	return min(max(originChunk/shared.DefaultFleetOriginChunks, gatherMinWait), gatherMaxWait)
}
