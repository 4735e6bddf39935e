package hf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weightfs/weightfs/fetch"
)

func read(t *testing.T, s *Source, f fetch.File, off, n int64) ([]byte, error) {
	t.Helper()
	p := make([]byte, n)
	err := s.ReadRange(context.Background(), f, off, p)
	return p, err
}

func TestReadRanges(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	s := h.source(testEntry(), testToken)
	cases := []struct {
		path    string
		off, n  int64
		fromCDN bool
	}{
		{"config.json", 0, 22, false}, // whole small file
		{"config.json", 3, 5, false},
		{"model-00001-of-00002.safetensors", 0, 8, true},
		{"model-00001-of-00002.safetensors", 4000, 1000, true}, // up to the last byte
		{"unet/diffusion_pytorch_model.safetensors", 1233, 1, true},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s@%d+%d", c.path, c.off, c.n), func(t *testing.T) {
			cdnBefore := h.count("cdn")
			got, err := read(t, s, h.fetchFile(c.path), c.off, c.n)
			if err != nil {
				t.Fatal(err)
			}
			if want := h.file(c.path).data[c.off : c.off+c.n]; !bytes.Equal(got, want) {
				t.Errorf("bytes differ")
			}
			if (h.count("cdn") > cdnBefore) != c.fromCDN {
				t.Errorf("served from CDN = %v, want %v", h.count("cdn") > cdnBefore, c.fromCDN)
			}
		})
	}
	// The token goes to the Hub host only, never to the CDN it redirects to.
	for _, a := range h.authSeen("resolve") {
		if a != "Bearer "+testToken {
			t.Errorf("resolve had Authorization %q", a)
		}
	}
	for _, a := range h.authSeen("cdn") {
		if a != "" {
			t.Errorf("CDN received Authorization %q", a)
		}
	}
	for _, p := range h.pathsSeen("resolve") {
		if !strings.HasPrefix(p, "/acme/llama/resolve/"+testCommit+"/") {
			t.Errorf("resolved %q, want the commit, not the branch", p)
		}
	}
}

func TestReadCachesCDNURLAndReResolvesOnceWhenExpired(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	s := h.source(testEntry(), testToken)
	f := h.fetchFile("model-00001-of-00002.safetensors")
	for off := int64(0); off < 3000; off += 1000 {
		if _, err := read(t, s, f, off, 1000); err != nil {
			t.Fatal(err)
		}
	}
	if h.count("resolve") != 1 || h.count("cdn") != 3 {
		t.Fatalf("resolve %d cdn %d, want 1 and 3: later chunks must go straight to the CDN", h.count("resolve"), h.count("cdn"))
	}

	h.expireCDN() // the cached signed URL now gets 403
	got, err := read(t, s, f, 3000, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, h.file(f.Path).data[3000:]) {
		t.Error("bytes differ after re-resolve")
	}
	if h.count("resolve") != 2 || h.count("cdn") != 5 {
		t.Errorf("resolve %d cdn %d, want 2 and 5 (one 403, one re-resolve, one good read)", h.count("resolve"), h.count("cdn"))
	}
	if _, err := read(t, s, f, 0, 10); err != nil || h.count("resolve") != 2 {
		t.Errorf("the fresh URL was not cached: err %v, resolves %d", err, h.count("resolve"))
	}
}

func TestReadCDNAlwaysRefusingResolvesOnlyOnce(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	s := h.source(testEntry(), testToken)
	f := h.fetchFile("model-00001-of-00002.safetensors")
	if _, err := read(t, s, f, 0, 10); err != nil {
		t.Fatal(err)
	}
	h.setHook("cdn", func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "denied", http.StatusForbidden)
		return true
	})
	_, err := read(t, s, f, 0, 10)
	if !errors.Is(err, ErrAccessDenied) || fetch.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable ErrAccessDenied", err)
	}
	if h.count("resolve") != 2 || h.count("cdn") != 3 {
		t.Errorf("resolve %d cdn %d, want 2 and 3", h.count("resolve"), h.count("cdn"))
	}
	checkMessage(t, err, f.Path, "acme/llama")
}

