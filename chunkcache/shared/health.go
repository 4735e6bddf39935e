package shared

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// health keeps a failing store off the read path. The first failure of a
// request (an error other than "absent" or "exists", or its deadline)
// takes the store out of use for a backoff that doubles from 1 s to 1 min;
// the first request after it is the probe. A full or read-only store stops
// only write-back, the same way. Each change is logged once: a store that
// is down for an hour costs two log lines, not one per chunk.
//
// Nothing here runs on a timer: the state is looked at when a request is
// about to be made.
type health struct {
	t *Tier

	mu         sync.Mutex
	readUntil  time.Time     // GUARDED_BY(mu); no reads before
	readOff    time.Duration // GUARDED_BY(mu); the current read backoff
	readDown   bool          // GUARDED_BY(mu)
	writeUntil time.Time     // GUARDED_BY(mu)
	writeOff   time.Duration // GUARDED_BY(mu)
	writeDown  bool          // GUARDED_BY(mu)
	freeAt     time.Time     // GUARDED_BY(mu); when Free was last asked
	lastErr    string        // GUARDED_BY(mu)
	fails      int           // GUARDED_BY(mu); failed requests in a row

	started  atomic.Int64 // requests begun, numbered
	answered atomic.Int64 // the highest number of a request the store answered
}

const (
	minBackoff  = time.Second
	maxBackoff  = time.Minute
	freeCheckIn = 10 * time.Second
)

func (h *health) readable() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.t.now().Before(h.readUntil)
}

// writable says whether write-back may go on: the store answers, is not
// full or read-only, and (asked at most every 10 s) has MinFree left.
func (h *health) writable() bool {
	now := h.t.now()
	h.mu.Lock()
	if now.Before(h.readUntil) || now.Before(h.writeUntil) {
		h.mu.Unlock()
		return false
	}
	check := now.Sub(h.freeAt) >= freeCheckIn
	if check {
		h.freeAt = now
	}
	h.mu.Unlock()
	if !check {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.t.opts.OpTimeout)
	defer cancel()
	free, err := h.t.blobs.Free(ctx)
	if err == nil && free >= 0 && free < h.t.opts.MinFree {
		h.fault(ErrFull)
		return false
	}
	return true
}

// op runs one request to the store under OpTimeout and notes its outcome.
func (t *Tier) op(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, t.opts.OpTimeout)
	defer cancel()
	seq := t.h.started.Add(1)
	err := fn(octx)
	if storeFault(err) && octx.Err() == nil {
		// A single failure (a 503 SlowDown, a reset connection) is
		// usual for a busy store: one more try after 20-50 ms, before
		// anyone counts it (the bucket clients do not retry on their own).
		if t.sleep(octx, 20*time.Millisecond+time.Duration(rand.Int64N(int64(30*time.Millisecond)))) == nil {
			err = fn(octx)
		}
	}
	switch {
	case err == nil, errors.Is(err, ErrNotFound), errors.Is(err, ErrExists):
		t.h.ok(seq)
	case errors.Is(err, ErrCorrupt), errors.Is(err, errBadLease):
		// The store answered; what it holds is wrong, not the store.
	case ctx.Err() != nil:
		// Our caller gave up: not the store's fault.
	case seq < t.h.answered.Load():
		// Began before a later request was answered: a straggler of an
		// outage that is over must not start another.
	default:
		t.h.fault(err)
	}
	return err
}

// storeFault says err is the store's failure, not an answer.
func storeFault(err error) bool {
	return err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExists) &&
		!errors.Is(err, ErrCorrupt) && !errors.Is(err, errBadLease)
}

// faultsToTrip is how many failed requests in a row take the store out of
// use; a deadline trips it at once (a hung store must not cost every read
// its OpTimeout).
const faultsToTrip = 3

func (h *health) fault(err error) {
	now := h.t.now()
	h.mu.Lock()
	write := errors.Is(err, ErrFull) || errors.Is(err, ErrReadOnly)
	if !write && !errors.Is(err, context.DeadlineExceeded) {
		h.fails++
		if h.fails < faultsToTrip {
			h.mu.Unlock()
			return
		}
	}
	// A failure while the store is out of use already (a request begun
	// before the outage ended its way) does not lengthen the backoff: only
	// a failed probe, after it, does.
	if (write && h.writeDown && now.Before(h.writeUntil)) || (!write && h.readDown && now.Before(h.readUntil)) {
		h.mu.Unlock()
		return
	}
	var first bool
	var off time.Duration
	if write {
		h.writeOff = next(h.writeOff)
		h.writeUntil, off = now.Add(h.writeOff), h.writeOff
		first, h.writeDown = !h.writeDown, true
	} else {
		h.readOff = next(h.readOff)
		h.readUntil, off = now.Add(h.readOff), h.readOff
		first, h.readDown = !h.readDown, true
	}
	h.lastErr = err.Error()
	h.mu.Unlock()
	if !first {
		return
	}
	if write {
		h.t.log.Warn("shared cache takes no writes; nodes still read from it, and write back again once it has room", "store", h.t.blobs.String(), "err", err, "retry_in", off)
	} else {
		h.t.log.Warn("shared cache is failing; reading from the origin until it answers", "store", h.t.blobs.String(), "err", err, "retry_in", off)
	}
}

func next(d time.Duration) time.Duration {
	if d <= 0 {
		return minBackoff
	}
	return min(2*d, maxBackoff)
}

// ok notes a request the store answered. It ends a read outage; a write
// outage ends when a write succeeds, which only write-back makes.
func (h *health) ok(seq int64) {
	for {
		a := h.answered.Load()
		if seq <= a || h.answered.CompareAndSwap(a, seq) {
			break
		}
	}
	h.mu.Lock()
	back := h.readDown
	h.fails = 0
	h.readDown, h.readOff, h.readUntil = false, 0, time.Time{}
	h.mu.Unlock()
	if back {
		h.t.log.Info("shared cache answers again", "store", h.t.blobs.String())
	}
}

func (h *health) wrote() {
	h.mu.Lock()
	back := h.writeDown
	h.writeDown, h.writeOff, h.writeUntil = false, 0, time.Time{}
	h.mu.Unlock()
	if back {
		h.t.log.Info("shared cache takes writes again", "store", h.t.blobs.String())
	}
}

// state is the store's condition, for /status.
func (h *health) state() (string, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.readDown:
		return "failing", h.lastErr
	case h.writeDown:
		return "no-writes", h.lastErr
	}
	return "ok", ""
}
