// Package eager downloads whole files to local disk ahead of use, for hosts
// that cannot mount: many ranged reads in flight across many files, each file
// assembled with pwrite in a part file whose sidecar records the ranges
// written (so a killed run resumes where it stopped), verified against its
// checksum, synced and renamed into place. A file is under its final name
// only once verified; bytes that fail verification are never left there.
//
// It owns the files it is given on local disk and nothing else. It reads from
// origins only through fetch.RangeReader, and knows nothing of FUSE, of the
// chunk cache, or of where files should go (its caller decides the layout).
package eager

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weightfs/weightfs/fetch"
)

// Target is one file to put on disk.
type Target struct {
	Label  string            // names the file in messages; default File.Path
	File   fetch.File        // what to fetch: size, checksum, pinned version
	Reader fetch.RangeReader // the origin; the Downloader adds the retry policy
	Path   string            // final name
	Part   string            // where it is assembled; default Path + ".part"
	// Ledger, if set, records Path once verified, so a re-run skips it
	// without hashing. Path must lie under the ledger's root.
	Ledger *Ledger
	// Placed, if set, runs once Path holds the verified file, whether it
	// was fetched now or found in place (e.g. to link a snapshot to a blob).
	// It must be idempotent.
	Placed func() error
}

func (t Target) label() string {
	if t.Label != "" {
		return t.Label
	}
	return t.File.Path
}

// Options tune a Downloader. Zero values take the defaults in the comments.
type Options struct {
	// Workers is the number of ranged reads in flight over all files;
	// default 64. Memory in use is about Workers × ChunkSize.
	Workers int
	// ChunkSize is the bytes of one ranged read; default 8 MiB (what AWS
	// advises for S3, close to the 10 MiB of the Hub's fast clients).
	ChunkSize int64
	// Retry bounds each ranged read: every attempt has its own deadline.
	// Default 5 attempts of at most 2 minutes each.
	Retry fetch.RetryPolicy
	// Checkers bounds how many files already on disk are hashed at once
	// when no ledger vouches for them; default GOMAXPROCS.
	Checkers int
	// Drain is how long the ranges in flight when ctx ends may go on, so
	// that the bytes they are receiving are written and recorded rather
	// than fetched again by the next run (with 64 ranges of 8 MiB, that is
	// up to 512 MiB). No new range starts once ctx ended. Default 5s, under
	// the 10 s that `docker stop` allows before SIGKILL; negative: none.
	Drain  time.Duration
	Logger *slog.Logger // default: discard
}

// DefaultRetry is the per-range policy when Options.Retry is zero.
var DefaultRetry = fetch.RetryPolicy{Attempts: 5, AttemptTimeout: 2 * time.Minute,
	BaseBackoff: 250 * time.Millisecond, MaxBackoff: 10 * time.Second}

// Progress is a snapshot of a run.
type Progress struct {
	Files, FilesDone, FilesFailed int
	TotalBytes                    int64         // of all files
	DoneBytes                     int64         // present: found in place, resumed or fetched
	FetchedBytes                  int64         // from the network in this run
	Elapsed                       time.Duration // since New
}

// Failure is one file that could not be put in place.
type Failure struct {
	Label string
	Err   error
}

// FailedError is what Run returns when some files failed.
type FailedError struct {
	Total    int
	Failures []Failure
}

func (e *FailedError) Error() string {
	f := e.Failures[0]
	msg := fmt.Sprintf("%d of %d files failed: %s: %v", len(e.Failures), e.Total, f.Label, f.Err)
	if n := len(e.Failures) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more, see the log)", n)
	}
	return msg
}

// MismatchError is the error of a file whose bytes did not match its
// checksum, twice.
type MismatchError struct {
	Algo, Want, Got string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s mismatch (want %s, got %s)", e.Algo, e.Want, e.Got)
}

// Downloader puts a set of targets on disk.
type Downloader struct {
	opts    Options
	log     *slog.Logger
	targets []Target
	start   time.Time

	doneBytes, fetchedBytes atomic.Int64
	inFlight                atomic.Int64 // ranged reads under way
	filesDone, filesFailed  atomic.Int64
	total                   int64

	mu        sync.Mutex
	cond      *sync.Cond
	queue     []job     // GUARDED_BY(mu); ranges to fetch, in order
	unsettled int       // GUARDED_BY(mu); parts neither in place nor failed
	failures  []Failure // GUARDED_BY(mu)
	finishers sync.WaitGroup
}

