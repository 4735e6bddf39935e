package hubemu

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRekeyInvalidatesEveryIssuedURL(t *testing.T) {
	s, files := newTestHub(t, Options{})
	loc := cdnLocation(t, s, "acme/model", "model.safetensors")
	s.Rekey()
	resp, body := do(t, noRedirect, "GET", loc)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "SignatureDoesNotMatch") {
		t.Fatalf("URL signed before Rekey: status %d %q, want 403 SignatureDoesNotMatch", resp.StatusCode, body)
	}
	loc2 := cdnLocation(t, s, "acme/model", "model.safetensors")
	if resp, body := do(t, noRedirect, "GET", loc2); resp.StatusCode != 200 || !bytes.Equal(body, files["model.safetensors"]) {
		t.Fatalf("URL signed after Rekey: status %d", resp.StatusCode)
	}
}

func TestExpiredStatusIsConfigurable(t *testing.T) {
	s, _ := newTestHub(t, Options{ExpiredStatus: http.StatusGone})
	loc := cdnLocation(t, s, "acme/model", "model.safetensors")
	s.ExpireCDNURLs()
	if resp, _ := do(t, noRedirect, "GET", loc); resp.StatusCode != http.StatusGone {
		t.Fatalf("expired URL: status %d, want 410", resp.StatusCode)
	}
}

// A mirror serves the signed URLs on its own host, where the client sends
// its token; the resolve of a repo whose org is "repos" still resolves.
func TestCDNOnHub(t *testing.T) {
	s, files := newTestHub(t, Options{CDNOnHub: true})
	if err := s.AddRepo(Repo{ID: "repos/x", Dir: writeFiles(t, files), Commit: testCommit}); err != nil {
		t.Fatal(err)
	}
	loc := cdnLocation(t, s, "acme/model", "model.safetensors")
	if !strings.HasPrefix(loc, s.URL()+"/repos/") || s.CDNURL() != s.URL() {
		t.Fatalf("signed URL %q is not on the Hub's host %s", loc, s.URL())
	}
	resp, body := do(t, noRedirect, "GET", loc, withToken(testToken), withRange("bytes=0-9"))
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, files["model.safetensors"][:10]) {
		t.Fatalf("signed URL with the token: status %d", resp.StatusCode)
	}
	s.ExpireCDNURLs()
	if resp, _ := do(t, noRedirect, "GET", loc); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("expired URL on the Hub's host: status %d, want 403", resp.StatusCode)
	}
	if resp, body := do(t, noRedirect, "GET", s.URL()+"/repos/x/resolve/main/config.json"); resp.StatusCode != 200 || !bytes.Equal(body, files["config.json"]) {
		t.Fatalf("resolve in org \"repos\": status %d", resp.StatusCode)
	}
}

func TestSetUnavailable(t *testing.T) {
	s, _ := newTestHub(t, Options{})
	loc := cdnLocation(t, s, "acme/model", "model.safetensors")
	s.SetUnavailable(true)
	for _, u := range []string{s.URL() + "/api/models/acme/model/revision/main", s.URL() + "/acme/model/resolve/main/config.json", loc} {
		if resp, _ := do(t, noRedirect, "GET", u); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("during the outage, %s: status %d, want 503", u, resp.StatusCode)
		}
	}
	s.SetUnavailable(false)
	if resp, _ := do(t, noRedirect, "GET", loc); resp.StatusCode != 200 {
		t.Fatalf("after the outage, the signed URL: status %d, want 200", resp.StatusCode)
	}
}

func TestStallListingNext(t *testing.T) {
	s, _ := newTestHub(t, Options{})
	s.StallListingNext(1, 300*time.Millisecond)
	rev := s.URL() + "/api/models/acme/model/revision/main"
	// Content is never stalled.
	start := time.Now()
	if resp, _ := do(t, noRedirect, "GET", s.URL()+"/acme/model/resolve/main/config.json"); resp.StatusCode != 200 || time.Since(start) > 200*time.Millisecond {
		t.Fatalf("content: status %d after %s", resp.StatusCode, time.Since(start))
	}
	for i, want := range []time.Duration{300 * time.Millisecond, 0} {
		start := time.Now()
		resp, _ := do(t, noRedirect, "GET", rev)
		d := time.Since(start)
		if resp.StatusCode != 200 || d < want || (want == 0 && d > 200*time.Millisecond) {
			t.Errorf("listing %d: status %d after %s, want 200 after about %s", i, resp.StatusCode, d, want)
		}
	}
	// A stall ends when the client gives up.
	s.StallListingNext(1, time.Hour)
	c := &http.Client{Timeout: 200 * time.Millisecond}
	if _, err := c.Get(rev); err == nil {
		t.Fatal("stalled listing answered")
	}
	if resp, _ := do(t, noRedirect, "GET", rev); resp.StatusCode != 200 {
		t.Fatalf("after the stall: status %d", resp.StatusCode)
	}
}
