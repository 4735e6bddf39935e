package hf

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
)

// A small fake of the Hub and of its CDN on two httptest servers (two ports,
// so the CDN is another host). It speaks only what hub-api.md documents.
// Hooks inject failures per endpoint kind: "revision", "tree", "resolve",
// "cdn"; a hook that returns true has answered the request.

const (
	testRepo      = "acme/llama"
	testCommit    = "0123456789abcdef0123456789abcdef01234567"
	testToken     = "hf_SECRETtoken1234567890"
	testTokenFrom = "secret hf_access_token (file /secrets/hf_access_token)"
	cdnSignature  = "X-Amz-Signature=deadbeefSIGNATURE"
)

type fakeFile struct {
	path string
	data []byte
	lfs  bool
}

func (f fakeFile) sha256() string { h := sha256.Sum256(f.data); return hex.EncodeToString(h[:]) }

func (f fakeFile) gitSHA1() string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(f.data))
	h.Write(f.data)
	return hex.EncodeToString(h.Sum(nil))
}

type hook func(w http.ResponseWriter, r *http.Request) bool

type fakeHub struct {
	t        *testing.T
	hub, cdn *httptest.Server
	repo     string
	commit   string
	branches map[string]string // revision -> commit
	files    []fakeFile
	dirs     []string
	pageSize int
	public   bool // the revision answer says "gated": false (default: "manual")

	mu       sync.Mutex
	hooks    map[string]hook     // GUARDED_BY(mu)
	calls    map[string]int      // GUARDED_BY(mu); requests per kind
	auth     map[string][]string // GUARDED_BY(mu); Authorization header per kind
	rawPaths map[string][]string // GUARDED_BY(mu); escaped request paths per kind
	sigGen   int                 // GUARDED_BY(mu); CDN URLs of older generations get expired
	expired  int                 // GUARDED_BY(mu); status of an expired CDN URL (default 403)
	cdnOnHub bool                // GUARDED_BY(mu); CDN URLs name the Hub's host, as a mirror's do
}

func newFakeHub(t *testing.T, files ...fakeFile) *fakeHub {
	t.Helper()
	h := &fakeHub{
		t: t, repo: testRepo, commit: testCommit,
		branches: map[string]string{"main": testCommit, "refs/pr/1": testCommit, testCommit: testCommit},
		files:    files, pageSize: 1000,
		hooks: map[string]hook{}, calls: map[string]int{}, auth: map[string][]string{}, rawPaths: map[string][]string{},
	}
	dirs := map[string]bool{}
	for _, f := range files {
		for i := strings.LastIndexByte(f.path, '/'); i > 0; i = strings.LastIndexByte(f.path[:i], '/') {
			dirs[f.path[:i]] = true
		}
	}
	for d := range dirs {
		h.dirs = append(h.dirs, d)
	}
	sort.Strings(h.dirs)
	h.hub = httptest.NewServer(http.HandlerFunc(h.serveHub))
	h.cdn = httptest.NewServer(http.HandlerFunc(h.serveCDN))
	t.Cleanup(h.hub.Close)
	t.Cleanup(h.cdn.Close)
	return h
}

