package hf

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"testing"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/fetchtest"
)

// Content-Range decides whether a 206 body is the asked bytes of the file.
// Whatever the header says, the Hub reader takes the body only when it
// names exactly the asked range of a file of the listed size (digits only,
// leading zeros allowed), and otherwise fails with a retryable
// ErrBadResponse. The parsing itself is fetch.ParseContentRange (fuzzed
// there); this holds the Hub's use of it.
func FuzzHubContentRange(f *testing.F) {
	fetchtest.AddContentRangeSeeds(f)
	exact := regexp.MustCompile(`^bytes 0*10-0*19/0*5000$`)
	s := New(testEntry(), Options{})
	file := fetch.File{Path: "model.safetensors", Size: 5000, Version: testCommit}
	u, _ := url.Parse("https://cdn.example/x?sig=secret")
	f.Fuzz(func(t *testing.T, v string) {
		body := []byte("0123456789")
		resp := &http.Response{StatusCode: http.StatusPartialContent, Header: http.Header{"Content-Range": {v}},
			ContentLength: 10, Body: io.NopCloser(bytes.NewReader(body)), Request: &http.Request{URL: u}}
		p := make([]byte, 10)
		err := s.readBody(resp, file, 10, p, reqInfo{op: "GET x", commit: testCommit, path: file.Path})
		if want := exact.MatchString(v); (err == nil) != want {
			t.Fatalf("Content-Range %q: err = %v, want accepted = %v", v, err, want)
		}
		if err == nil && !bytes.Equal(p, body) {
			t.Fatalf("Content-Range %q: read %q", v, p)
		}
		if err != nil && (!errors.Is(err, fetch.ErrBadResponse) || fetch.IsPermanent(err)) {
			t.Fatalf("Content-Range %q: err = %v, want a retryable ErrBadResponse", v, err)
		}
	})
}
