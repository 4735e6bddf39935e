package hubemu

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestResolveSmallFile(t *testing.T) {
	s, files := newTestHub(t, Options{})
	for _, p := range []string{"config.json", "sub dir/ünï côde.txt", "small.dat", "nested/a/b.json"} {
		t.Run(p, func(t *testing.T) {
			content := files[p]
			for _, rev := range []string{"main", "refs%2Fpr%2F1", testCommit} {
				resp, body := do(t, noRedirect, "GET", s.URL()+"/acme/model/resolve/"+rev+"/"+escapePath(p))
				if resp.StatusCode != 200 || !bytes.Equal(body, content) {
					t.Fatalf("rev %s: status %d, %d bytes; want 200 and the file", rev, resp.StatusCode, len(body))
				}
				h := resp.Header
				if h.Get("ETag") != `"`+gitSHA1(content)+`"` || h.Get("Accept-Ranges") != "bytes" ||
					h.Get("Content-Length") != fmt.Sprint(len(content)) {
					t.Fatalf("headers %v", h)
				}
				wantCommit := testCommit
				if rev != "main" && rev != testCommit {
					wantCommit = prCommit
				}
				if h.Get("X-Repo-Commit") != wantCommit {
					t.Fatalf("X-Repo-Commit %q want %s", h.Get("X-Repo-Commit"), wantCommit)
				}
			}
			resp, body := do(t, noRedirect, "HEAD", s.URL()+"/acme/model/resolve/main/"+escapePath(p))
			if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len(content)) {
				t.Fatalf("HEAD: status %d, body %d, length %d", resp.StatusCode, len(body), resp.ContentLength)
			}
		})
	}
}

func TestResolveLFSRedirect(t *testing.T) {
	s, files := newTestHub(t, Options{Token: testToken})
	for _, p := range []string{"model.safetensors", "big.dat", "text_encoder/model.bin"} {
		t.Run(p, func(t *testing.T) {
			content := files[p]
			resp, _ := do(t, noRedirect, "HEAD", s.URL()+"/acme/gated/resolve/main/"+escapePath(p), withToken(testToken))
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d, want 302", resp.StatusCode)
			}
			h := resp.Header
			if h.Get("X-Linked-Etag") != `"`+sha256Hex(content)+`"` || h.Get("X-Linked-Size") != fmt.Sprint(len(content)) ||
				h.Get("X-Repo-Commit") != testCommit || h.Get("ETag") == "" {
				t.Fatalf("headers %v", h)
			}
			loc, err := url.Parse(h.Get("Location"))
			if err != nil || !loc.IsAbs() {
				t.Fatalf("Location %q: want an absolute URL", h.Get("Location"))
			}
			hub, _ := url.Parse(s.URL())
			if loc.Hostname() != "localhost" || loc.Hostname() == hub.Hostname() {
				t.Fatalf("CDN host %q must differ from the hub host %q", loc.Host, hub.Host)
			}

			// The CDN refuses the token: a client that leaks it fails loudly.
			resp, body := do(t, noRedirect, "GET", loc.String(), withToken(testToken))
			if resp.StatusCode != 400 {
				t.Fatalf("CDN with Authorization: status %d, want 400", resp.StatusCode)
			}
			// Go's client drops Authorization on a cross-host redirect, as
			// huggingface_hub does, so following the redirect works.
			resp, body = do(t, http.DefaultClient, "GET", s.URL()+"/acme/gated/resolve/main/"+escapePath(p), withToken(testToken))
			if resp.StatusCode != 200 || !bytes.Equal(body, content) {
				t.Fatalf("followed: status %d, %d bytes", resp.StatusCode, len(body))
			}
			if resp.Header.Get("ETag") != `"`+sha256Hex(content)+`"` || resp.Header.Get("Accept-Ranges") != "bytes" {
				t.Fatalf("CDN headers %v", resp.Header)
			}
		})
	}
}