// defaultFiles: LFS and small files, nested, deliberately not sorted.
func defaultFiles() []fakeFile {
	return []fakeFile{
		{path: "model-00002-of-00002.safetensors", data: bytes.Repeat([]byte("B"), 3000), lfs: true},
		{path: "config.json", data: []byte(`{"model_type":"llama"}`)},
		{path: "model-00001-of-00002.safetensors", data: pattern(5000), lfs: true},
		{path: "tokenizer/tokenizer.json", data: []byte(`{"vocab":{}}`)},
		{path: "pytorch_model.bin", data: []byte("pickle"), lfs: true},
		{path: "unet/diffusion_pytorch_model.safetensors", data: pattern(1234), lfs: true},
		{path: "README.md", data: []byte("# llama\n")},
	}
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func (h *fakeHub) setHook(kind string, fn hook) { h.mu.Lock(); h.hooks[kind] = fn; h.mu.Unlock() }
func (h *fakeHub) expireCDN()                   { h.mu.Lock(); h.sigGen++; h.mu.Unlock() }

// mirror serves the CDN on the Hub's own host, as mirrors and proxies set
// with HF_ENDPOINT do; expired URLs then answer status (0: 403).
func (h *fakeHub) mirror(on bool, status int) {
	h.mu.Lock()
	h.cdnOnHub, h.expired = on, status
	h.mu.Unlock()
}

func (h *fakeHub) count(kind string) int { h.mu.Lock(); defer h.mu.Unlock(); return h.calls[kind] }

func (h *fakeHub) authSeen(kind string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.auth[kind]...)
}

func (h *fakeHub) pathsSeen(kind string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.rawPaths[kind]...)
}

// record notes the request and runs the kind's hook, if any.
func (h *fakeHub) record(kind string, w http.ResponseWriter, r *http.Request) bool {
	h.mu.Lock()
	h.calls[kind]++
	h.auth[kind] = append(h.auth[kind], r.Header.Get("Authorization"))
	h.rawPaths[kind] = append(h.rawPaths[kind], r.URL.EscapedPath())
	fn := h.hooks[kind]
	h.mu.Unlock()
	return fn != nil && fn(w, r)
}

func fakeError(w http.ResponseWriter, status int, code string) {
	if code != "" {
		w.Header().Set("X-Error-Code", code)
	}
	http.Error(w, `{"error":"`+code+`"}`, status)
}

func (h *fakeHub) serveHub(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	api := "/api/models/" + h.repo + "/"
	h.mu.Lock()
	onHub := h.cdnOnHub
	h.mu.Unlock()
	switch {
	case onHub && strings.HasPrefix(p, "/blobs/"):
		h.serveCDN(w, r)
	case strings.HasPrefix(p, api+"revision/"):
		if h.record("revision", w, r) {
			return
		}
		rev, _ := url.PathUnescape(strings.TrimPrefix(p, api+"revision/"))
		commit, ok := h.branches[rev]
		if !ok {
			fakeError(w, 404, "RevisionNotFound")
			return
		}
		var gated any = "manual"
		if h.public {
			gated = false
		}
		json.NewEncoder(w).Encode(map[string]any{"sha": commit, "siblings": []any{}, "gated": gated})
	case strings.HasPrefix(p, api+"tree/"):
		if h.record("tree", w, r) {
			return
		}
		if strings.TrimPrefix(p, api+"tree/") != h.commit || r.URL.Query().Get("recursive") != "true" {
			fakeError(w, 404, "RevisionNotFound")
			return
		}
		h.serveTree(w, r)
	case strings.HasPrefix(p, "/"+h.repo+"/resolve/"):
		if h.record("resolve", w, r) {
			return
		}
		rest := strings.TrimPrefix(p, "/"+h.repo+"/resolve/")
		rev, escPath, _ := strings.Cut(rest, "/")
		path, err := url.PathUnescape(escPath)
		if err != nil || h.branches[rev] != h.commit {
			fakeError(w, 404, "RevisionNotFound")
			return
		}
		for _, f := range h.files {
			if f.path != path {
				continue
			}
			w.Header().Set("X-Repo-Commit", h.commit)
			if !f.lfs {
				w.Header().Set("ETag", `"`+f.gitSHA1()+`"`)
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.data))
				return
			}
			h.mu.Lock()
			gen, cdn := h.sigGen, h.cdn.URL
			if h.cdnOnHub {
				cdn = h.hub.URL
			}
			h.mu.Unlock()
			w.Header().Set("X-Linked-Etag", `"`+f.sha256()+`"`)
			w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.data)))
			w.Header().Set("Location", fmt.Sprintf("%s/blobs/%s?gen=%d&%s", cdn, f.sha256(), gen, cdnSignature))
			w.WriteHeader(http.StatusFound)
			return
		}
		fakeError(w, 404, "EntryNotFound")
	default:
		fakeError(w, 404, "RepoNotFound")
	}
}

