package shared

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"time"
)

// A lease says "node H is fetching this chunk from the origin until E". It
// is a small object made with the store's own exclusive create, so no
// extra service is needed. Its holder renews it while the fetch runs, so a
// short TTL still covers a slow fetch, and a crashed holder's lease lapses
// within one TTL for another node to take over.
//
// A lease is only an optimisation: two holders at once (a DFS whose
// exclusive create is not, a takeover racing a slow holder) cost one more
// origin download of a chunk, never a wrong byte.
type leaseDoc struct {
	Holder  string `json:"holder"`
	Expires int64  `json:"expires_unix_ms"`
}

// maxLeaseDoc bounds what is read of a lease object: the store is shared,
// and a garbled or hostile one must not make us allocate.
const maxLeaseDoc = 4 << 10

// lease is one we hold.
type lease struct {
	t     *Tier
	name  string
	claim string
	lost  bool // another node's create won after all: leave the lease alone
	stop  chan struct{}
	done  sync.WaitGroup
}

// acquireResult says what acquire found.
type acquireResult struct {
	held   *lease   // we hold it
	other  leaseDoc // someone else does (held == nil)
	landed bool     // the chunk landed meanwhile (landed said so): no lease needed
}

// acquire tries to take the lease on name. It takes over a lease that has
// expired or cannot be read. Where the store's exclusive create is weak,
// the lease won here is confirmed later, while the fetch runs (see
// confirmed). landed reads the chunk the lease is for; see create.
func (t *Tier) acquire(ctx context.Context, vol, name string, landed func() bool) (acquireResult, error) {
	claim := "" // the takeover claim we made, deleted with the lease
	for attempt := 0; attempt < 2; attempt++ {
		doc := leaseDoc{Holder: t.opts.Holder, Expires: t.now().Add(t.opts.LeaseTTL).UnixMilli()}
		data, _ := json.Marshal(doc)
		err := t.create(ctx, name, data, landed)
		switch {
		case err == nil:
			return acquireResult{held: t.startLease(name, claim)}, nil
		case errors.Is(err, errLanded):
			if claim != "" {
				t.deleteQuietly(claim)
			}
			return acquireResult{landed: true}, nil
		case !errors.Is(err, ErrExists):
			return acquireResult{}, err
		}
		got, err := t.readLease(ctx, name)
		if errors.Is(err, ErrNotFound) {
			continue // released meanwhile: try again
		}
		if err == nil && t.now().UnixMilli() < got.Expires {
			return acquireResult{other: got}, nil
		}
		if err != nil && !errors.Is(err, errBadLease) {
			return acquireResult{}, err
		}
		// Expired (its holder crashed or stalled) or garbled: take it
		// over. Every waiter saw it lapse at once, and a plain delete then
		// create would let a late one delete the lease an early one just
		// made; so the takeover of this very lease (named by its expiry) is
		// claimed first with an exclusive create, and only its winner
		// deletes and recreates the lease.
		c, ok, err := t.claimTakeover(ctx, name, got, data)
		if err != nil {
			return acquireResult{}, err
		}
		if !ok {
			return acquireResult{other: leaseDoc{Holder: "takeover", Expires: t.now().Add(t.opts.LeaseTTL).UnixMilli()}}, nil
		}
		claim = c
		if err := t.op(ctx, func(ctx context.Context) error { return t.blobs.Delete(ctx, name) }); err != nil {
			return acquireResult{}, err
		}
		t.count(vol, func(s *Stats) { s.LeasesTakenOver++ })
		t.log.Debug("shared cache: taking over a lapsed lease", "lease", name, "holder", got.Holder)
		t.dropLapsed(got.Holder)
	}
	if claim != "" {
		t.deleteQuietly(claim)
	}
	// Lost the race for the freed lease to another node.
	got, err := t.readLease(ctx, name)
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, errBadLease) {
		return acquireResult{}, err
	}
	return acquireResult{other: got}, nil
}

var errBadLease = errors.New("unreadable lease")

// quickConfirm is how long a lease on a weak store is left before its first
// read-back; errLostQuick says that read showed another holder.
const quickConfirm = 50 * time.Millisecond

var errLostQuick = errors.New("lease lost to a racing node")

