package chunkcache

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Nothing is given up for good on a transient fault. A chunk whose fetch
// or store failed (after the fetch's own bounded retries), and a file whose
// verification could not read the cache back, are tried again in the
// background with capped exponential backoff, for the life of the cache:
// when the origin or the disk heals, the file completes without a restart.
//
// The retrier sleeps on a channel when nothing has failed, and arms one
// timer, for the earliest retry due, when something has: an idle daemon
// wakes for nothing.
type retrier struct {
	c    *Cache
	mu   sync.Mutex
	due  map[*Object]time.Time // GUARDED_BY(mu)
	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

// retryBase is the first backoff; it doubles per consecutive failure up to
// Options.RetryMax.
const retryBase = time.Second

func newRetrier(c *Cache) *retrier {
	r := &retrier{c: c, due: map[*Object]time.Time{}, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go r.loop()
	return r
}

func (r *retrier) stop() {
	close(r.quit)
	<-r.done
}

// schedule asks for o.retry after d, unless one is due sooner.
func (r *retrier) schedule(o *Object, d time.Duration) {
	at := time.Now().Add(d)
	r.mu.Lock()
	if t, ok := r.due[o]; !ok || at.Before(t) {
		r.due[o] = at
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *retrier) loop() {
	defer close(r.done)
	var timer *time.Timer
	for {
		now := time.Now()
		var ready []*Object
		var next time.Time
		r.mu.Lock()
		for o, t := range r.due {
			if !t.After(now) {
				ready = append(ready, o)
				delete(r.due, o)
			} else if next.IsZero() || t.Before(next) {
				next = t
			}
		}
		r.mu.Unlock()
		for _, o := range ready {
			go o.retry()
		}
		var fire <-chan time.Time
		if !next.IsZero() {
			if timer == nil {
				timer = time.NewTimer(time.Until(next))
			} else {
				timer.Reset(time.Until(next))
			}
			fire = timer.C
		}
		select {
		case <-fire:
		case <-r.wake:
		case <-r.quit:
			if timer != nil {
				timer.Stop()
			}
			return
		}
	}
}

// backoff is the wait before retry number n (1-based): doubling from
// retryBase, capped, with jitter so that many files failing together do
// not come back in lockstep.
func backoff(n int, maxWait time.Duration) time.Duration {
	d := maxWait
	if n < 30 {
		d = min(retryBase<<(n-1), maxWait)
	}
	return d/2 + rand.N(d/2+1)
}

// verifyChunk stands for the verification in Object.failed.
const verifyChunk = -1

// noteFailure records a failed attempt at chunk idx (verifyChunk: the
// verification) and schedules its retry.
func (o *Object) noteFailure(idx int, err error) {
	if o.c.sched.ctx.Err() != nil {
		return // closing: nothing to retry
	}
	o.mu.Lock()
	if o.closed || o.state == stateBad {
		o.mu.Unlock()
		return
	}
	o.failed[idx] = struct{}{}
	o.failures++
	o.lastErr = err
	n := o.failures
	o.mu.Unlock()
	o.c.retrier.schedule(o, backoff(n, o.c.opts.RetryMax))
}

// progressLocked records that chunk idx was stored.
// LOCKS_REQUIRED(mu)
func (o *Object) progressLocked(idx int) {
	delete(o.failed, idx)
	o.failures = 0
	o.progress = time.Now()
	o.diskErr = nil
	if o.state != stateBad {
		o.lastErr = nil
	}
}

// retry tries again what failed: the verification, or the failed chunks.
// While the disk refuses writes only one chunk is tried, as a probe, so a
// full disk does not cost the whole model's download on every retry.
func (o *Object) retry() {
	o.mu.Lock()
	if o.closed || o.state == stateBad {
		o.mu.Unlock()
		return
	}
	_, reverify := o.failed[verifyChunk]
	delete(o.failed, verifyChunk)
	var todo []int
	for idx := range o.failed {
		if !o.chunks.Present(idx) {
			todo = append(todo, idx)
		}
		delete(o.failed, idx)
	}
	if o.diskErr != nil && len(todo) > 1 {
		for _, idx := range todo[1:] {
			o.failed[idx] = struct{}{} // after the probe
		}
		todo = todo[:1]
	}
	reverify = reverify && o.chunks.Count() == o.nchunks && o.state == stateVerifying
	o.mu.Unlock()
	if reverify {
		o.c.verifier.queue(o)
	}
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, idx := range todo {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(o.c.sched.ctx, o.c.opts.FetchTimeout)
			defer cancel()
			o.Ensure(ctx, idx) // a failure schedules the next retry
		}()
	}
	wg.Wait()
	o.mu.Lock()
	more := len(o.failed) > 0 && o.failures == 0
	o.mu.Unlock()
	if more {
		// The probe stored: the disk has room again, retry the rest now.
		o.c.retrier.schedule(o, 0)
	}
}