// job is one range of one part, or its primer.
type job struct {
	p *part
	i int // range index, or primeRange
}

// primeRange marks the job that primes a file: one 1-byte read before its
// ranges go out in parallel. Why: the Hub answers the first read of an LFS
// file with a redirect to a signed CDN URL that the source then reuses;
// without a primer, every range in flight would ask the Hub (64 resolve
// calls per file instead of one, against the Hub's rate limits).
const primeRange = -1

// Priming states of a part (GUARDED_BY(Downloader.mu)).
const (
	primeNone    = iota // one range or none to fetch: no primer
	primeWanted         // several ranges: the first taken becomes the primer
	primeRunning        // the primer is in flight; the ranges wait
	primeDone
)

// New checks the targets: every final path once, sizes not negative.
func New(targets []Target, o Options) (*Downloader, error) {
	if o.Workers <= 0 {
		o.Workers = 64
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = 8 << 20
	}
	if o.Retry.Attempts == 0 && o.Retry.AttemptTimeout == 0 {
		onRetry := o.Retry.OnRetry
		o.Retry = DefaultRetry
		o.Retry.OnRetry = onRetry
	}
	if o.Checkers <= 0 {
		o.Checkers = runtime.GOMAXPROCS(0)
	}
	if o.Drain == 0 {
		o.Drain = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Downloader{opts: o, log: o.Logger, start: time.Now()}
	d.cond = sync.NewCond(&d.mu)
	seen := map[string]string{}
	for _, t := range targets {
		if t.Path == "" || t.Reader == nil || t.File.Size < 0 {
			return nil, fmt.Errorf("%s: incomplete download target", t.label())
		}
		if t.Part == "" {
			t.Part = t.Path + ".part"
		}
		if prev, ok := seen[t.Path]; ok {
			return nil, fmt.Errorf("%s and %s would both be written to %s", prev, t.label(), t.Path)
		}
		seen[t.Path] = t.label()
		d.targets = append(d.targets, t)
		d.total += t.File.Size
	}
	return d, nil
}

// Progress reports where the run stands; safe to call at any time.
func (d *Downloader) Progress() Progress {
	el := time.Since(d.start)
	return Progress{Files: len(d.targets), FilesDone: int(d.filesDone.Load()), FilesFailed: int(d.filesFailed.Load()),
		TotalBytes: d.total, DoneBytes: d.doneBytes.Load(), FetchedBytes: d.fetchedBytes.Load(), Elapsed: el}
}

// Run puts every target in place. It returns nil only when every file is in
// place and verified (or has no checksum to verify); a *FailedError naming
// the files that are not; or ctx's error when interrupted, with every part
// file and its sidecar kept for the next run (the ranges in flight are let
// finish for Options.Drain first). While it runs it holds the lock of every
// ledger root among the targets: a second Run on one root, in this process
// or another, fails at once with a *BusyError.
func (d *Downloader) Run(ctx context.Context) error {
	unlock, err := d.lockRoots()
	if err != nil {
		return err
	}
	defer unlock()
	parts := d.check(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := d.checkSpace(parts); err != nil {
		return err
	}
	d.plan(parts)

	stopWake := context.AfterFunc(ctx, func() {
		d.mu.Lock()
		d.cond.Broadcast()
		d.mu.Unlock()
	})
	defer stopWake()
	reads, stopReads := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReads()
	workersDone := make(chan struct{})
	go d.drain(ctx, workersDone, stopReads)
	var wg sync.WaitGroup
	for range d.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.work(ctx, reads)
		}()
	}
	wg.Wait()
	close(workersDone)
	d.finishers.Wait()
	for _, p := range parts {
		p.waitSaved()
		p.close()
	}
	d.mu.Lock()
	failures := append([]Failure(nil), d.failures...)
	d.mu.Unlock()
	if ctx.Err() != nil && len(failures)+int(d.filesDone.Load()) < len(d.targets) {
		return ctx.Err()
	}
	if len(failures) > 0 {
		sort.SliceStable(failures, func(i, j int) bool { return failures[i].Label < failures[j].Label })
		return &FailedError{Total: len(d.targets), Failures: failures}
	}
	return nil
}