func (t *Tier) readLease(ctx context.Context, name string) (leaseDoc, error) {
	var doc leaseDoc
	err := t.op(ctx, func(ctx context.Context) error {
		r, size, err := t.blobs.Open(ctx, name)
		if err != nil {
			return err
		}
		defer r.Close()
		if size > maxLeaseDoc {
			return errBadLease
		}
		b, err := io.ReadAll(io.LimitReader(r, maxLeaseDoc))
		if err != nil {
			return err
		}
		if json.Unmarshal(b, &doc) != nil || doc.Holder == "" {
			return errBadLease
		}
		return nil
	})
	return doc, err
}

// claimTakeover makes the claim to take over the lapsed lease got of name.
// A claim whose maker crashed lapses too: it is removed, and the next look
// at the lease claims again.
func (t *Tier) claimTakeover(ctx context.Context, name string, got leaseDoc, doc []byte) (string, bool, error) {
	claim := name + takeoverMark + itoa(got.Expires) // 0 for a garbled lease
	err := t.create(ctx, claim, doc, nil)
	if err == nil {
		return claim, true, nil
	}
	if !errors.Is(err, ErrExists) {
		return "", false, err
	}
	if c, cerr := t.readLease(ctx, claim); cerr == nil && t.now().UnixMilli() >= c.Expires {
		t.deleteQuietly(claim)
	}
	return "", false, nil
}

// takeoverMark is in the names of takeover claims (beside their lease).
const takeoverMark = ".takeover-"

func (t *Tier) deleteQuietly(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), t.opts.OpTimeout)
	defer cancel()
	_ = t.op(ctx, func(ctx context.Context) error { return t.blobs.Delete(ctx, name) })
}

// startLease renews the lease every third of its TTL until release. The
// ticker lives only while a fetch runs. claim, if set, is the takeover
// claim that won it, deleted on release.
func (t *Tier) startLease(name, claim string) *lease {
	l := &lease{t: t, name: name, claim: claim, stop: make(chan struct{})}
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		tk := time.NewTicker(t.opts.LeaseTTL / 3)
		defer tk.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tk.C:
			}
			doc := leaseDoc{Holder: t.opts.Holder, Expires: t.now().Add(t.opts.LeaseTTL).UnixMilli()}
			data, _ := json.Marshal(doc)
			ctx, cancel := context.WithTimeout(context.Background(), t.opts.OpTimeout)
			_ = t.blobs.Put(ctx, name, [][]byte{data}, false) // a lapse costs a duplicate fetch at most
			cancel()
		}
	}()
	return l
}

// release stops renewing and deletes the lease (unless another node won
// it after all: that one is theirs).
func (l *lease) release() {
	if l == nil {
		return
	}
	l.stopRenewing()
	if l.lost {
		return
	}
	l.t.deleteQuietly(l.name)
	if l.claim != "" {
		l.t.deleteQuietly(l.claim)
	}
}

func (l *lease) stopRenewing() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.done.Wait()
}

// confirmed runs the origin fetch under a lease won on a store whose
// exclusive create is weak (a DFS where two racing creates both succeed).
// Of racing writers of one name the last one's bytes are what every node
// reads once the store settles, so ConfirmDelay into the fetch the lease is
// read back: if another node's name is in it, this fetch stops and the
// caller waits for theirs. Confirming beside the fetch rather than before
// it costs a lease nothing when there was no race (the usual case, with
// nodes spread over the model) and a race at most ConfirmDelay of one
// chunk's download.
func (t *Tier) confirmed(ctx context.Context, l *lease, origin func(context.Context) error) (lost leaseDoc, err error) {
	// First a quick look, before any byte is fetched: a store that
	// settles fast (NFS, a local disk) shows the race's winner already.
	if err := t.sleep(ctx, quickConfirm); err != nil {
		return leaseDoc{}, err
	}
	if got, err := t.readLease(ctx, l.name); err == nil && got.Holder != t.opts.Holder {
		l.lost = true
		l.stopRenewing()
		return got, errLostQuick
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lostTo leaseDoc
	done := make(chan struct{})
	go func() {
		defer close(done)
		if t.sleep(fctx, t.opts.ConfirmDelay) != nil {
			return
		}
		got, err := t.readLease(fctx, l.name)
		if err == nil && got.Holder != t.opts.Holder {
			lostTo = got
			l.lost = true
			l.stopRenewing()
			cancel()
		}
	}()
	err = origin(fctx)
	cancel()
	<-done
	if l.lost {
		return lostTo, nil
	}
	return leaseDoc{}, err
}
