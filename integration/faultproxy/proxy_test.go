package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// origin serves blob at /bucket/<name> with Range support, and a listing at
// /bucket?list-type=2. It writes straight from blob, so a proxy that
// changed its caller's buffer would corrupt it for good.
func origin(t *testing.T, p *Proxy, blob []byte) *httptest.Server {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("list-type") {
			io.WriteString(w, `<ListBucketResult><Key>model.bin</Key></ListBucketResult>`)
			return
		}
		http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(blob))
	})
	srv := httptest.NewServer(p.Wrap(h))
	t.Cleanup(srv.Close)
	return srv
}

func testBlob(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return b
}

// get fetches url with an optional Range ("" none) and returns status,
// body and the read error, on a fresh connection each time.
func get(t *testing.T, u, rng string) (int, []byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func diffs(a, b []byte) int {
	n := 0
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

func TestBodyFaults(t *testing.T) {
	blob := testBlob(1 << 20)
	cases := []struct {
		name   string
		rates  Rates
		kind   Kind
		status int
		check  func(t *testing.T, body []byte, err error)
	}{
		{"none", Rates{}, "", 200, func(t *testing.T, b []byte, err error) {
			if err != nil || !bytes.Equal(b, blob) {
				t.Errorf("err %v, %d bytes differ", err, diffs(b, blob))
			}
		}},
		{"flip", Rates{Flip: 1}, Flip, 200, func(t *testing.T, b []byte, err error) {
			if err != nil || len(b) != len(blob) || diffs(b, blob) != 1 {
				t.Errorf("err %v, len %d, %d bytes differ; want one", err, len(b), diffs(b, blob))
			}
		}},
		{"reset", Rates{Reset: 1}, Reset, 200, func(t *testing.T, b []byte, err error) {
			if err == nil || len(b) >= len(blob) || diffs(b, blob) != 0 {
				t.Errorf("err %v after %d of %d bytes (%d differ); want a reset mid-body", err, len(b), len(blob), diffs(b, blob))
			}
			if !strings.Contains(fmt.Sprint(err), "connection reset") && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("err %v, want a connection reset", err)
			}
		}},
		{"truncate", Rates{Truncate: 1}, Truncate, 200, func(t *testing.T, b []byte, err error) {
			if !errors.Is(err, io.ErrUnexpectedEOF) || len(b) >= len(blob) || diffs(b, blob) != 0 {
				t.Errorf("err %v after %d of %d bytes; want unexpected EOF", err, len(b), len(blob))
			}
		}},
		{"stall for a while", Rates{Stall: 1, StallFor: 50 * time.Millisecond}, Stall, 200, func(t *testing.T, b []byte, err error) {
			if err != nil || !bytes.Equal(b, blob) {
				t.Errorf("err %v, %d bytes differ; a stall must not change the body", err, diffs(b, blob))
			}
		}},
		{"5xx", Rates{Status5xx: 1}, Status5xx, 503, func(t *testing.T, b []byte, err error) {
			if err != nil || !strings.Contains(string(b), "503") {
				t.Errorf("err %v body %q", err, b)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := New(Options{Seed: 7})
			srv := origin(t, p, blob)
			p.SetRates(tc.rates)
			for i := range 5 {
				code, b, err := get(t, srv.URL+"/bucket/model.bin", "")
				if code != tc.status {
					t.Fatalf("request %d: status %d, want %d", i, code, tc.status)
				}
				tc.check(t, b, err)
			}
			st := p.Stats()
			if tc.kind != "" && st.Faults[tc.kind] != 5 {
				t.Errorf("faults %v, want 5 %s", st.Faults, tc.kind)
			}
			if st.Requests != 5 || st.ContentRequests != 5 {
				t.Errorf("requests %d content %d, want 5 and 5", st.Requests, st.ContentRequests)
			}
			if sha := diffs(blob, testBlob(len(blob))); sha != 0 {
				t.Errorf("the origin's own buffer changed in %d bytes", sha)
			}
		})
	}
}

func TestFlipRateIsAFractionOfResponsesAndRanged(t *testing.T) {
	blob := testBlob(256 << 10)
	p := New(Options{Seed: 42})
	srv := origin(t, p, blob)
	p.SetFlipRate(0.2)
	const n = 400
	bad := 0
	for i := range n {
		off := (i * 4093) % (len(blob) - 8192)
		code, b, err := get(t, srv.URL+"/bucket/model.bin", fmt.Sprintf("bytes=%d-%d", off, off+8191))
		if err != nil || code != 206 || len(b) != 8192 {
			t.Fatalf("range %d: %d, %d bytes, %v", off, code, len(b), err)
		}
		switch d := diffs(b, blob[off:off+8192]); d {
		case 0:
		case 1:
			bad++
		default:
			t.Fatalf("range %d: %d bytes differ; a flip is one byte", off, d)
		}
	}
	if bad < n*15/100 || bad > n*25/100 {
		t.Errorf("%d of %d responses flipped; want about 20%%", bad, n)
	}
	// The handler counts a body's bytes after writing them, which can be
	// just after the client has read them: let the last count land.
	st := p.Stats()
	for deadline := time.Now().Add(2 * time.Second); st.ContentBytes != n*8192 && time.Now().Before(deadline); st = p.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	if st.Faults[Flip] != int64(bad) || st.ContentBytes != n*8192 {
		t.Errorf("stats %+v; want %d flips and %d content bytes", st, bad, n*8192)
	}
	p.SetFlipRate(0)
	if _, b, _ := get(t, srv.URL+"/bucket/model.bin", ""); !bytes.Equal(b, blob) {
		t.Error("flips after the rate went back to 0")
	}
}

func TestListingsAreLeftAloneUnlessAsked(t *testing.T) {
	p := New(Options{})
	srv := origin(t, p, testBlob(1000))
	p.SetRates(Rates{Status5xx: 1})
	if code, b, err := get(t, srv.URL+"/bucket?list-type=2", ""); code != 200 || err != nil || !strings.Contains(string(b), "model.bin") {
		t.Errorf("listing under content faults: %d %q %v", code, b, err)
	}
	p.SetListingRates(Rates{Status5xx: 1})
	if code, _, _ := get(t, srv.URL+"/bucket?list-type=2", ""); code != 503 {
		t.Errorf("listing with a listing fault: %d, want 503", code)
	}
	if st := p.Stats(); st.ContentRequests != 0 || st.Faults[Status5xx] != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestSwitches(t *testing.T) {
	blob := testBlob(64 << 10)
	p := New(Options{Seed: 3})
	srv := origin(t, p, blob)
	ok := func(path string) bool {
		code, b, err := get(t, srv.URL+path, "")
		return err == nil && code == 200 && bytes.Equal(b, blob)
	}
	p.AlwaysFail("model-00002")
	for i := range 6 {
		if ok("/bucket/model-00002-of-00004.safetensors") {
			t.Fatalf("request %d of the failing object succeeded", i)
		}
	}
	if !ok("/bucket/model-00001-of-00004.safetensors") {
		t.Error("another object failed while one always fails")
	}
	if code, _, _ := get(t, srv.URL+"/bucket?list-type=2&prefix=model-00002", ""); code != 200 {
		t.Errorf("a listing naming the failing object answered %d", code)
	}
	p.Lift("model-00002")
	if !ok("/bucket/model-00002-of-00004.safetensors") {
		t.Error("still failing after Lift")
	}
	if n := p.Stats().Faults[AlwaysFail]; n != 6 {
		t.Errorf("%d always-fail faults, want 6", n)
	}

	p.SetDown(true)
	if _, _, err := get(t, srv.URL+"/bucket?list-type=2", ""); err == nil {
		t.Error("a listing succeeded while down")
	}
	if ok("/bucket/model.bin") {
		t.Error("content succeeded while down")
	}
	p.SetDown(false)
	if !ok("/bucket/model.bin") {
		t.Error("still down after SetDown(false)")
	}
}

func TestPersistentCorruptionIsTheSameEveryTime(t *testing.T) {
	blob := testBlob(64 << 10)
	p := New(Options{})
	srv := origin(t, p, blob)
	const off = 40000
	p.Persistent("model.bin", off)
	for _, rng := range []string{"", "bytes=32768-49151", "bytes=39999-40000", "bytes=40000-40000", "bytes=0-39999", "bytes=40001-"} {
		_, b, err := get(t, srv.URL+"/bucket/model.bin", rng)
		if err != nil {
			t.Fatalf("%q: %v", rng, err)
		}
		start := int64(0)
		if rng != "" {
			fmt.Sscanf(rng, "bytes=%d-", &start)
		}
		want := append([]byte(nil), blob[start:start+int64(len(b))]...)
		if rel := off - start; rel >= 0 && rel < int64(len(want)) {
			want[rel] ^= 0x5a
		}
		if !bytes.Equal(b, want) {
			t.Errorf("%q: %d bytes differ from the origin with byte %d XOR 0x5a", rng, diffs(b, want), off)
		}
	}
	if n := p.Stats().Faults[Persistent]; n != 4 {
		t.Errorf("%d persistent faults, want 4 (the ranges covering %d)", n, off)
	}
	p.Lift("model.bin")
	if _, b, _ := get(t, srv.URL+"/bucket/model.bin", ""); !bytes.Equal(b, blob) {
		t.Error("corrupt after Lift")
	}
}

func TestStallUntilTheClientGivesUp(t *testing.T) {
	p := New(Options{})
	srv := origin(t, p, testBlob(1<<20))
	p.SetRates(Rates{Stall: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/bucket/model.bin", nil)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v, want the client's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the stalled request took %s to give up", d)
	}
}

func TestForward(t *testing.T) {
	blob := testBlob(300 << 10)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(blob))
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	p := New(Options{})
	srv := httptest.NewServer(p.Forward(u))
	defer srv.Close()
	if _, b, err := get(t, srv.URL+"/bucket/k", "bytes=100-"); err != nil || !bytes.Equal(b, blob[100:]) {
		t.Fatalf("clean forward: %v, %d bytes differ", err, diffs(b, blob[100:]))
	}
	p.SetRates(Rates{Reset: 1})
	if _, b, err := get(t, srv.URL+"/bucket/k", ""); err == nil || len(b) >= len(blob) {
		t.Errorf("reset through Forward: err %v after %d bytes", err, len(b))
	}
	p.SetRates(Rates{Flip: 1})
	if _, b, err := get(t, srv.URL+"/bucket/k", ""); err != nil || diffs(b, blob) != 1 {
		t.Errorf("flip through Forward: err %v, %d bytes differ", err, diffs(b, blob))
	}
}

func TestAnyContent(t *testing.T) {
	cases := []struct {
		method, url string
		want        bool
	}{
		{"GET", "/acme/llm/resolve/main/model.safetensors", true},
		{"GET", "/repos/ab/cd/abcdef?repo=acme/llm&file=model.safetensors&Signature=x", true},
		{"GET", "/api/models/acme/llm/tree/main?recursive=true", false},
		{"GET", "/api/models/acme/llm/revision/main", false},
		{"HEAD", "/acme/llm/resolve/main/model.safetensors", false},
		{"GET", "/weights/llm/model.safetensors?x-id=GetObject", true},
		{"GET", "/weights?list-type=2&prefix=llm%2F", false},
		{"GET", "/weights/llm/model.safetensors?attributes", false},
		{"GET", "/download/storage/v1/b/weights/o/llm%2Fmodel.safetensors?alt=media&generation=1", true},
		{"GET", "/storage/v1/b/weights/o/llm%2Fmodel.safetensors?alt=media", true},
		{"GET", "/storage/v1/b/weights/o?prefix=llm%2F", false},
		{"GET", "/storage/v1/b/weights/o/llm%2Fmodel.safetensors", false},
		{"GET", "/storage/v1/b/weights", false},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, c.url, nil)
		if got := AnyContent(r); got != c.want {
			t.Errorf("%s %s: content %v, want %v", c.method, c.url, got, c.want)
		}
	}
	r := httptest.NewRequest("GET", "/download/storage/v1/b/weights/o/llm%2Fmodel-00002-of-00004.safetensors?alt=media", nil)
	if m := Match(r); !strings.Contains(m, "llm/model-00002-of-00004") {
		t.Errorf("Match %q does not name the object", m)
	}
	r = httptest.NewRequest("GET", "/repos/ab/cd/abcdef?file=sub%2Fmodel.safetensors&repo=acme%2Fllm", nil)
	if m := Match(r); !strings.Contains(m, "file=sub/model.safetensors") {
		t.Errorf("Match %q does not name the CDN's file", m)
	}
}
