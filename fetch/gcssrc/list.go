package gcssrc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/weightfs/weightfs/fetch"
)

// maxPages caps pagination: ten million objects at the page size, while
// still ending a server that loops.
const maxPages = 10000

// listedAttrs are the only attributes List asks for.
var listedAttrs = []string{"Name", "Size", "Generation", "MD5", "CRC32C"}

// List pages through the objects under the prefix, keeps those the entry's
// patterns select (paths relative to the prefix), and records each object's
// generation as its Version so reads are pinned to it.
func (s *Source) List(ctx context.Context) (*fetch.Manifest, error) {
	resolved := time.Now().UTC()
	var c *storage.Client
	err := s.retry.Do(ctx, func(ctx context.Context) error {
		st, err := s.getClient(ctx)
		if err == nil {
			c = st.c
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	q := &storage.Query{Prefix: s.prefix, Projection: storage.ProjectionNoACL}
	if err := q.SetAttrSelection(listedAttrs); err != nil {
		return nil, fmt.Errorf("%s: %w", s.entry.Name(), err) // a bug: the names are fixed
	}
	where := fmt.Sprintf("listing gs://%s/%s for %s", s.bucket, s.prefix, s.entry.Name())
	var (
		files   []fetch.File
		total   int
		skipped []string
		token   string
	)
	for pageNum := 0; ; pageNum++ {
		if pageNum >= maxPages {
			return nil, fetch.Permanent(fmt.Errorf("%s: more than %d pages; narrow the prefix", where, maxPages))
		}
		var page []*storage.ObjectAttrs
		var next string
		err := s.retry.Do(ctx, func(ctx context.Context) error {
			// A fresh iterator per attempt: a failed one stays failed.
			page = page[:0]
			var err error
			next, err = iterator.NewPager(c.Bucket(s.bucket).Objects(ctx, q), s.opts.PageSize, token).NextPage(&page)
			if err != nil {
				return s.classify(err, opInfo{op: "GET list gs://" + s.bucket + "/" + s.prefix, what: where})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, o := range page {
			rel, isFile := relName(s.prefix, o.Name)
			if !isFile {
				continue // a "folder" placeholder or the prefix itself
			}
			if !fetch.ValidPath(rel) {
				skipped = append(skipped, o.Name)
				continue
			}
			total++
			if !s.entry.Wants(rel) {
				continue
			}
			f, err := fileOf(rel, o)
			if err != nil {
				// One broken entry never takes the mount down: it is
				// refused alone and the rest served.
				s.log.Error("refusing listed object", "listing", where, "err", err)
				continue
			}
			files = append(files, f)
		}
		if next == "" {
			break
		}
		token = next
	}
	if len(skipped) > 0 {
		s.log.Warn("skipped objects whose names are not usable as file paths (empty, '.' or '..' segments)",
			"count", len(skipped), "first", skipped[0])
	}
	if len(files) == 0 && total == 0 {
		return nil, fetch.Permanent(newErr([]error{ErrNoMatchingFiles}, nil,
			"%s: no objects at all under bucket %q prefix %q, so nothing for allow_patterns %q / ignore_patterns %q: check repo_id",
			s.entry.Name(), s.bucket, s.prefix, nonNil(s.entry.AllowPatterns), nonNil(s.entry.IgnorePatterns)))
	}
	if len(files) == 0 {
		return nil, fetch.Permanent(newErr([]error{ErrNoMatchingFiles}, nil,
			"%s: no object matches allow_patterns %q and ignore_patterns %q under bucket %q prefix %q (%d objects there)",
			s.entry.Name(), nonNil(s.entry.AllowPatterns), nonNil(s.entry.IgnorePatterns), s.bucket, s.prefix, total))
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return &fetch.Manifest{Volume: s.entry.VolumeFolder, Kind: "gcs", RepoID: s.entry.RepoID, Resolved: resolved, Files: files}, nil
}

// relName is an object name's path under prefix, and whether it names a
// file there: the prefix itself and "folder" placeholders (ending in '/')
// do not. The path may still be unusable; see fetch.ValidPath.
func relName(prefix, name string) (string, bool) {
	rel, ok := strings.CutPrefix(name, prefix)
	return rel, ok && rel != "" && !strings.HasSuffix(rel, "/")
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
	end := off + int64(len(p))
	if off < 0 || end > f.Size || end < off {
		return fetch.Permanent(fmt.Errorf("%s: range [%d, %d) is outside the object's %d bytes", s.where(f.Path), off, end, f.Size))
	}
	gen, err := strconv.ParseInt(f.Version, 10, 64)
	if err != nil || gen <= 0 {
		return fetch.Permanent(fmt.Errorf("%s: no generation recorded, so the read cannot be pinned; list the entry again", s.where(f.Path)))
	}
	st, err := s.getClient(ctx)
	if err != nil {
		return err
	}
	key := s.prefix + f.Path
	oi := opInfo{op: fmt.Sprintf("GET gs://%s/%s#%d bytes=%d-%d", s.bucket, key, gen, off, end-1), what: s.where(f.Path), read: true}
	r, err := st.c.Bucket(s.bucket).Object(key).Generation(gen).ReadCompressed(st.compressed).NewRangeReader(ctx, off, int64(len(p)))
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

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
