package hubemu

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const (
	testToken  = "hf_test_token"
	testCommit = "0123456789abcdef0123456789abcdef01234567"
	prCommit   = "89abcdef0123456789abcdef0123456789abcdef"
)

// testFiles is the content of the test repo: a small JSON file, LFS by
// extension, LFS by size (exactly the 10 MiB threshold), nested folders and a
// name with a space and non-ASCII letters.
func testFiles() map[string][]byte {
	testFilesOnce.Do(func() {
		rnd := rand.NewChaCha8([32]byte{1, 2})
		bytesN := func(n int) []byte {
			b := make([]byte, n)
			rnd.Read(b)
			return b
		}
		testFilesData = map[string][]byte{
			"config.json":               []byte(`{"model_type":"llama"}` + "\n"),
			"model.safetensors":         bytesN(300 << 10),
			"big.dat":                   bytesN(lfsMinSize),
			"small.dat":                 bytesN(lfsMinSize - 1),
			"nested/a/b.json":           []byte(`{"b":1}`),
			"nested/c.txt":              []byte("c"),
			"sub dir/ünï côde.txt":      []byte("unicode name"),
			"text_encoder/model.bin":    bytesN(4096),
			"tokenizer/tokenizer.json":  []byte(`{"version":"1.0"}`),
			"tokenizer/special map.txt": []byte("x"),
		}
	})
	return testFilesData
}

var (
	testFilesOnce sync.Once
	testFilesData map[string][]byte // read-only once built
)

func writeFiles(t testing.TB, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for p, b := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newTestHub serves the test files as acme/model (public), acme/gated,
// acme/gated-open (GatedListingPublic) and acme/private.
func newTestHub(t testing.TB, o Options) (*Server, map[string][]byte) {
	t.Helper()
	if o.Token == "" {
		o.Token = testToken
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	files := testFiles()
	dir := writeFiles(t, files)
	for _, r := range []Repo{
		{ID: "acme/model", Dir: dir, Commit: testCommit, Branches: map[string]string{"main": testCommit, "v1.0": testCommit, "refs/pr/1": prCommit}},
		{ID: "acme/gated", Dir: dir, Commit: testCommit, Gated: true},
		{ID: "acme/gated-open", Dir: dir, Commit: testCommit, Gated: true, GatedListingPublic: true},
		{ID: "acme/private", Dir: dir, Commit: testCommit, Private: true},
	} {
		if err := s.AddRepo(r); err != nil {
			t.Fatal(err)
		}
	}
	return s, files
}

// escapePath escapes each segment, as clients do.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func gitSHA1(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// noRedirect is a client that shows 302s instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

type reqOpt func(*http.Request)

func withToken(tok string) reqOpt {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func withRange(v string) reqOpt { return func(r *http.Request) { r.Header.Set("Range", v) } }

// do sends a request and returns the response with its body read.
func do(t testing.TB, c *http.Client, method, u string, opts ...reqOpt) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return resp, body
}

// cdnLocation resolves an LFS file and returns the signed CDN URL.
func cdnLocation(t testing.TB, s *Server, repo, p string) string {
	t.Helper()
	resp, _ := do(t, noRedirect, "GET", s.URL()+"/"+repo+"/resolve/main/"+escapePath(p))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("resolve %s: status %d, want 302", p, resp.StatusCode)
	}
	return resp.Header.Get("Location")
}
