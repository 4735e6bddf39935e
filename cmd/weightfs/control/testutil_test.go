package control

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/weightfs/weightfs/chunkcache"
)

// fakeFile is a Stater whose state the test sets.
type fakeFile struct {
	mu sync.Mutex
	st chunkcache.ObjectStats
}

func newFile(path string, size, cached int64, state string) *fakeFile {
	return &fakeFile{st: chunkcache.ObjectStats{Path: path, Size: size, CachedBytes: cached, State: state, Verified: state == "verified"}}
}

func (f *fakeFile) Stats() chunkcache.ObjectStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeFile) set(cached int64, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.CachedBytes, f.st.State, f.st.Verified = cached, state, state == "verified"
}

// fakeClock is a settable Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newTestServer serves s over httptest; the background sampler is slowed
// to a crawl so tests drive sampling themselves.
func newTestServer(t *testing.T, o Options) (*Server, *httptest.Server) {
	t.Helper()
	if o.SampleEvery == 0 {
		o.SampleEvery = time.Hour
	}
	s := New(o)
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Close() })
	return s, hs
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
