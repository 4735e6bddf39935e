package eager

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weightfs/weightfs/fetch"
)

// streamingOrigin serves each range as a network does: a piece at a time,
// each piece counted as sent as soon as it is copied, so a range cut short
// by an interrupt has cost the bytes it got before.
type streamingOrigin struct {
	*fakeOrigin
	piece int
	delay time.Duration
	sent  atomic.Int64
}

func (s *streamingOrigin) ReadRange(ctx context.Context, f fetch.File, off int64, p []byte) error {
	if len(p) == 1 && f.Size > 1 {
		return nil // the primer
	}
	b := s.files[f.Path]
	for n := 0; n < len(p); n += s.piece {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.delay):
		}
		end := min(n+s.piece, len(p))
		copy(p[n:end], b[off+int64(n):])
		s.sent.Add(int64(end - n))
	}
	return nil
}

// Fails before this change: an interrupt cancelled every range in flight,
// so the bytes they had received were thrown away and fetched again by the
// next run (with the defaults, 64 ranges of 8 MiB: up to 512 MiB, about
// half of what a 1 GiB model had received when stopped midway). Now the
// ranges in flight are let finish and recorded, and the resumed run fetches
// exactly what the first never received.
func TestInterruptedFetchKeepsEveryRangeItReceived(t *testing.T) {
	o, files := fixture(t)
	big := files[3] // 10 ranges
	for i := 0; i < 4; i++ {
		big2 := big
		big2.Path = "shard" + string(rune('a'+i)) + ".safetensors"
		o.files[big2.Path] = o.files[big.Path]
		files = append(files, big2)
	}
	files = files[3:] // five files of 10 ranges each
	var total int64
	for _, f := range files {
		total += f.Size
	}
	root := t.TempDir()
	slow := &streamingOrigin{fakeOrigin: o, piece: 128, delay: 5 * time.Millisecond}
	ts := targetsFor(root, o, files, nil)
	for i := range ts {
		ts[i].Reader = slow
	}
	d, err := New(ts, Options{Workers: 16, ChunkSize: testChunk})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for slow.sent.Load() < total/2 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if err := d.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	first := slow.sent.Load()
	if first >= total {
		t.Fatalf("the first run received everything (%d bytes): the interrupt came too late to test anything", first)
	}
	before := o.bytes.Load()
	if _, err := run(t, targetsFor(root, o, files, nil), Options{Workers: 4}); err != nil {
		t.Fatal(err)
	}
	assertTree(t, root, o, files)
	second := o.bytes.Load() - before
	t.Logf("model %d bytes: the interrupted run received %d, the resumed one %d", total, first, second)
	if first+second != total {
		t.Fatalf("received %d + %d bytes for a %d-byte model: %d bytes fetched twice", first, second, total, first+second-total)
	}
}

func TestDrainIsBounded(t *testing.T) {
	o, files := fixture(t)
	root := t.TempDir()
	// Ranges that would take 10 s each: the drain gives up after its bound.
	slow := &streamingOrigin{fakeOrigin: o, piece: 1, delay: 10 * time.Millisecond}
	ts := targetsFor(root, o, files[3:4], nil)
	ts[0].Reader = slow
	d, err := New(ts, Options{Workers: 4, ChunkSize: testChunk, Drain: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if err := d.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Run took %s after the interrupt; the drain should end after 200ms", el)
	}
	if _, err := run(t, targetsFor(root, o, files[3:4], nil), Options{}); err != nil {
		t.Fatal(err)
	}
	assertTree(t, filepath.Clean(root), o, files[3:4])
}