// plan opens every part and queues its missing ranges: smallest files
// first (many small files finish early and cheaply; the loader's config and
// index are among them), then the big ones, each in offset order so that
// the streaming hash keeps up.
func (d *Downloader) plan(parts []*part) {
	sort.SliceStable(parts, func(i, j int) bool {
		a, b := parts[i].t.File, parts[j].t.File
		if a.Size != b.Size {
			return a.Size < b.Size
		}
		return parts[i].t.Path < parts[j].t.Path
	})
	d.mu.Lock()
	d.unsettled = len(parts)
	d.mu.Unlock()
	for _, p := range parts {
		missing, err := p.open()
		if err != nil {
			d.fail(p, p.t, err)
			continue
		}
		d.doneBytes.Add(p.resumed)
		if p.resumed > 0 {
			d.log.Info("resuming a partial file", "file", p.t.label(), "have", humanBytes(p.resumed),
				"of", humanBytes(p.t.File.Size))
		}
		if len(missing) == 0 {
			d.finishers.Add(1)
			go d.finish(p)
			continue
		}
		d.mu.Lock()
		if len(missing) > 1 {
			p.prime = primeWanted
		}
		for _, i := range missing {
			d.queue = append(d.queue, job{p, i})
		}
		d.mu.Unlock()
	}
	d.mu.Lock()
	d.cond.Broadcast()
	d.mu.Unlock()
}

// next takes the next range to fetch, waiting while a verification may still
// send a file back for a second pass. It returns false when all is settled
// or ctx ended.
func (d *Downloader) next(ctx context.Context) (job, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		if ctx.Err() != nil || d.unsettled == 0 {
			return job{}, false
		}
		for k, j := range d.queue {
			switch j.p.prime {
			case primeNone, primeDone:
				if k == 0 {
					d.queue = d.queue[1:]
				} else {
					d.queue = slices.Delete(d.queue, k, k+1)
				}
				return j, true
			case primeWanted:
				j.p.prime = primeRunning
				return job{p: j.p, i: primeRange}, true
			}
			// primeRunning: this file's ranges wait for its primer.
		}
		d.cond.Wait()
	}
}

// drain ends the reads in flight: at once when the workers are done, else
// Options.Drain after ctx ended.
func (d *Downloader) drain(ctx context.Context, workersDone <-chan struct{}, stopReads func()) {
	defer stopReads()
	select {
	case <-workersDone:
		return
	case <-ctx.Done():
	}
	if d.opts.Drain <= 0 {
		return
	}
	if n := d.inFlight.Load(); n > 0 {
		d.log.Info("interrupted: letting the ranges in flight finish, so the next run need not fetch them again",
			"ranges", n, "at_most", d.opts.Drain)
	}
	t := time.NewTimer(d.opts.Drain)
	defer t.Stop()
	select {
	case <-workersDone:
	case <-t.C:
	}
}

// work fetches ranges until none is left or ctx ended; reads is the
// context of the reads themselves, which outlives ctx by the drain. Each
// worker owns one buffer of ChunkSize bytes: memory stays at Workers ×
// ChunkSize, allocated once.
func (d *Downloader) work(ctx, reads context.Context) {
	var buf []byte
	for {
		j, ok := d.next(ctx)
		if !ok {
			return
		}
		p := j.p
		p.mu.Lock()
		skip := p.settled
		p.mu.Unlock()
		if skip {
			continue
		}
		if buf == nil {
			buf = make([]byte, d.opts.ChunkSize)
		}
		if j.i == primeRange {
			// Errors are left to the ranges, which retry and report them.
			if err := p.read.ReadRange(reads, p.t.File, 0, buf[:1]); err != nil && ctx.Err() == nil {
				d.log.Debug("priming read failed", "file", p.t.label(), "err", err)
			}
			d.mu.Lock()
			p.prime = primeDone
			d.cond.Broadcast()
			d.mu.Unlock()
			continue
		}
		off, n := int64(j.i)*p.chunk, p.rangeLen(j.i)
		d.inFlight.Add(1)
		err := p.read.ReadRange(reads, p.t.File, off, buf[:n])
		d.inFlight.Add(-1)
		if err == nil {
			if _, err = p.f.WriteAt(buf[:n], off); err != nil {
				err = fmt.Errorf("writing %s: %w", p.path, err)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return // interrupted, not failed: the part is kept for the next run
			}
			d.fail(p, p.t, err)
			continue
		}
		d.fetchedBytes.Add(n)
		d.doneBytes.Add(n)
		last, pass := p.markDone(j.i)
		p.feed(off, buf[:n], pass)
		if last {
			d.finishers.Add(1)
			go d.finish(p)
		}
	}
}

