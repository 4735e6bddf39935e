package hubemu

import (
	"context"
	"sync"
	"time"
)

// bucket is a token bucket kept as a virtual clock (GCRA): next is when the
// next byte may be sent. Reserving n bytes moves next by n/rate. Because
// waits target absolute times, oversleeping one chunk is made up by the
// following ones, so the long-run rate stays accurate even though each sleep
// is coarse; that keeps both accuracy and CPU cost independent of chunk size.
type bucket struct {
	mu        sync.Mutex
	nsPerByte float64
	next      time.Time // GUARDED_BY(mu)
}

// bucketBurst bounds the credit an idle bucket accumulates: large enough to
// absorb timer and scheduler jitter, small enough not to distort a rate
// measured over a fraction of a second.
const bucketBurst = 10 * time.Millisecond

func newBucket(bytesPerSec int64) *bucket {
	return &bucket{nsPerByte: 1e9 / float64(bytesPerSec)}
}

// reserve books n bytes and returns when they may be sent.
func (b *bucket) reserve(n int, now time.Time) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if floor := now.Add(-bucketBurst); b.next.Before(floor) {
		b.next = floor
	}
	at := b.next
	b.next = b.next.Add(time.Duration(float64(n) * b.nsPerByte))
	return at
}

// pacer paces one response body against its own bucket and the shared one.
type pacer struct {
	conn, agg *bucket // nil = unlimited
	timer     *time.Timer
}

func (s *Server) newPacer() *pacer {
	p := &pacer{agg: s.aggregate}
	if s.opts.PerConnBytesPerSec > 0 {
		p.conn = newBucket(s.opts.PerConnBytesPerSec)
	}
	return p
}

func (p *pacer) limited() bool { return p.conn != nil || p.agg != nil }

// minSleep: shorter waits are skipped; the absolute schedule catches up on the
// next chunk, and sleeping for microseconds costs more CPU than it buys.
const minSleep = 200 * time.Microsecond

// wait blocks until n more bytes may be sent, or ctx ends.
func (p *pacer) wait(ctx context.Context, n int) error {
	now := time.Now()
	until := now
	if p.conn != nil {
		if at := p.conn.reserve(n, now); at.After(until) {
			until = at
		}
	}
	if p.agg != nil {
		if at := p.agg.reserve(n, now); at.After(until) {
			until = at
		}
	}
	d := until.Sub(now)
	if d < minSleep {
		return ctx.Err()
	}
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}
	select {
	case <-ctx.Done():
		p.timer.Stop()
		return ctx.Err()
	case <-p.timer.C:
		return nil
	}
}

func (p *pacer) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
}

// chunkSize picks the write size for a paced body: about 2 ms of the
// tightest rate, within [32 KiB, 256 KiB], so slow streams stay smooth and
// fast ones do not wake up too often.
func (p *pacer) chunkSize(perConn, aggregate int64) int {
	rate := int64(0)
	for _, r := range []int64{perConn, aggregate} {
		if r > 0 && (rate == 0 || r < rate) {
			rate = r
		}
	}
	cs := int64(maxChunk)
	if rate > 0 {
		cs = min(max(rate/500, 32<<10), maxChunk) &^ (4<<10 - 1)
	}
	return int(cs)
}

const maxChunk = 256 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, maxChunk); return &b }}

// sleepCtx sleeps d, or less when ctx ends first; it reports whether the
// full sleep happened.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
