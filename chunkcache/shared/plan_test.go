package shared_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/chunkcache/shared/sharedtest"
)

// slowFill fills chunk idx of key from an origin that takes delay, in mode.
func slowFill(tier *shared.Tier, idx int, delay time.Duration, mode shared.Mode) (shared.Filled, error) {
	buf := make([]byte, 64)
	r := shared.Request{Volume: "v", Key: key, Index: idx, ChunkSize: 1 << 20, Buf: buf, Mode: mode, OriginTime: time.Minute,
		Origin: func(ctx context.Context) error {
			select {
			case <-time.After(delay):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}}
	f, err := tier.Fill(context.Background(), r)
	if err == nil {
		tier.Publish(r, f)
	}
	return f, err
}

// TestLandedListsOnlyItsChunks: Landed says which chunks of one object and
// chunk size are in the store, and ignores whatever else the listing holds.
func TestLandedListsOnlyItsChunks(t *testing.T) {
	mem := sharedtest.NewMem()
	tier := shared.New(mem, shared.Options{Holder: "a"})
	for _, idx := range []int{0, 2} {
		if _, err := slowFill(tier, idx, 0, shared.Readahead); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	dir := "chunks/" + key[:2] + "/" + key + "/"
	for _, junk := range []string{dir + "1048576/01", dir + "1048576/99", dir + "1048576/-1", dir + "1048576/x", dir + "2097152/1", dir + "1048576/3/deeper"} {
		if err := mem.Put(ctx, junk, [][]byte{[]byte("junk")}, false); err != nil {
			t.Fatal(err)
		}
	}
	got, err := tier.Landed(ctx, key, 1<<20, 4)
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, false, true, false}; !slices.Equal(got, want) {
		t.Fatalf("Landed = %v, want %v", got, want)
	}
}

// TestOriginSlotsSplitTheFleet: four nodes share the fleet's 8 origin
// slots, 2 each. A prefetch (Background) finding none free is put off at
// once; the last pass (Patient) takes its lease and waits for one.
func TestOriginSlotsSplitTheFleet(t *testing.T) {
	mem := sharedtest.NewMem()
	var tiers []*shared.Tier
	for _, h := range []string{"a", "b", "c", "d"} {
		tiers = append(tiers, shared.New(mem, shared.Options{Holder: h}))
	}
	// Each node writes its record and lists the fleet from Fill.
	waitFor(t, func() bool {
		ok := true
		for i, tier := range tiers {
			slowFill(tier, 100+i, 0, shared.Readahead)
			ok = ok && tier.OriginSlots() == 2
		}
		return ok
	})
	a := tiers[0]
	var own []int
	for idx := 0; len(own) < 4 && idx < 1000; idx++ {
		if a.Owns(key, idx) {
			own = append(own, idx)
		}
	}
	if len(own) < 4 {
		t.Fatalf("node a owns %d of 1000 chunks", len(own))
	}
	const delay = 300 * time.Millisecond
	done := make(chan error, 2)
	for _, idx := range own[:2] {
		go func() {
			_, err := slowFill(a, idx, delay, shared.Background)
			done <- err
		}()
	}
	time.Sleep(delay / 3) // both slots taken
	start := time.Now()
	if _, err := slowFill(a, own[2], 0, shared.Background); !errors.Is(err, shared.ErrDeferred) {
		t.Fatalf("a prefetch with both slots taken: %v, want ErrDeferred", err)
	}
	if d := time.Since(start); d > delay/3 {
		t.Fatalf("the deferral took %v", d)
	}
	// The last pass takes its lease while it waits for the slot: the
	// store's answer is not waited for in the slot's time.
	last := make(chan error, 1)
	var lastF shared.Filled
	go func() {
		var err error
		lastF, err = slowFill(a, own[3], 0, shared.Patient)
		last <- err
	}()
	lease := fmt.Sprintf("leases/%s/%s/%d/%d", key[:2], key, 1<<20, own[3])
	waitFor(t, func() bool { return slices.Contains(mem.Names("leases/"), lease) })
	if len(done) != 0 {
		t.Fatal("a slot was free before the last pass had its lease: the test's timing is off")
	}
	if err := <-last; err != nil || lastF.Source != shared.FromOrigin {
		t.Fatalf("the last pass: %+v, %v", lastF, err)
	}
	if d := time.Since(start); d < delay/2 {
		t.Fatalf("the last pass fetched after %v, before a slot was free", d)
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestOriginSlotsAlone: a node that has listed the fleet twice and found
// itself alone is not limited; before that it keeps to one chunk.
func TestOriginSlotsAlone(t *testing.T) {
	tier := shared.New(sharedtest.NewMem(), shared.Options{Holder: "a"})
	if n := tier.OriginSlots(); n != 1 {
		t.Fatalf("before any listing: %d slots, want 1", n)
	}
	slowFill(tier, 0, 0, shared.Readahead) // writes its record, lists, lists again 250 ms later
	waitFor(t, func() bool { return tier.OriginSlots() > 1000 })
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			_, err := slowFill(tier, 10+i, 100*time.Millisecond, shared.Background)
			errs <- err
		}()
	}
	for i := range 16 {
		if err := <-errs; err != nil {
			t.Fatal(fmt.Errorf("fill %d: %w", i, err))
		}
	}
}

// TestLeaveDropsTheRecord: a node that leaves (a clean unmount) deletes its
// record, so the others stop splitting the work with it at once.
func TestLeaveDropsTheRecord(t *testing.T) {
	mem := sharedtest.NewMem()
	tier := shared.New(mem, shared.Options{Holder: "a"})
	waitFor(t, func() bool {
		slowFill(tier, 0, 0, shared.Readahead)
		return len(mem.Names("nodes/")) == 1
	})
	tier.Leave()
	if names := mem.Names("nodes/"); len(names) != 0 {
		t.Fatalf("after Leave the store still holds %v", names)
	}
	var none *shared.Tier
	none.Leave() // no shared cache: nothing to do
}

// TestLapsedHolderLeavesTheFleet: a node that takes over a lease whose
// holder let it lapse deletes that holder's record, so the fleet splits
// the dead node's share again at once instead of after the record ages
// out (3 TTLs).
func TestLapsedHolderLeavesTheFleet(t *testing.T) {
	mem := sharedtest.NewMem()
	ctx := context.Background()
	if err := mem.Put(ctx, "nodes/dead", [][]byte{[]byte(`{"holder":"dead"}`)}, false); err != nil {
		t.Fatal(err)
	}
	b := shared.New(mem, shared.Options{Holder: "b"})
	waitFor(t, func() bool {
		slowFill(b, 1000, 0, shared.Readahead)
		return b.OriginSlots() == shared.DefaultFleetOriginChunks/2
	})
	var theirs []int
	for idx := 0; len(theirs) < 2 && idx < 100; idx++ {
		if !b.Owns(key, idx) {
			theirs = append(theirs, idx)
		}
	}
	if len(theirs) < 2 {
		t.Fatalf("the dead node owns %d of 100 chunks", len(theirs))
	}
	lapsed := fmt.Sprintf(`{"holder":"dead","expires_unix_ms":%d}`, time.Now().Add(-time.Second).UnixMilli())
	lease := fmt.Sprintf("leases/%s/%s/%d/%d", key[:2], key, 1<<20, theirs[0])
	if err := mem.Put(ctx, lease, [][]byte{[]byte(lapsed)}, true); err != nil {
		t.Fatal(err)
	}
	if f, err := slowFill(b, theirs[0], 0, shared.Readahead); err != nil || f.Source != shared.FromOrigin {
		t.Fatalf("the lapsed lease's chunk: %+v, %v", f, err)
	}
	if !b.Owns(key, theirs[1]) {
		t.Fatal("the dead node's other chunk is still its own after the takeover")
	}
	waitFor(t, func() bool { return !slices.Contains(mem.Names("nodes/"), "nodes/dead") })
}