func TestReadRejectsBadAnswers(t *testing.T) {
	const path = "model-00001-of-00002.safetensors"
	cases := []struct {
		name string
		hook hook
	}{
		{"wrong start", partial("bytes 11-20/5000", 10)},
		{"wrong end", partial("bytes 10-18/5000", 10)},
		{"wrong total", partial("bytes 10-19/5001", 10)},
		{"no Content-Range", partial("", 10)},
		{"unsatisfied range form", partial("bytes */5000", 10)},
		{"signed numbers", partial("bytes +10-19/5000", 10)},
		{"Range ignored", func(w http.ResponseWriter, r *http.Request) bool {
			w.Write(make([]byte, 5000))
			return true
		}},
		{"short body, chunked", func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Content-Range", "bytes 10-19/5000")
			w.WriteHeader(http.StatusPartialContent)
			w.Write([]byte("short"))
			w.(http.Flusher).Flush()
			return true
		}},
		{"short body, connection cut", func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Content-Range", "bytes 10-19/5000")
			w.Header().Set("Content-Length", "10")
			w.WriteHeader(http.StatusPartialContent)
			w.Write([]byte("short"))
			return true // the server closes the connection: 5 bytes missing
		}},
		{"long body", partial("bytes 10-19/5000", 11)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newFakeHub(t, defaultFiles()...)
			h.setHook("cdn", c.hook)
			_, err := read(t, h.source(testEntry(), testToken), h.fetchFile(path), 10, 10)
			if !errors.Is(err, ErrBadResponse) || fetch.IsPermanent(err) {
				t.Fatalf("err = %v, want a retryable ErrBadResponse", err)
			}
			checkMessage(t, err, path, "acme/llama")
		})
	}
}

// partial answers 206 with the given Content-Range and n bytes.
func partial(contentRange string, n int) hook {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if contentRange != "" {
			w.Header().Set("Content-Range", contentRange)
		}
		w.Header().Set("Content-Length", fmt.Sprint(n))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(make([]byte, n))
		return true
	}
}

func TestReadAcceptsWholeFile200(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	data := h.file("config.json").data
	h.setHook("resolve", func(w http.ResponseWriter, r *http.Request) bool {
		w.Write(data) // a server that ignores Range: fine when all was asked
		return true
	})
	got, err := read(t, h.source(testEntry(), ""), h.fetchFile("config.json"), 0, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("err %v, bytes equal %v", err, bytes.Equal(got, data))
	}
}

func TestReadErrors(t *testing.T) {
	answer := func(status int, code string, hdr ...string) hook {
		return func(w http.ResponseWriter, r *http.Request) bool {
			for i := 0; i+1 < len(hdr); i += 2 {
				w.Header().Set(hdr[i], hdr[i+1])
			}
			fakeError(w, status, code)
			return true
		}
	}
	const lfs = "model-00001-of-00002.safetensors"
	cases := []struct {
		name, kind, path string
		hook             hook
		token            string
		wantIs           error
		permanent        bool
		want             []string
	}{
		{"entry not found", "resolve", "config.json", answer(404, "EntryNotFound"), testToken,
			ErrEntryNotFound, true, []string{`"config.json"`, "acme/llama", "main", testCommit}},
		{"gated", "resolve", lfs, answer(401, "GatedRepo"), "", ErrGated, true, []string{"repo acme/llama is gated"}},
		{"repo gone", "resolve", lfs, answer(404, "RepoNotFound"), testToken, ErrRepoNotFound, true, []string{testTokenFrom}},
		{"416 from the CDN", "cdn", lfs, answer(416, ""), testToken, fetch.ErrChanged, true, []string{lfs, "list again"}},
		{"416 from the Hub", "resolve", "config.json", answer(416, ""), testToken, fetch.ErrChanged, true, []string{"config.json"}},
		{"429", "resolve", lfs, answer(429, "", "Retry-After", "3"), testToken, ErrRateLimited, false,
			[]string{"rate limited by the Hub", lfs}},
		{"429 from the CDN", "cdn", lfs, answer(429, ""), testToken, ErrRateLimited, false, []string{"rate limited by 127.0.0.1"}},
		{"CDN 5xx", "cdn", lfs, answer(503, ""), testToken, &fetch.StatusError{}, false, []string{lfs, "HTTP 503"}},
		{"CDN 404", "cdn", lfs, answer(404, "RepoNotFound"), testToken, &fetch.StatusError{}, true, []string{lfs, "HTTP 404"}},
		{"redirect loop", "resolve", lfs, func(w http.ResponseWriter, r *http.Request) bool {
			http.Redirect(w, r, r.URL.Path, http.StatusTemporaryRedirect)
			return true
		}, testToken, nil, true, []string{"redirects"}},
		{"redirect without Location", "resolve", lfs, answer(302, ""), testToken, nil, true, []string{"Location"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newFakeHub(t, defaultFiles()...)
			h.setHook(c.kind, c.hook)
			_, err := read(t, h.source(testEntry(), c.token), h.fetchFile(c.path), 0, 4)
			if err == nil {
				t.Fatal("read succeeded")
			}
			switch want := c.wantIs.(type) {
			case nil:
			case *fetch.StatusError:
				if !errors.As(err, &want) {
					t.Errorf("err %v is not a *fetch.StatusError", err)
				}
			default:
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want errors.Is %v", err, want)
				}
			}
			if fetch.IsPermanent(err) != c.permanent {
				t.Errorf("permanent = %v, want %v (%v)", fetch.IsPermanent(err), c.permanent, err)
			}
			var ra *fetch.RetryAfterError
			if c.name == "429" && (!errors.As(err, &ra) || ra.After != 3*time.Second) {
				t.Errorf("err = %v, want a RetryAfterError of 3s", err)
			}
			checkMessage(t, err, c.want...)
		})
	}
}

