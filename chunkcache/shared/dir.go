package shared

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dir is a shared store in a directory of a filesystem every node mounts
// (NFS, EFS, Filestore, CephFS, JuiceFS, Lustre, a SeaweedFS mount).
//
// An object is written to a temporary file in its own folder, then moved
// into place with rename(2), so a reader never sees a partial object. A
// write that must not replace an object (ifAbsent) is refused when the
// object is there already; two racing ones may both land, which is
// harmless for the content-addressed chunks that are written so. Leases
// are tiny exclusive creates (O_EXCL), whose exclusivity is not trusted
// either (ExclusiveCreate is false): on two SeaweedFS mounts racing
// O_EXCL creates both succeeded.
//
// Everything is private to the user running weightfs (dirs 0700, files
// 0600): the store holds weights of gated repos.
//
// Calls into the filesystem run on their own goroutine, so a hung server
// costs a caller its deadline, not its thread forever.
type Dir struct {
	root string
}

var _ Blobs = (*Dir)(nil)

// tmpMark is in the name of every temporary file, so List can tell them.
const tmpMark = ".tmp-"

// OpenDir returns the store rooted at root, creating it (0700) if needed.
func OpenDir(root string) (*Dir, error) {
	if root == "" || !filepath.IsAbs(root) {
		return nil, fmt.Errorf("--shared-cache %q: give an absolute directory, or s3://bucket/prefix, or gs://bucket/prefix", root)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("--shared-cache %s: %w", root, err)
	}
	if err := os.Chmod(root, 0o700); err != nil {
		return nil, fmt.Errorf("--shared-cache %s: making it private: %w", root, err)
	}
	return &Dir{root: root}, nil
}

func (d *Dir) String() string        { return d.root }
func (d *Dir) ExclusiveCreate() bool { return false }

func (d *Dir) path(name string) string { return filepath.Join(d.root, filepath.FromSlash(name)) }

// bounded runs fn on its own goroutine and gives up at ctx's deadline.
func bounded[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	type res struct {
		v   T
		err error
	}
	ch := make(chan res, 1)
	go func() {
		v, err := fn()
		ch <- res{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// classify maps filesystem errors to the Blobs kinds.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%w: %v", ErrExists, err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: %v", ErrFull, err)
	case errors.Is(err, syscall.EROFS), errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %v", ErrReadOnly, err)
	}
	return err
}

func (d *Dir) Open(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	type opened struct {
		f    *os.File
		size int64
	}
	o, err := bounded(ctx, func() (opened, error) {
		f, err := os.Open(d.path(name))
		if err != nil {
			return opened{}, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return opened{}, err
		}
		return opened{f, st.Size()}, nil
	})
	if err != nil {
		return nil, 0, classify(err)
	}
	return &ctxReader{ctx: ctx, f: o.f}, o.size, nil
}

// ctxReader reads a file under ctx's deadline.
type ctxReader struct {
	ctx context.Context
	f   *os.File
}

func (r *ctxReader) Read(p []byte) (int, error) {
	return bounded(r.ctx, func() (int, error) { return r.f.Read(p) })
}

func (r *ctxReader) Close() error { return r.f.Close() }

func (d *Dir) Put(ctx context.Context, name string, data [][]byte, ifAbsent bool) error {
	_, err := bounded(ctx, func() (struct{}, error) { return struct{}{}, d.put(name, data, ifAbsent) })
	return classify(err)
}

// smallExclusive is the largest lease or takeover claim (names under
// leases/) written in place with O_EXCL. A chunk is never written in place,
// however small: a reader could see it half written (and take it for a
// corrupt one). On some distributed filesystems link(2) onto an
// existing name succeeds (on a SeaweedFS mount it always did, so every node
// won every lease), while O_EXCL is refused once the first create has
// settled; a write this small is one request, so a reader sees all of it
// or none, and an empty file left by a crash reads as a garbled lease,
// which is taken over.
const smallExclusive = 4 << 10

func (d *Dir) put(name string, data [][]byte, ifAbsent bool) error {
	final := d.path(name)
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if n := size(data); ifAbsent && n <= smallExclusive && strings.HasPrefix(name, "leases/") {
		f, err := os.OpenFile(final, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, werr := f.Write(join(data, n))
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		return werr
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(final)+tmpMark+"*") // 0600
	if err != nil {
		return err
	}
	tname := tmp.Name()
	defer os.Remove(tname) // when anything failed
	for _, b := range data {
		if _, err := tmp.Write(b); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// rename(2), even with ifAbsent: on a SeaweedFS mount a chunk moved
	// into place with link(2) vanished once the temporary name was
	// removed, though listings still showed it. An object written
	// ifAbsent is a content-addressed chunk, so a racing writer that
	// replaces it replaces it with the same bytes.
	if ifAbsent {
		if _, err := os.Stat(final); err == nil {
			return fs.ErrExist
		}
	}
	return os.Rename(tname, final)
}

func (d *Dir) Delete(ctx context.Context, name string) error {
	_, err := bounded(ctx, func() (struct{}, error) {
		err := os.Remove(d.path(name))
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		return struct{}{}, err
	})
	return classify(err)
}

func (d *Dir) List(ctx context.Context, prefix string, fn func(BlobInfo) error) error {
	// The walk starts at the deepest folder the prefix names.
	start := prefix
	if i := strings.LastIndex(start, "/"); i >= 0 {
		start = start[:i]
	} else {
		start = ""
	}
	err := filepath.WalkDir(d.path(start), func(p string, e fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		info, err := e.Info()
		if err != nil {
			return nil // gone meanwhile
		}
		temp := strings.Contains(e.Name(), tmpMark)
		name := rel
		if temp {
			if !strings.HasPrefix(name, start) {
				return nil
			}
		} else if !strings.HasPrefix(name, prefix) {
			return nil
		}
		return fn(BlobInfo{Name: name, Size: info.Size(), ModTime: info.ModTime(), Temp: temp})
	})
	return classify(err)
}

func (d *Dir) Free(ctx context.Context) (int64, error) {
	return bounded(ctx, func() (int64, error) {
		var st unix.Statfs_t
		if err := unix.Statfs(d.root, &st); err != nil {
			return -1, err
		}
		return int64(st.Bavail) * st.Bsize, nil
	})
}

func size(data [][]byte) int {
	n := 0
	for _, b := range data {
		n += len(b)
	}
	return n
}

func join(data [][]byte, n int) []byte {
	if len(data) == 1 {
		return data[0]
	}
	out := make([]byte, 0, n)
	for _, b := range data {
		out = append(out, b...)
	}
	return out
}
