package shared

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The exclusive create a lease (and a takeover claim) is made with, with
// a bounded wait for its answer.

// leaseCreateWait bounds the wait for the store's answer to a lease's
// exclusive create; past it the lease is read instead (create). Why:
// SeaweedFS's S3 gateway queues racing conditional PUTs of one name and
// answers the losers about a second apart (8 racers here: the last loser
// answered after 2-4 s, in each of 7 rounds). A fleet that starts
// together reaches for the same chunks at once, since every node's plan
// reads the index and the headers first, and the losers sat in that queue
// for up to 4.5 s with their plans stalled: the fleet's slowest node began
// its share of the model 3.8 s late. A read shows the winner at once. A
// real bucket answers a lost race at once (412, or 409
// ConditionalRequestConflict), as link(2) does on POSIX.
const leaseCreateWait = 300 * time.Millisecond

// errLanded is create's answer when it gave up waiting and found the
// chunk in the store.
var errLanded = errors.New("chunk landed while its lease was being made")

// pendingCreate is an exclusive create of this node's still unanswered.
// A create given up on is not cancelled: the store may have queued it, and
// a cancelled request can still land (on SeaweedFS it did, a second
// later), leaving a lease nobody renews that the fleet then waited out,
// 10 s with the origin idle. Instead it runs to its answer, and a lease it
// made that nobody wants any more is deleted then.
type pendingCreate struct {
	done    chan struct{}
	err     error // set before done is closed
	waiters int   // GUARDED_BY(Tier.mu); callers waiting for the answer
	adopted bool  // GUARDED_BY(Tier.mu); a caller read the lease as ours
}

// create makes name with the store's exclusive create: nil when it is
// ours, ErrExists when another node's is there. Past leaseCreateWait
// without an answer the lease is read instead: ours (the create landed,
// its answer is on its way) or another's say the same at once. No lease
// means the node that held it is done, so the chunk has most likely
// landed: errLanded when landed (if set) finds it, else the create's own
// answer is waited for after all. A create of name still unanswered from
// an earlier call is joined, not repeated.
func (t *Tier) create(ctx context.Context, name string, doc []byte, landed func() bool) error {
	if !t.blobs.ExclusiveCreate() {
		// A weak store's racing creates may all succeed, so a late one
		// could not be told from another node's; and a POSIX create does
		// not queue.
		return t.op(ctx, func(ctx context.Context) error { return t.blobs.Put(ctx, name, [][]byte{doc}, true) })
	}
	t.mu.Lock()
	p := t.creates[name]
	if p == nil {
		p = &pendingCreate{done: make(chan struct{})}
		t.creates[name] = p
		go t.runCreate(name, doc, p)
	}
	p.waiters++
	t.mu.Unlock()
	adopt := false
	defer func() {
		t.mu.Lock()
		p.waiters--
		p.adopted = p.adopted || adopt
		t.mu.Unlock()
	}()
	tm := time.NewTimer(leaseCreateWait)
	defer tm.Stop()
	if ok, err := answer(ctx, p, tm.C); ok {
		return err
	}
	got, err := t.readLease(ctx, name)
	switch {
	case err == nil && got.Holder == t.opts.Holder:
		adopt = true // it landed; its answer is on its way
		return nil
	case err == nil, errors.Is(err, errBadLease):
		return fmt.Errorf("%s: %w", name, ErrExists)
	case !errors.Is(err, ErrNotFound):
		return err
	case landed != nil && landed():
		return errLanded
	}
	_, err = answer(ctx, p, nil)
	return err
}

// answer waits for p's answer (ok), ctx's end (ok) or timeout.
func answer(ctx context.Context, p *pendingCreate, timeout <-chan time.Time) (ok bool, err error) {
	select {
	case <-p.done:
		return true, p.err
	case <-ctx.Done():
		return true, ctx.Err()
	case <-timeout:
		return false, nil
	}
}

// runCreate makes the create p stands for, to its answer.
func (t *Tier) runCreate(name string, doc []byte, p *pendingCreate) {
	// Detached from the callers, who may leave; op bounds it by OpTimeout.
	err := t.op(context.Background(), func(ctx context.Context) error { return t.blobs.Put(ctx, name, [][]byte{doc}, true) })
	t.mu.Lock()
	delete(t.creates, name)
	p.err = err
	orphan := p.waiters == 0 && !p.adopted
	t.mu.Unlock()
	close(p.done)
	if orphan && err == nil {
		t.log.Debug("shared cache: a lease create answered after it was given up; deleted", "lease", name)
		t.deleteQuietly(name)
	}
}