func TestReadLocalChecks(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	s := h.source(testEntry(), testToken)
	f := h.fetchFile("config.json")
	if err := s.ReadRange(context.Background(), f, 1<<40, nil); err != nil {
		t.Errorf("zero-length read: %v", err)
	}
	noVersion := f
	noVersion.Version = ""
	for name, c := range map[string]struct {
		f      fetch.File
		off, n int64
	}{
		"past the end": {f, f.Size - 1, 2},
		"negative":     {f, -1, 2},
		"no commit":    {noVersion, 0, 2},
		"beyond int64": {f, 1<<63 - 2, 4},
	} {
		if _, err := read(t, s, c.f, c.off, c.n); err == nil || !fetch.IsPermanent(err) {
			t.Errorf("%s: err = %v, want permanent", name, err)
		}
	}
	if n := h.count("resolve") + h.count("cdn"); n != 0 {
		t.Errorf("%d requests made, want none", n)
	}
}

func TestReadEscapesPathSegments(t *testing.T) {
	files := []fakeFile{
		{path: "dir with space/model #1?.safetensors", data: pattern(300), lfs: true},
		{path: "ünïcødé/文件.json", data: []byte(`{"a":1}`)},
		{path: "a+b=c;d%20e.txt", data: []byte("plus")},
	}
	want := map[string]string{
		files[0].path: "/acme/llama/resolve/" + testCommit + "/dir%20with%20space/model%20%231%3F.safetensors",
		files[1].path: "/acme/llama/resolve/" + testCommit + "/%C3%BCn%C3%AFc%C3%B8d%C3%A9/%E6%96%87%E4%BB%B6.json",
		files[2].path: "/acme/llama/resolve/" + testCommit + "/a+b=c%3Bd%2520e.txt",
	}
	h := newFakeHub(t, files...)
	h.public = true // no access probe: every read below resolves
	s := h.source(testEntry(), "")
	m, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Files {
		before := len(h.pathsSeen("resolve"))
		got, err := read(t, s, f, 0, f.Size)
		if err != nil {
			t.Fatalf("%s: %v", f.Path, err)
		}
		if !bytes.Equal(got, h.file(f.Path).data) {
			t.Errorf("%s: bytes differ", f.Path)
		}
		if seen := h.pathsSeen("resolve")[before]; seen != want[f.Path] {
			t.Errorf("%s: requested %q, want %q", f.Path, seen, want[f.Path])
		}
	}
}

func TestReadNetworkErrorHidesSignedQuery(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	h.setHook("resolve", func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Location", "http://127.0.0.1:1/blobs/x?"+cdnSignature)
		w.WriteHeader(http.StatusFound)
		return true
	})
	_, err := read(t, h.source(testEntry(), testToken), h.fetchFile("pytorch_model.bin"), 0, 4)
	if err == nil || fetch.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable network error", err)
	}
	checkMessage(t, err, "127.0.0.1:1/blobs/x")
}

func TestCustomClientStillSeesRedirects(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	s := New(testEntry(), Options{Endpoint: h.hub.URL, Token: testToken, HTTPClient: &http.Client{}})
	f := h.fetchFile("pytorch_model.bin")
	for range 2 {
		if _, err := read(t, s, f, 0, 6); err != nil {
			t.Fatal(err)
		}
	}
	if h.count("resolve") != 1 || h.count("cdn") != 2 {
		t.Errorf("resolve %d cdn %d, want 1 and 2", h.count("resolve"), h.count("cdn"))
	}
	if a := h.authSeen("cdn"); a[0] != "" || a[1] != "" {
		t.Errorf("CDN received Authorization %q", a)
	}
}

