package hf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weightfs/weightfs/fetch"
)

func paths(m *fetch.Manifest) []string {
	var out []string
	for _, f := range m.Files {
		out = append(out, f.Path)
	}
	return out
}

func TestListPaginatedAtCommit(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	h.pageSize = 4 // 7 files + 2 directories = 3 pages
	e := testEntry()
	m, err := h.source(e, testToken).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := h.count("tree"); got != 3 {
		t.Errorf("tree pages requested = %d, want 3", got)
	}
	for _, p := range h.pathsSeen("tree") {
		if !strings.HasSuffix(p, "/tree/"+testCommit) {
			t.Errorf("listed at %q, want the resolved commit", p)
		}
	}
	want := []string{"README.md", "config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
		"pytorch_model.bin", "tokenizer/tokenizer.json", "unet/diffusion_pytorch_model.safetensors"}
	if !reflect.DeepEqual(paths(m), want) {
		t.Fatalf("files = %q, want %q", paths(m), want)
	}
	for _, f := range m.Files {
		if w := h.fetchFile(f.Path); !reflect.DeepEqual(f, w) {
			t.Errorf("file %s = %+v, want %+v", f.Path, f, w)
		}
	}
	if m.Kind != "hf" || m.RepoID != testRepo || m.Revision != "main" || m.Commit != testCommit || m.Volume != "llama" {
		t.Errorf("manifest header = %+v", m)
	}
	if m.Resolved.IsZero() || m.Resolved.Location() != time.UTC || time.Since(m.Resolved) > time.Minute {
		t.Errorf("Resolved = %v, want now in UTC", m.Resolved)
	}
	for _, a := range append(h.authSeen("revision"), h.authSeen("tree")...) {
		if a != "Bearer "+testToken {
			t.Errorf("Hub API call had Authorization %q", a)
		}
	}
}

func TestListRevisionIsEscaped(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	e := testEntry()
	e.Revision = "refs/pr/1"
	m, err := h.source(e, "").List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := h.pathsSeen("revision"); len(got) != 1 || !strings.HasSuffix(got[0], "/revision/refs%2Fpr%2F1") {
		t.Errorf("revision requested as %q", got)
	}
	if m.Revision != "refs/pr/1" || m.Commit != testCommit {
		t.Errorf("manifest revision %q commit %q", m.Revision, m.Commit)
	}
	if a := h.authSeen("revision"); a[0] != "" {
		t.Errorf("anonymous source sent Authorization %q", a[0])
	}
}

func TestListPatterns(t *testing.T) {
	cases := []struct {
		name          string
		allow, ignore []string
		want          []string
	}{
		{"safetensors anywhere", []string{"*.safetensors"}, nil,
			[]string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "unet/diffusion_pytorch_model.safetensors"}},
		{"folder", []string{"tokenizer/", "config.json"}, nil, []string{"config.json", "tokenizer/tokenizer.json"}},
		{"ignore wins", []string{"*.json", "*.bin"}, []string{"*.bin", "tokenizer/*"}, []string{"config.json"}},
		{"ignore only", nil, []string{"*.safetensors", "*.md"}, []string{"config.json", "pytorch_model.bin", "tokenizer/tokenizer.json"}},
	}
	h := newFakeHub(t, defaultFiles()...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := testEntry()
			e.AllowPatterns, e.IgnorePatterns = c.allow, c.ignore
			m, err := h.source(e, "").List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(paths(m), c.want) {
				t.Errorf("files = %q, want %q", paths(m), c.want)
			}
		})
	}
}

func TestListNothingMatches(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	e := testEntry()
	e.AllowPatterns, e.IgnorePatterns = []string{"*.gguf"}, []string{"*.bin"}
	_, err := h.source(e, "").List(context.Background())
	if !errors.Is(err, ErrNoMatchingFiles) || !fetch.IsPermanent(err) {
		t.Fatalf("err = %v, want permanent ErrNoMatchingFiles", err)
	}
	for _, s := range []string{e.Name(), "*.gguf", "*.bin", "7 files", "main"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q lacks %q", err, s)
		}
	}
}