func TestRanges(t *testing.T) {
	s, files := newTestHub(t, Options{})
	small := files["config.json"]
	lfs := files["model.safetensors"]
	smallURL := s.URL() + "/acme/model/resolve/main/config.json"
	cdnURL := cdnLocation(t, s, "acme/model", "model.safetensors")
	tests := []struct {
		name, url, rng string
		content        []byte
		status         int
		from, to       int // expected body content[from:to]
		contentRange   string
	}{
		{"small first bytes", smallURL, "bytes=0-3", small, 206, 0, 4, fmt.Sprintf("bytes 0-3/%d", len(small))},
		{"small open end", smallURL, "bytes=5-", small, 206, 5, len(small), fmt.Sprintf("bytes 5-%d/%d", len(small)-1, len(small))},
		{"small suffix", smallURL, "bytes=-4", small, 206, len(small) - 4, len(small), fmt.Sprintf("bytes %d-%d/%d", len(small)-4, len(small)-1, len(small))},
		{"small past end", smallURL, "bytes=100000-", small, 416, 0, 0, fmt.Sprintf("bytes */%d", len(small))},
		{"small end clamped", smallURL, "bytes=2-999999", small, 206, 2, len(small), fmt.Sprintf("bytes 2-%d/%d", len(small)-1, len(small))},
		{"multi range ignored", smallURL, "bytes=0-1,4-5", small, 200, 0, len(small), ""},
		{"cdn header probe", cdnURL, "bytes=0-100000", lfs, 206, 0, 100001, fmt.Sprintf("bytes 0-100000/%d", len(lfs))},
		{"cdn middle", cdnURL, "bytes=200000-200999", lfs, 206, 200000, 201000, fmt.Sprintf("bytes 200000-200999/%d", len(lfs))},
		{"cdn last byte", cdnURL, fmt.Sprintf("bytes=%d-", len(lfs)-1), lfs, 206, len(lfs) - 1, len(lfs), fmt.Sprintf("bytes %d-%d/%d", len(lfs)-1, len(lfs)-1, len(lfs))},
		{"cdn at size", cdnURL, fmt.Sprintf("bytes=%d-", len(lfs)), lfs, 416, 0, 0, fmt.Sprintf("bytes */%d", len(lfs))},
		{"cdn whole", cdnURL, "", lfs, 200, 0, len(lfs), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts []reqOpt
			if tc.rng != "" {
				opts = append(opts, withRange(tc.rng))
			}
			resp, body := do(t, noRedirect, "GET", tc.url, opts...)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if got := resp.Header.Get("Content-Range"); got != tc.contentRange {
				t.Fatalf("Content-Range %q, want %q", got, tc.contentRange)
			}
			if tc.status != 416 && !bytes.Equal(body, tc.content[tc.from:tc.to]) {
				t.Fatalf("body: %d bytes, want content[%d:%d]", len(body), tc.from, tc.to)
			}
		})
	}
}

func TestCDNURLExpiry(t *testing.T) {
	s, files := newTestHub(t, Options{CDNURLTTL: 300 * time.Millisecond})
	content := files["model.safetensors"]
	loc := cdnLocation(t, s, "acme/model", "model.safetensors")
	if resp, body := do(t, noRedirect, "GET", loc); resp.StatusCode != 200 || !bytes.Equal(body, content) {
		t.Fatalf("fresh URL: status %d", resp.StatusCode)
	}
	tampered := strings.Replace(loc, "file=model.safetensors", "file=big.dat", 1)
	if resp, _ := do(t, noRedirect, "GET", tampered); resp.StatusCode != 403 {
		t.Fatalf("tampered URL: status %d, want 403", resp.StatusCode)
	}
	s.ExpireCDNURLs()
	if resp, _ := do(t, noRedirect, "GET", loc); resp.StatusCode != 403 {
		t.Fatalf("after ExpireCDNURLs: status %d, want 403", resp.StatusCode)
	}
	// Resolving again gives a URL that works: what a client does on 403.
	loc2 := cdnLocation(t, s, "acme/model", "model.safetensors")
	if resp, _ := do(t, noRedirect, "HEAD", loc2); resp.StatusCode != 200 {
		t.Fatalf("new URL: status %d", resp.StatusCode)
	}
	time.Sleep(350 * time.Millisecond)
	if resp, _ := do(t, noRedirect, "HEAD", loc2); resp.StatusCode != 403 {
		t.Fatalf("after the TTL: status %d, want 403", resp.StatusCode)
	}
}

