package eager

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/dustin/go-humanize"

	"github.com/weightfs/weightfs/fetch"
)

// check looks at each final path: a file in place with the right size and
// checksum is kept (hashed only when no ledger vouches for it); a wrong one
// is removed. It returns the parts still to assemble.
func (d *Downloader) check(ctx context.Context) []*part {
	var (
		mu    sync.Mutex
		parts []*part
		wg    sync.WaitGroup
		sem   = make(chan struct{}, d.opts.Checkers)
	)
	for _, t := range d.targets {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if ctx.Err() != nil {
				return
			}
			inPlace, err := d.inPlace(t)
			switch {
			case err != nil:
				d.fail(nil, t, err)
			case inPlace:
				d.placed(nil, t)
			default:
				p := newPart(t, fetch.Retrying(t.Reader, d.retryPolicy(t)), d.opts.ChunkSize)
				mu.Lock()
				parts = append(parts, p)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return parts
}

func (d *Downloader) retryPolicy(t Target) fetch.RetryPolicy {
	p := d.opts.Retry
	if p.OnRetry == nil {
		p.OnRetry = func(err error) { d.log.Warn("ranged read failed, retrying", "file", t.label(), "err", err) }
	}
	return p
}

// inPlace reports whether t.Path already holds the right file.
func (d *Downloader) inPlace(t Target) (bool, error) {
	info, err := os.Stat(t.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !info.Mode().IsRegular() {
		return false, fmt.Errorf("%s exists and is not a regular file", t.Path)
	}
	sum := t.File.Checksum
	ok := info.Size() == t.File.Size
	switch {
	case !ok:
		d.log.Warn("file in place has the wrong size; fetching it again", "file", t.label(), "path", t.Path,
			"size", info.Size(), "want", t.File.Size)
	case sum.IsZero():
		return true, nil // the size is all the origin lets us check
	case t.Ledger != nil && t.Ledger.Verified(t.Path, info, sum):
		return true, nil
	default:
		f, err := os.Open(t.Path)
		if err != nil {
			return false, err
		}
		got, err := fetch.Digest(sum.Algo, f, t.File.Size)
		f.Close()
		if err != nil {
			return false, fmt.Errorf("hashing %s: %w", t.Path, err)
		}
		if got == sum.Value {
			if t.Ledger != nil {
				t.Ledger.Add(t.Path, sum)
			}
			return true, nil
		}
		d.log.Warn("file in place does not match its checksum; fetching it again", "file", t.label(), "path", t.Path,
			"want", sum.String(), "got", sum.Algo+":"+got)
	}
	if t.Ledger != nil {
		t.Ledger.Forget(t.Path)
	}
	return false, removeIfExists(t.Path)
}

// checkSpace fails fast when a filesystem cannot hold what is still to
// fetch, instead of after hours of download.
func (d *Downloader) checkSpace(parts []*part) error {
	type fsNeed struct {
		dir         string
		need, avail int64
	}
	byDev := map[uint64]*fsNeed{}
	for _, p := range parts {
		dir := filepath.Dir(p.path)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		avail, dev, ok := freeSpace(dir)
		if !ok {
			continue
		}
		n := byDev[dev]
		if n == nil {
			n = &fsNeed{dir: dir, avail: avail}
			byDev[dev] = n
		}
		n.need += p.t.File.Size
		if info, err := os.Stat(p.path); err == nil {
			n.need -= min(info.Size(), p.t.File.Size) // already reserved by an earlier run
		}
	}
	for _, n := range byDev {
		if n.need > n.avail {
			return fmt.Errorf("not enough space on the filesystem of %s: %s more needed, %s free",
				n.dir, humanBytes(n.need), humanBytes(n.avail))
		}
	}
	return nil
}

// humanBytes is n in binary units (KiB, MiB, ...), for messages.
func humanBytes(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