// serveTree pages files and directories pageSize at a time, with a cursor.
func (h *fakeHub) serveTree(w http.ResponseWriter, r *http.Request) {
	type lfs struct {
		Oid         string `json:"oid"`
		Size        int    `json:"size"`
		PointerSize int    `json:"pointerSize"`
	}
	type entry struct {
		Type string `json:"type"`
		Oid  string `json:"oid"`
		Size int    `json:"size"`
		Path string `json:"path"`
		LFS  *lfs   `json:"lfs,omitempty"`
	}
	var all []entry
	for _, d := range h.dirs {
		all = append(all, entry{Type: "directory", Oid: strings.Repeat("d", 40), Path: d})
	}
	for _, f := range h.files {
		e := entry{Type: "file", Oid: f.gitSHA1(), Size: len(f.data), Path: f.path}
		if f.lfs {
			e.Oid = strings.Repeat("e", 40) // the pointer's blob, not the content's
			e.LFS = &lfs{Oid: f.sha256(), Size: len(f.data), PointerSize: 134}
		}
		all = append(all, e)
	}
	start, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
	end := min(start+h.pageSize, len(all))
	if end < len(all) {
		next := fmt.Sprintf("%s/api/models/%s/tree/%s?recursive=true&cursor=%d", h.hub.URL, h.repo, h.commit, end)
		w.Header().Set("Link", `<`+next+`>; rel="next"`)
	}
	json.NewEncoder(w).Encode(all[start:end])
}

func (h *fakeHub) serveCDN(w http.ResponseWriter, r *http.Request) {
	if h.record("cdn", w, r) {
		return
	}
	h.mu.Lock()
	gen, expired := h.sigGen, h.expired
	h.mu.Unlock()
	if expired == 0 {
		expired = http.StatusForbidden
	}
	if r.URL.Query().Get("gen") != strconv.Itoa(gen) {
		http.Error(w, "<Error>AccessDenied: Request has expired</Error>", expired)
		return
	}
	sha := strings.TrimPrefix(r.URL.Path, "/blobs/")
	for _, f := range h.files {
		if f.lfs && f.sha256() == sha {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.data))
			return
		}
	}
	http.NotFound(w, r)
}

func (h *fakeHub) file(path string) fakeFile {
	for _, f := range h.files {
		if f.path == path {
			return f
		}
	}
	h.t.Fatalf("no fake file %q", path)
	return fakeFile{}
}

// fetchFile is the fetch.File List would produce for path.
func (h *fakeHub) fetchFile(path string) fetch.File {
	f := h.file(path)
	ff := fetch.File{Path: f.path, Size: int64(len(f.data)), Version: h.commit,
		Checksum: fetch.Checksum{Algo: fetch.AlgoGitSHA1, Value: f.gitSHA1()}}
	if f.lfs {
		ff.Checksum = fetch.Checksum{Algo: fetch.AlgoSHA256, Value: f.sha256()}
		ff.Extra = map[string]string{"lfs": "1"}
	}
	return ff
}

var fastRetry = fetch.RetryPolicy{Attempts: 3, AttemptTimeout: 5 * time.Second, BaseBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}

func testEntry() config.Entry {
	return config.Entry{Index: 2, RepoID: testRepo, Revision: "main", UseVolume: true, VolumeFolder: "llama", Kind: "hf"}
}

// source returns a Source against the fake with the given token ("" for none).
func (h *fakeHub) source(e config.Entry, token string) *Source {
	o := Options{Endpoint: h.hub.URL + "/", Token: token, Retry: fastRetry}
	if token != "" {
		o.TokenFrom = testTokenFrom
	}
	return New(e, o)
}
