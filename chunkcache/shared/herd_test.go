package shared_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/chunkcache/shared/sharedtest"
)

// queuedCreates is a store that holds back its answer to an exclusive
// create of a lease that exists, until the test opens gate, and only then
// decides it: the way SeaweedFS's S3 gateway queues racing conditional
// PUTs of one name, answering each loser about a second after the one
// before.
type queuedCreates struct {
	*sharedtest.Mem
	gate   chan struct{}
	queued atomic.Int64
}

func (q *queuedCreates) Put(ctx context.Context, name string, data [][]byte, ifAbsent bool) error {
	if ifAbsent && strings.HasPrefix(name, "leases/") && slices.Contains(q.Names("leases/"), name) {
		q.queued.Add(1)
		select {
		case <-q.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return q.Mem.Put(ctx, name, data, ifAbsent)
}

// A fleet that starts together races for the same lease (every node reads
// the index and the headers first). On a store that answers the losers
// late, they must not wait for that answer: each learns from a read of the
// lease who holds it, and reads the chunk once it lands. The answers that
// come later make leases nobody wants: those are deleted, not left for the
// fleet to wait out.
func TestRacingCreatesAnsweredLate(t *testing.T) {
	store := &queuedCreates{Mem: sharedtest.NewMem(), gate: make(chan struct{})}
	o := newOrigin(64 << 10)
	o.delay = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tiers := make([]*shared.Tier, 8)
	for i := range tiers {
		tiers[i] = shared.New(store, shared.Options{Holder: "node-" + string(rune('a'+i)), LeaseTTL: time.Hour})
	}
	var wg sync.WaitGroup
	var start sync.WaitGroup
	start.Add(1)
	bufs := make([][]byte, len(tiers))
	srcs := make([]shared.Source, len(tiers))
	for i, tier := range tiers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start.Wait()
			bufs[i] = make([]byte, len(o.data))
			r := o.request(bufs[i], shared.Readahead)
			f, err := tier.Fill(ctx, r)
			if err != nil {
				t.Errorf("node %d: Fill: %v", i, err)
				return
			}
			srcs[i] = f.Source
			tier.Publish(r, f)
		}()
	}
	start.Done()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		close(store.gate)
		<-done
		t.Fatalf("the readers waited for the store's answers to their creates (%d queued)", store.queued.Load())
	}
	if store.queued.Load() == 0 {
		t.Fatal("no create was queued: the race this test stages did not happen")
	}
	fromOrigin := 0
	for i := range tiers {
		if !bytes.Equal(bufs[i], o.data) {
			t.Errorf("node %d: wrong bytes", i)
		}
		if srcs[i] == shared.FromOrigin {
			fromOrigin++
		}
	}
	if n := o.calls.Load(); n != 1 || fromOrigin != 1 {
		t.Fatalf("origin fetched %d times, %d nodes say they got it there; want 1 and 1", n, fromOrigin)
	}
	// The queued creates now land, on a lease nobody holds any more.
	close(store.gate)
	waitFor(t, func() bool { return len(store.Names("leases/")) == 0 })
}