func TestListErrors(t *testing.T) {
	answer := func(status int, code string, hdr ...string) hook {
		return func(w http.ResponseWriter, r *http.Request) bool {
			for i := 0; i+1 < len(hdr); i += 2 {
				w.Header().Set(hdr[i], hdr[i+1])
			}
			fakeError(w, status, code)
			return true
		}
	}
	failFirst := func(n int, status int) hook {
		calls := 0
		return func(w http.ResponseWriter, r *http.Request) bool {
			calls++
			if calls > n {
				return false
			}
			fakeError(w, status, "")
			return true
		}
	}
	cases := []struct {
		name      string
		kind      string // endpoint the hook replaces
		hook      hook
		token     string
		secret    string
		wantIs    error // nil: success
		permanent bool
		calls     int // requests of kind, 0: unchecked
		want      []string
	}{
		{name: "repo not found anonymous", kind: "revision", hook: answer(404, "RepoNotFound"),
			wantIs: ErrRepoNotFound, permanent: true, calls: 1,
			want: []string{"repo acme/llama not found on http://127.0.0.1", "no token was given", "check repo_id", "hf_access_token secret", "@main"}},
		{name: "repo not found with token", kind: "revision", hook: answer(401, "RepoNotFound"), token: testToken,
			wantIs: ErrRepoNotFound, permanent: true, want: []string{testTokenFrom, "HTTP 401"}},
		{name: "revision not found", kind: "revision", hook: answer(404, "RevisionNotFound"),
			wantIs: ErrRevisionNotFound, permanent: true, want: []string{"revision main not found in repo acme/llama", "check revision"}},
		{name: "gated anonymous, seen by the access probe", kind: "resolve", hook: answer(401, "GatedRepo"),
			wantIs: ErrGated, permanent: true, want: []string{"repo acme/llama is gated", "accept its licence", "set the hf_access_token secret"}},
		{name: "gated with token", kind: "resolve", hook: answer(403, "GatedRepo"), token: testToken, secret: "my_hf",
			wantIs: ErrGated, permanent: true, want: []string{"the token from " + testTokenFrom + " has not been granted access", "my_hf secret"}},
		{name: "access denied without code", kind: "revision", hook: answer(403, ""), token: testToken,
			wantIs: ErrAccessDenied, permanent: true, calls: 1, want: []string{"acme/llama", "main", testTokenFrom}},
		{name: "bad request is permanent", kind: "revision", hook: answer(400, ""), permanent: true, calls: 1,
			wantIs: &fetch.StatusError{}, want: []string{"acme/llama", "main", "HTTP 400"}},
		{name: "rate limited, retried then given up", kind: "revision", hook: answer(429, "", "Retry-After", "1"),
			wantIs: ErrRateLimited, calls: 3, want: []string{"rate limited by the Hub", "acme/llama", "main"}},
		{name: "5xx retried", kind: "revision", hook: failFirst(2, 503), calls: 3},
		{name: "408 retried", kind: "revision", hook: failFirst(1, 408), calls: 2},
		{name: "tree page retried alone", kind: "tree", hook: failFirst(1, 502), calls: 2},
		{name: "5xx exhausted", kind: "tree", hook: answer(500, ""), calls: 3,
			wantIs: &fetch.StatusError{}, want: []string{"acme/llama", testCommit, "HTTP 500"}},
		{name: "probe blip is not fatal", kind: "resolve", hook: answer(503, ""), calls: 1},
	}
	t.Run("the probe of a gated repo is the first shard's first resolve", func(t *testing.T) {
		h := newFakeHub(t, defaultFiles()...)
		s := h.source(testEntry(), testToken)
		if _, err := s.List(context.Background()); err != nil {
			t.Fatal(err)
		}
		if p := h.pathsSeen("resolve"); len(p) != 1 || !strings.HasSuffix(p[0], "/model-00001-of-00002.safetensors") {
			t.Fatalf("probed %q, want the first shard only", p)
		}
		f := h.fetchFile("model-00001-of-00002.safetensors")
		got := make([]byte, 100)
		if err := s.ReadRange(context.Background(), f, 0, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, h.file(f.Path).data[:100]) {
			t.Fatal("bytes differ from the file's")
		}
		if h.count("resolve") != 1 || h.count("cdn") != 1 {
			t.Errorf("resolve %d, cdn %d; want 1 and 1: the first read goes straight to the CDN the probe found", h.count("resolve"), h.count("cdn"))
		}
	})
	t.Run("a repo that is not gated is not probed", func(t *testing.T) {
		h := newFakeHub(t, defaultFiles()...)
		h.public = true
		if _, err := h.source(testEntry(), "").List(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := h.count("resolve"); n != 0 {
			t.Fatalf("List made %d content requests for a public repo, want 0", n)
		}
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newFakeHub(t, defaultFiles()...)
			h.setHook(c.kind, c.hook)
			e := testEntry()
			e.SecretName = c.secret
			_, err := h.source(e, c.token).List(context.Background())
			if c.calls > 0 && h.count(c.kind) != c.calls {
				t.Errorf("%s requests = %d, want %d", c.kind, h.count(c.kind), c.calls)
			}
			if c.wantIs == nil {
				if err != nil {
					t.Fatalf("List: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("List succeeded")
			}
			if st := new(fetch.StatusError); reflect.TypeOf(c.wantIs) == reflect.TypeOf(st) {
				if !errors.As(err, &st) {
					t.Errorf("err %v is not a *fetch.StatusError", err)
				}
			} else if !errors.Is(err, c.wantIs) {
				t.Errorf("err = %v, want errors.Is %v", err, c.wantIs)
			}
			if fetch.IsPermanent(err) != c.permanent {
				t.Errorf("permanent = %v, want %v (%v)", fetch.IsPermanent(err), c.permanent, err)
			}
			checkMessage(t, err, c.want...)
		})
	}
}

// checkMessage asserts the message names what it must and leaks nothing.
func checkMessage(t *testing.T, err error, want ...string) {
	t.Helper()
	msg := err.Error()
	for _, s := range want {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
	for _, leak := range []string{testToken, "Bearer", "SIGNATURE", "gen="} {
		if strings.Contains(msg, leak) {
			t.Errorf("message %q leaks %q", msg, leak)
		}
	}
}

func TestListRateLimitCarriesRetryAfter(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	h.setHook("revision", func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		return true
	})
	s := h.source(testEntry(), "")
	s.retry.Attempts = 1
	_, err := s.List(context.Background())
	var ra *fetch.RetryAfterError
	if !errors.As(err, &ra) || ra.After != 7*time.Second || fetch.IsPermanent(err) {
		t.Fatalf("err = %v (%#v), want a retryable RetryAfterError of 7s", err, ra)
	}
}

// An unsafe path in a listing is refused alone, naming it, and the rest of
// the repo is served. Fails before this change: one such entry failed the
// whole listing, so the mount did not come up.
func TestListRefusesUnsafePathsAlone(t *testing.T) {
	for _, p := range []string{"../evil.bin", "/etc/passwd", "a//b.bin", "a/./b.bin", "a/../../b.bin", "dir/"} {
		t.Run(p, func(t *testing.T) {
			h := newFakeHub(t, fakeFile{path: "ok.json", data: []byte("{}")}, fakeFile{path: p, data: []byte("x")})
			m, err := h.source(testEntry(), "").List(context.Background())
			if err != nil {
				t.Fatalf("List: %v, want the listing with the bad entry left to CheckManifest", err)
			}
			errs := fetch.CheckManifest(m)
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), fmt.Sprintf("%q", p)) {
				t.Fatalf("CheckManifest: %v, want one refusal naming %q", errs, p)
			}
			if len(m.Files) != 1 || m.Files[0].Path != "ok.json" {
				t.Fatalf("files served %+v, want ok.json alone", m.Files)
			}
		})
	}
}