// finish verifies a part whose every range is written, then syncs it and
// renames it into place. A first mismatch sends the file back for a second
// pass from scratch (a corrupted transfer, or bytes a power loss dropped
// after they were recorded); a second one fails it and removes the bytes.
func (d *Downloader) finish(p *part) {
	defer d.finishers.Done()
	t := p.t
	sum := t.File.Checksum
	if !sum.IsZero() {
		got, err := p.digest()
		if err != nil {
			d.fail(p, t, err)
			return
		}
		if got != sum.Value {
			mismatch := &MismatchError{Algo: sum.Algo, Want: sum.Value, Got: got}
			p.mu.Lock()
			p.pass++
			second := p.pass > 2
			if second {
				p.settled = true
			} else {
				p.reset()
			}
			p.mu.Unlock()
			if second {
				p.waitSaved()
				removeIfExists(p.sidecar())
				removeIfExists(p.path)
				d.fail(p, t, mismatch)
				return
			}
			d.log.Warn("downloaded file does not match its checksum; fetching it once more", "file", t.label(), "err", mismatch)
			if err := p.resetHash(); err != nil {
				d.fail(p, t, err)
				return
			}
			d.doneBytes.Add(-t.File.Size)
			p.saveSidecar()
			if p.chunks == 0 {
				d.finishers.Add(1)
				go d.finish(p)
				return
			}
			d.mu.Lock()
			for i := 0; i < p.chunks; i++ {
				d.queue = append(d.queue, job{p, i})
			}
			d.cond.Broadcast()
			d.mu.Unlock()
			return
		}
	}
	if err := d.commit(p); err != nil {
		d.fail(p, t, err)
		return
	}
	d.placed(p, t)
}

// commit makes the verified part durable under its final name.
func (d *Downloader) commit(p *part) error {
	p.mu.Lock()
	p.settled = true
	p.mu.Unlock()
	p.waitSaved()
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", p.path, err)
	}
	p.close()
	if err := os.Rename(p.path, p.t.Path); err != nil {
		return fmt.Errorf("moving %s into place: %w", p.t.Path, err)
	}
	removeIfExists(p.sidecar())
	syncDir(filepath.Dir(p.t.Path))
	return nil
}

func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}

// placed records a file that is in place and verified.
func (d *Downloader) placed(p *part, t Target) {
	if t.Ledger != nil && !t.File.Checksum.IsZero() && p != nil {
		if err := t.Ledger.Add(t.Path, t.File.Checksum); err != nil {
			d.log.Warn("could not record a verified file; the next run will hash it again", "path", t.Path, "err", err)
		}
	}
	if t.Placed != nil {
		if err := t.Placed(); err != nil {
			d.fail(p, t, err)
			return
		}
	}
	if p != nil && !p.settleOnce() {
		return
	}
	if p == nil {
		d.doneBytes.Add(t.File.Size)
	}
	d.filesDone.Add(1)
	d.settle(p)
}

// fail records t as failed. Its part and sidecar stay (a later run resumes
// them) unless the bytes were found wrong, in which case finish removed them.
func (d *Downloader) fail(p *part, t Target, err error) {
	if p != nil {
		if !p.settleOnce() {
			return
		}
	}
	d.log.Error("file failed", "file", t.label(), "err", err)
	d.filesFailed.Add(1)
	d.mu.Lock()
	d.failures = append(d.failures, Failure{Label: t.label(), Err: err})
	d.mu.Unlock()
	d.settle(p)
}

// settle counts a part as done with; workers stop once all are.
func (d *Downloader) settle(p *part) {
	if p == nil {
		return
	}
	d.mu.Lock()
	d.unsettled--
	d.cond.Broadcast()
	d.mu.Unlock()
}
