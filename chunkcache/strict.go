package chunkcache

import (
	"context"
	"fmt"
)

// awaitVerified is the gate of --strict-verify: it returns once the whole
// file is verified, fetching all of it meanwhile (a reader waits for this
// file now, whatever the prefetch order). A file the origin gave no
// checksum for has nothing to wait for and is served as it arrives.
func (o *Object) awaitVerified(ctx context.Context) error {
	if o.file.Checksum.IsZero() {
		return nil
	}
	if err := o.c.storeDisabled(); err != nil {
		return fmt.Errorf("%s %q: --strict-verify needs the whole file in the cache: %w", o.origin, o.file.Path, err)
	}
	// A strict reader waits on the network like any demand read: the
	// prefetch plan pauses meanwhile, so the link goes to this file.
	o.c.sched.readerWaits()
	defer o.c.sched.readerDone()
	o.c.verdictWaiters.Add(1)
	defer o.c.verdictWaiters.Add(-1)
	for {
		if o.c.sched.ctx.Err() != nil {
			return fmt.Errorf("%s %q: %w", o.origin, o.file.Path, ErrClosed)
		}
		o.mu.Lock()
		st, changed := o.state, o.stateCh
		fill := st == stateFilling && !o.filling
		if fill {
			o.filling = true
		}
		o.mu.Unlock()
		switch st {
		case stateVerified, stateComplete:
			return nil
		case stateBad:
			return fmt.Errorf("%s %q: %w", o.origin, o.file.Path, ErrBadContent)
		}
		if fill {
			go o.strictFill()
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%s %q: waiting for the whole file to be verified (--strict-verify): %w", o.origin, o.file.Path, ctx.Err())
		}
	}
}

// strictFill fetches the whole file for strict readers. It does not wake
// them when it ends: the chunks whose fetches failed are the retrier's now
// (noteFailure), on its backoff, and the readers wake when the state moves
// (all present, then verified). Waking them to fill again at once would
// spin on an origin that fails fast (a 403, a refused connection) until
// their deadline, and the kernel retries a failed page fault right away.
func (o *Object) strictFill() {
	o.fillAll()
	o.mu.Lock()
	o.filling = false
	o.mu.Unlock()
}