func TestListPaginationLoopEnds(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	h.setHook("tree", func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Link", `<`+r.URL.String()+`>; rel="next"`) // points at itself
		w.Write([]byte(`[]`))
		return true
	})
	_, err := h.source(testEntry(), "").List(context.Background())
	if !errors.Is(err, ErrBadResponse) || !fetch.IsPermanent(err) || h.count("tree") != 1 {
		t.Fatalf("err = %v after %d pages, want a permanent pagination error after 1", err, h.count("tree"))
	}
}

func TestListBadCommitSha(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	h.setHook("revision", func(w http.ResponseWriter, r *http.Request) bool {
		w.Write([]byte(`{"sha":"main"}`))
		return true
	})
	_, err := h.source(testEntry(), "").List(context.Background())
	if !errors.Is(err, ErrBadResponse) {
		t.Fatalf("err = %v, want ErrBadResponse", err)
	}
}

func TestListNetworkErrorIsRetryable(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	h.hub.Close()
	s := h.source(testEntry(), testToken)
	_, err := s.List(context.Background())
	if err == nil || fetch.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable network error", err)
	}
	checkMessage(t, err, "network error")
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []struct{ endpoint, repo string }{
		{"ftp://example.com", testRepo}, {"http://", testRepo}, {"", "a/b/c"}, {"", "../x"}, {"", ""},
	} {
		e := testEntry()
		e.RepoID = c.repo
		s := New(e, Options{Endpoint: c.endpoint})
		_, err := s.List(context.Background())
		if err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), e.Name()) {
			t.Errorf("endpoint %q repo %q: err = %v, want a permanent error naming the entry", c.endpoint, c.repo, err)
		}
	}
}

func TestNextLink(t *testing.T) {
	base, _ := url.Parse("https://hub.example/api/models/a/b/tree/c?recursive=true")
	cases := []struct {
		name    string
		headers []string
		want    string // "" none
		wantErr bool
	}{
		{"absent", nil, "", false},
		{"plain", []string{`<https://hub.example/p2?cursor=x>; rel="next"`}, "https://hub.example/p2?cursor=x", false},
		{"relative", []string{`</api/models/a/b/tree/c?cursor=2>; rel=next`}, "https://hub.example/api/models/a/b/tree/c?cursor=2", false},
		{"among others", []string{`<https://h/1>; rel="prev", <https://h/3>; rel="last", <https://h/2>; rel="next"`}, "https://h/2", false},
		{"several headers", []string{`<https://h/1>; rel="prev"`, `<https://h/2>; title="x"; REL="next last"`}, "https://h/2", false},
		{"comma in target", []string{`<https://h/2?a=1,2>; rel="next"`}, "https://h/2?a=1,2", false},
		{"only prev", []string{`<https://h/1>; rel="prev"`}, "", false},
		{"nextish is not next", []string{`<https://h/1>; rel="nextpage"`}, "", false},
		{"garbage", []string{`rel="next"`, `<unterminated; rel="next"`}, "", false},
		{"bad scheme", []string{`<javascript:alert(1)>; rel="next"`}, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, err := nextLink(base, c.headers)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, c.wantErr)
			}
			got := ""
			if u != nil {
				got = u.String()
			}
			if got != c.want {
				t.Errorf("next = %q, want %q", got, c.want)
			}
		})
	}
}
