package objstore

import (
	"fmt"
	"sort"
	"strings"

	"github.com/weightfs/weightfs/fetch"
)

// maxPages caps pagination: ten million objects at a full page, while
// still ending a store that loops.
const maxPages = 10000

// maxPageSize is the most objects one list page holds, in S3's
// ListObjectsV2 and GCS's objects.list alike.
const maxPageSize = 1000

// PageSize is n, or the largest page when n is unset or past it.
func PageSize[N int | int32](n N) N {
	if n <= 0 || n > maxPageSize {
		return maxPageSize
	}
	return n
}

// Listing gathers one paginated listing of a Bucket into files: which
// names are files under the prefix, which the entry's patterns select, and
// what to say when nothing is left.
type Listing struct {
	b       *Bucket
	where   string       // "listing s3://b/p/ for model_cache[0] (...)"
	files   []fetch.File // selected, in listing order
	total   int          // usable file names under the prefix
	skipped []string     // names unusable as paths
	pages   int
	noun    string // "keys" or "names", for the log
}

// NewListing starts a listing; noun is what the store calls object names
// ("keys", "names").
func (b *Bucket) NewListing(noun string) *Listing {
	return &Listing{b: b, noun: noun, where: fmt.Sprintf("listing %s for %s", b.URL(b.Prefix), b.Entry.Name())}
}

// Where names the listing for messages.
func (l *Listing) Where() string { return l.where }

// Page counts one more page, and fails once there are too many.
func (l *Listing) Page() error {
	if l.pages >= maxPages {
		return fetch.Permanent(fmt.Errorf("%s: more than %d pages; narrow the prefix", l.where, maxPages))
	}
	l.pages++
	return nil
}

// Add considers one listed name: a file under the prefix that the entry
// wants is turned into a File by file (given its path under the prefix)
// and kept. One that file refuses is logged and left out alone, never
// failing the listing. It reports whether a file was kept (then the last
// of Files).
func (l *Listing) Add(name string, file func(rel string) (fetch.File, error)) bool {
	rel, isFile := RelPath(l.b.Prefix, name)
	if !isFile {
		return false // a "folder" placeholder or the prefix itself
	}
	if !fetch.ValidPath(rel) {
		l.skipped = append(l.skipped, name)
		return false
	}
	l.total++
	if !l.b.Entry.Wants(rel) {
		return false
	}
	f, err := file(rel)
	if err != nil {
		// One broken entry never takes the mount down: it is refused
		// alone and the rest served.
		l.b.Log.Error("refusing listed object", "listing", l.where, "err", err)
		return false
	}
	l.files = append(l.files, f)
	return true
}

// Files are the files kept so far, in listing order; a caller may amend
// them (a checksum settled later) before Done.
func (l *Listing) Files() []fetch.File { return l.files }

// Done ends the listing: it logs the names skipped, fails permanently with
// fetch.ErrNoMatchingFiles when nothing was kept, and returns the files
// sorted by path.
func (l *Listing) Done() ([]fetch.File, error) {
	if len(l.skipped) > 0 {
		l.b.Log.Warn("skipped objects whose "+l.noun+" are not usable as file paths (empty, '.' or '..' segments)",
			"count", len(l.skipped), "first", l.skipped[0])
	}
	e := l.b.Entry
	if len(l.files) == 0 && l.total == 0 {
		return nil, fetch.Permanent(fetch.NewClassifiedError([]error{fetch.ErrNoMatchingFiles}, nil,
			"%s: no objects at all under bucket %q prefix %q, so nothing for allow_patterns %q / ignore_patterns %q: check repo_id",
			e.Name(), l.b.Name, l.b.Prefix, nonNil(e.AllowPatterns), nonNil(e.IgnorePatterns)))
	}
	if len(l.files) == 0 {
		return nil, fetch.Permanent(fetch.NewClassifiedError([]error{fetch.ErrNoMatchingFiles}, nil,
			"%s: no object matches allow_patterns %q and ignore_patterns %q under bucket %q prefix %q (%d objects there)",
			e.Name(), nonNil(e.AllowPatterns), nonNil(e.IgnorePatterns), l.b.Name, l.b.Prefix, l.total))
	}
	sort.Slice(l.files, func(i, j int) bool { return l.files[i].Path < l.files[j].Path })
	return l.files, nil
}

// RelPath is an object name's path under prefix, and whether it names a
// file there: the prefix itself and "folder" placeholders (console
// folders, ending in '/') do not. The path may still be unusable; see
// fetch.ValidPath.
func RelPath(prefix, name string) (string, bool) {
	rel, ok := strings.CutPrefix(name, prefix)
	return rel, ok && rel != "" && !strings.HasSuffix(rel, "/")
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