func TestIsHub(t *testing.T) {
	s := New(testEntry(), Options{Endpoint: "https://HuggingFace.co/"})
	for raw, want := range map[string]bool{
		"https://huggingface.co/a":         true,
		"https://huggingface.co:443/a":     true,
		"http://huggingface.co/a":          false,
		"https://huggingface.co:8443/a":    false,
		"https://cdn-lfs.huggingface.co/a": false,
		"https://huggingface.co.evil/a":    false,
	} {
		u, _ := url.Parse(raw)
		if got := s.isHub(u); got != want {
			t.Errorf("isHub(%s) = %v, want %v", raw, got, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"5":                             5 * time.Second,
		" 120 ":                         2 * time.Minute,
		"0":                             0,
		"-3":                            0,
		"soon":                          0,
		"99999999999999999":             24 * time.Hour,
		"Fri, 02 Jan 2026 03:04:35 GMT": 30 * time.Second,
		"Fri, 02 Jan 2026 03:00:00 GMT": 0, // in the past
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

// Many chunks of one file read at once, as the chunk cache does: every byte
// right, the CDN URL shared, the token never sent to the CDN (run with -race).
func TestReadConcurrentChunks(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	s := h.source(testEntry(), testToken)
	f := h.fetchFile("model-00001-of-00002.safetensors")
	want := h.file(f.Path).data
	errs := make(chan error, 50)
	for i := range 50 {
		go func() {
			off := int64(i * 100)
			got, err := read(t, s, f, off, 100)
			if err == nil && !bytes.Equal(got, want[off:off+100]) {
				err = fmt.Errorf("chunk at %d differs", off)
			}
			errs <- err
		}()
	}
	for range 50 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if h.count("cdn") != 50 || h.count("resolve") > 50 {
		t.Errorf("cdn %d resolve %d", h.count("cdn"), h.count("resolve"))
	}
	for _, a := range h.authSeen("cdn") {
		if a != "" {
			t.Fatalf("CDN received Authorization %q", a)
		}
	}
}

// The default client must speak HTTP/1.1 even to a server offering HTTP/2:
// per-connection-limited CDNs reward one TCP stream per range.
func TestDefaultClientUsesHTTP1(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	c := NewHTTPClient()
	tr := c.Transport.(*http.Transport)
	tr.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	if !tr.DisableCompression || tr.MaxIdleConnsPerHost != 128 || c.Timeout != 0 {
		t.Errorf("transport tuning lost: %+v", tr)
	}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body, _ := io.ReadAll(resp.Body); string(body) != "HTTP/1.1" {
		t.Errorf("server saw %q, want HTTP/1.1", body)
	}
}

// TestConcurrentFirstReadsResolveOnce: the reads a loader's first touch of
// a file starts all at once share one resolve (the Hub rate-limits them),
// go straight to where it points, and never hang on a resolve that failed.
func TestConcurrentFirstReadsResolveOnce(t *testing.T) {
	const readers = 8
	rateLimited := func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Retry-After", "1")
		fakeError(w, http.StatusTooManyRequests, "")
		return true
	}
	for _, tc := range []struct {
		name         string
		path         string
		firstResolve hook // answers the first resolve after a pause
		wantResolves int
		wantCDN      int
		wantErrs     int
	}{
		{"LFS file: one resolve, every read on the CDN", "model-00001-of-00002.safetensors", nil, 1, readers, 0},
		{"file the Hub serves itself: the reads go there together", "tokenizer/tokenizer.json", nil, readers, 0, 0},
		{"failed resolve: the others resolve on their own", "model-00001-of-00002.safetensors", rateLimited, readers, readers - 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHub(t, defaultFiles()...)
			s := h.source(testEntry(), testToken)
			f := h.fetchFile(tc.path)
			var once sync.Once
			h.setHook("resolve", func(w http.ResponseWriter, r *http.Request) bool {
				handled := false
				once.Do(func() {
					// Long enough for every reader to find this resolve in flight.
					time.Sleep(200 * time.Millisecond)
					if tc.firstResolve != nil {
						handled = tc.firstResolve(w, r)
					}
				})
				return handled
			})
			want := h.file(f.Path).data
			var wg sync.WaitGroup
			errs := make(chan error, readers)
			for i := range readers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					off := f.Size * int64(i) / readers
					end := f.Size * int64(i+1) / readers
					got, err := read(t, s, f, off, end-off)
					if err == nil && !bytes.Equal(got, want[off:end]) {
						err = fmt.Errorf("bytes %d-%d differ from the file's", off, end)
					}
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			var failed int
			for err := range errs {
				if err != nil {
					failed++
					if tc.wantErrs == 0 {
						t.Error(err)
					}
				}
			}
			if failed != tc.wantErrs {
				t.Errorf("%d reads failed, want %d", failed, tc.wantErrs)
			}
			if h.count("resolve") != tc.wantResolves || h.count("cdn") != tc.wantCDN {
				t.Errorf("resolve %d, cdn %d; want %d and %d", h.count("resolve"), h.count("cdn"), tc.wantResolves, tc.wantCDN)
			}
		})
	}
}
