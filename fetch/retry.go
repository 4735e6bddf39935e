package fetch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// RetryPolicy bounds every network fetch: each attempt has its own deadline,
// the attempts are counted, and the waits between them are jittered so that
// many readers failing together do not retry in lockstep.
type RetryPolicy struct {
	Attempts       int           // total tries; default 4
	AttemptTimeout time.Duration // deadline of one try; default 30s
	BaseBackoff    time.Duration // first wait, doubled each time; default 200ms
	MaxBackoff     time.Duration // cap on one wait; default 5s
	// OnRetry, if set, is told about each failed attempt that will be retried.
	OnRetry func(err error)
}

// DefaultRetryPolicy is used where a caller passes the zero policy.
var DefaultRetryPolicy = RetryPolicy{Attempts: 4, AttemptTimeout: 30 * time.Second, BaseBackoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second}

func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy
	if p.Attempts <= 0 {
		p.Attempts = d.Attempts
	}
	if p.AttemptTimeout <= 0 {
		p.AttemptTimeout = d.AttemptTimeout
	}
	if p.BaseBackoff <= 0 {
		p.BaseBackoff = d.BaseBackoff
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = d.MaxBackoff
	}
	return p
}

// Do runs op until it succeeds, fails permanently, runs out of attempts, or
// ctx ends. The caller's ctx bounds the whole sequence.
func (p RetryPolicy) Do(ctx context.Context, op func(ctx context.Context) error) error {
	p = p.withDefaults()
	var err error
	for attempt := 0; attempt < p.Attempts; attempt++ {
		actx, cancel := context.WithTimeout(ctx, p.AttemptTimeout)
		err = op(actx)
		timedOut := actx.Err() != nil
		cancel()
		if err == nil {
			return nil
		}
		if timedOut && ctx.Err() == nil {
			err = fmt.Errorf("attempt timed out after %s: %w", p.AttemptTimeout, err)
		}
		if IsPermanent(err) || ctx.Err() != nil || attempt == p.Attempts-1 {
			break
		}
		if p.OnRetry != nil {
			p.OnRetry(err)
		}
		wait := p.BaseBackoff << attempt
		if wait > p.MaxBackoff || wait <= 0 {
			wait = p.MaxBackoff
		}
		wait = wait/2 + rand.N(wait/2+1) // full jitter on the upper half
		var ra *RetryAfterError
		if errors.As(err, &ra) && ra.After > wait {
			wait = min(ra.After, p.MaxBackoff*4)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-t.C:
		}
	}
	return err
}

// Retrying wraps a RangeReader with a RetryPolicy.
func Retrying(r RangeReader, p RetryPolicy) RangeReader { return &retrying{r: r, p: p} }

type retrying struct {
	r RangeReader
	p RetryPolicy
}

var _ RangeReader = (*retrying)(nil)

func (r *retrying) ReadRange(ctx context.Context, f File, off int64, p []byte) error {
	return r.p.Do(ctx, func(ctx context.Context) error { return r.r.ReadRange(ctx, f, off, p) })
}
