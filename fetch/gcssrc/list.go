package gcssrc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/weightfs/weightfs/fetch"
)

// listedAttrs are the only attributes List asks for.
var listedAttrs = []string{"Name", "Size", "Generation", "MD5", "CRC32C"}

// List pages through the objects under the prefix, keeps those the entry's
// patterns select (paths relative to the prefix), and records each object's
// generation as its Version so reads are pinned to it.
func (s *Source) List(ctx context.Context) (*fetch.Manifest, error) {
	resolved := time.Now().UTC()
	var c *storage.Client
	err := s.b.Retry.Do(ctx, func(ctx context.Context) error {
		st, err := s.getClient(ctx)
		if err == nil {
			c = st.c
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	q := &storage.Query{Prefix: s.b.Prefix, Projection: storage.ProjectionNoACL}
	if err := q.SetAttrSelection(listedAttrs); err != nil {
		return nil, fmt.Errorf("%s: %w", s.b.Entry.Name(), err) // a bug: the names are fixed
	}
	l := s.b.NewListing("names")
	var token string
	for {
		if err := l.Page(); err != nil {
			return nil, err
		}
		var page []*storage.ObjectAttrs
		var next string
		err := s.b.Retry.Do(ctx, func(ctx context.Context) error {
			// A fresh iterator per attempt: a failed one stays failed.
			page = page[:0]
			var err error
			next, err = iterator.NewPager(c.Bucket(s.b.Name).Objects(ctx, q), s.opts.PageSize, token).NextPage(&page)
			if err != nil {
				return s.classify(err, opInfo{op: "GET list " + s.b.URL(s.b.Prefix), what: l.Where()})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, o := range page {
			l.Add(o.Name, func(rel string) (fetch.File, error) { return fileOf(rel, o) })
		}
		if next == "" {
			break
		}
		token = next
	}
	files, err := l.Done()
	if err != nil {
		return nil, err
	}
	return &fetch.Manifest{Volume: s.b.Entry.VolumeFolder, Kind: "gcs", RepoID: s.b.Entry.RepoID, Resolved: resolved, Files: files}, nil
}

// fileOf turns a listed object at rel into a File pinned to its
// generation. Its size is taken as listed (fetch.CheckManifest refuses
// impossible ones).
func fileOf(rel string, o *storage.ObjectAttrs) (fetch.File, error) {
	if o.Generation <= 0 {
		return fetch.File{}, fmt.Errorf("object %q has no generation; reads could not be pinned to it", o.Name)
	}
	return fetch.File{Path: rel, Size: o.Size, Version: strconv.FormatInt(o.Generation, 10), Checksum: checksumOf(o)}, nil
}

// checksumOf prefers the MD5 (absent for composite objects), else the
// CRC32C GCS keeps for every object.
func checksumOf(o *storage.ObjectAttrs) fetch.Checksum {
	if len(o.MD5) == 16 {
		return fetch.Checksum{Algo: fetch.AlgoMD5, Value: hex.EncodeToString(o.MD5)}
	}
	return fetch.Checksum{Algo: fetch.AlgoCRC32C, Value: fmt.Sprintf("%08x", o.CRC32C)}
}

// ReadRange fills p with bytes [off, off+len(p)) of f at generation
// f.Version: an object replaced since the listing fails with
// fetch.ErrChanged (permanent) instead of mixing versions. Against GCS the
// bytes are read as stored (no decompressive transcoding), matching the
// listed size and checksums. It does not retry.
func (s *Source) ReadRange(ctx context.Context, f fetch.File, off int64, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	gen, err := strconv.ParseInt(f.Version, 10, 64)
	pin := f.Version
	if err != nil || gen <= 0 {
		pin = ""
	}
	if err := s.b.CheckRead(f, off, len(p), pin, "generation"); err != nil {
		return err
	}
	end := off + int64(len(p))
	st, err := s.getClient(ctx)
	if err != nil {
		return err
	}
	key := s.b.Prefix + f.Path
	oi := opInfo{op: fmt.Sprintf("GET %s#%d bytes=%d-%d", s.b.URL(key), gen, off, end-1), what: s.b.Where(f.Path), read: true}
	r, err := st.c.Bucket(s.b.Name).Object(key).Generation(gen).ReadCompressed(st.compressed).NewRangeReader(ctx, off, int64(len(p)))
	if err != nil {
		return s.classify(err, oi)
	}
	defer r.Close()
	a := r.Attrs
	switch {
	case a.Generation != 0 && a.Generation != gen:
		return fetch.Permanent(newErr([]error{fetch.ErrChanged}, nil,
			"%s: got generation %d, listed %d: the object changed since it was listed; list the entry again", oi.what, a.Generation, gen))
	case a.Size != f.Size:
		return fetch.Permanent(newErr([]error{fetch.ErrChanged}, nil,
			"%s: the object is %d bytes, %d when listed: it changed since it was listed; list the entry again", oi.what, a.Size, f.Size))
	case a.StartOffset != off:
		return newErr([]error{ErrBadResponse}, nil, "%s: asked for bytes from %d, the answer starts at %d", oi.what, off, a.StartOffset)
	case r.Remain() >= 0 && r.Remain() != int64(len(p)):
		return newErr([]error{ErrBadResponse}, nil, "%s: asked for %d bytes, the answer has %d", oi.what, len(p), r.Remain())
	}
	if _, err := io.ReadFull(r, p); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: reading the body: %w", oi.what, ctx.Err())
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return newErr([]error{ErrBadResponse, err}, nil, "%s: reading the body of bytes %d-%d: %s", oi.what, off, end-1, s.redact(err.Error()))
	}
	return nil
}
