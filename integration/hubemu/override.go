package hubemu

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// ListingOverride makes the tree API lie, as a broken or hostile Hub might:
// sizes no file has, files that do not exist. It is a fault for tests of a
// client's defences, so it lives outside the faithful emulator: install it
// with Options.Wrap (Wrap), and change it at any time with Set. Content
// requests are untouched (a listed-only file answers 404).
type ListingOverride struct {
	mu   sync.Mutex
	over map[string]Listing // GUARDED_BY(mu); repo ID -> lies
}

// Listing is what a ListingOverride says about one repo.
type Listing struct {
	Sizes map[string]int64 // path -> size claimed for a listed file (its lfs.size too)
	Extra []ExtraFile      // files listed besides the repo's own
}

// ExtraFile is a file that only the listing names.
type ExtraFile struct {
	Path string
	Size int64
	LFS  bool // listed with an lfs block (sha256 oid), as weights are
}

// Set replaces the lies told about repo.
func (o *ListingOverride) Set(repo string, l Listing) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.over == nil {
		o.over = map[string]Listing{}
	}
	o.over[repo] = l
}

func (o *ListingOverride) get(repo string) (Listing, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	l, ok := o.over[repo]
	return l, ok
}

// Wrap is an Options.Wrap: it rewrites the JSON of tree answers for repos
// with an override and passes everything else through.
func (o *ListingOverride) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		segs, err := splitEscaped(r.URL.EscapedPath())
		if err != nil || len(segs) < 6 || segs[0] != "api" || segs[1] != "models" || segs[4] != "tree" {
			h.ServeHTTP(w, r)
			return
		}
		l, ok := o.get(segs[2] + "/" + segs[3])
		if !ok {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder() // tree pages are small: buffered whole

		h.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		var entries []treeEntry
		if rec.Code == http.StatusOK && json.Unmarshal(body, &entries) == nil {
			_, rest := splitRev(segs[5:])
			lastPage := !strings.Contains(rec.Header().Get("Link"), `rel="next"`)
			entries = l.apply(entries, strings.Join(rest, "/"), r.URL.Query().Get("recursive") == "true", lastPage)
			body, _ = json.Marshal(entries)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		w.Write(body)
	})
}

// apply changes the sizes of one page of entries and, on the last page,
// adds the extra files under dir.
func (l Listing) apply(entries []treeEntry, dir string, recursive, lastPage bool) []treeEntry {
	for i, e := range entries {
		if size, ok := l.Sizes[e.Path]; ok && e.Type == "file" {
			entries[i].Size = size
			if e.LFS != nil {
				lfs := *e.LFS
				lfs.Size = size
				entries[i].LFS = &lfs
			}
		}
	}
	if !lastPage {
		return entries
	}
	prefix := ""
	if dir = strings.Trim(dir, "/"); dir != "" {
		prefix = dir + "/"
	}
	for _, x := range l.Extra {
		rel, ok := strings.CutPrefix(x.Path, prefix)
		if !ok || (!recursive && strings.Contains(rel, "/")) {
			continue
		}
		e := treeEntry{Type: "file", OID: gitBlobSHA1([]byte(x.Path)), Size: x.Size, Path: x.Path}
		if x.LFS {
			e.LFS = &treeLFS{OID: strings.Repeat("ab", 32), Size: x.Size, PointerSize: 132}
		}
		entries = append(entries, e)
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	return entries
}