func TestFaults(t *testing.T) {
	s, files := newTestHub(t, Options{})
	get := func(p, rng string) (int, []byte) {
		var opts []reqOpt
		if rng != "" {
			opts = append(opts, withRange(rng))
		}
		resp, body := do(t, http.DefaultClient, "GET", s.URL()+"/acme/model/resolve/main/"+p, opts...)
		return resp.StatusCode, body
	}
	lfs, small := files["model.safetensors"], files["config.json"]

	s.SetFault("acme/model", "config.json", Fault{FailNext: 2})
	for i, want := range []int{500, 500, 200, 200} {
		if code, _ := get("config.json", ""); code != want {
			t.Fatalf("FailNext request %d: status %d, want %d", i, code, want)
		}
	}

	s.SetFault("acme/model", "model.safetensors", Fault{CorruptTimes: 1})
	if code, body := get("model.safetensors", ""); code != 200 || bytes.Equal(body, lfs) || len(body) != len(lfs) {
		t.Fatalf("first body: status %d, equal %v: want corrupted", code, bytes.Equal(body, lfs))
	}
	if code, body := get("model.safetensors", ""); code != 200 || !bytes.Equal(body, lfs) {
		t.Fatalf("second body: status %d, equal %v: want intact", code, bytes.Equal(body, lfs))
	}

	s.SetFault("acme/model", "config.json", Fault{Corrupt: true})
	for _, rng := range []string{"", "bytes=1-3", "bytes=0-0"} {
		code, body := get("config.json", rng)
		if code/100 != 2 || len(body) == 0 || bytes.Contains(small, body) {
			t.Fatalf("Corrupt range %q: status %d body %q: want corrupted bytes", rng, code, body)
		}
	}
	s.ClearFaults()
	if code, body := get("config.json", ""); code != 200 || !bytes.Equal(body, small) {
		t.Fatalf("after ClearFaults: status %d", code)
	}
}

// TestStallHonoursCancel: a stalled body keeps the headers flowing but not
// the bytes, and the handler ends as soon as the client gives up.
func TestStallHonoursCancel(t *testing.T) {
	done := make(chan string, 16)
	s, _ := newTestHub(t, Options{Logf: func(f string, a ...any) { done <- fmt.Sprintf(f, a...) }})
	s.SetFault("acme/model", "config.json", Fault{Stall: time.Minute})

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL()+"/acme/model/resolve/main/config.json", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	read := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); read <- err }()
	select {
	case <-read:
		t.Fatal("body arrived during the stall")
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	<-read
	select {
	case line := <-done:
		if !strings.Contains(line, "config.json") {
			t.Fatalf("log %q", line)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("handler still running 2s after the client went away")
	}
}

func TestThrottle(t *testing.T) {
	const size = 2 << 20
	files := map[string][]byte{"w.safetensors": bytes.Repeat([]byte{7}, size)}
	dir := writeFiles(t, files)
	tests := []struct {
		name    string
		opts    Options
		streams int
		min     time.Duration
	}{
		// 2 MiB at 20 MB/s: ~105 ms; allow for the burst and first chunk.
		{"per conn", Options{PerConnBytesPerSec: 20e6}, 1, 80 * time.Millisecond},
		{"per conn, parallel streams do not share", Options{PerConnBytesPerSec: 20e6}, 2, 80 * time.Millisecond},
		{"aggregate shared", Options{AggregateBytesPerSec: 40e6}, 2, 80 * time.Millisecond},
		{"ttfb", Options{TTFB: 120 * time.Millisecond}, 1, 120 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.AddRepo(Repo{ID: "acme/w", Dir: dir}); err != nil {
				t.Fatal(err)
			}
			loc := cdnLocation(t, s, "acme/w", "w.safetensors")
			start := time.Now()
			var wg sync.WaitGroup
			for i := 0; i < tc.streams; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, body := do(t, noRedirect, "GET", loc)
					if resp.StatusCode != 200 || len(body) != size {
						t.Errorf("status %d, %d bytes", resp.StatusCode, len(body))
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			if el < tc.min || el > tc.min*4+time.Second/2 {
				t.Fatalf("took %v, want about %v", el, tc.min)
			}
			if got := s.BytesServed(); got != int64(size*tc.streams) {
				t.Fatalf("BytesServed %d, want %d", got, size*tc.streams)
			}
		})
	}
}
