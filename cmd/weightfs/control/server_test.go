package control

import (
	"context"
	"encoding/json"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadyzIs503UntilTheListingIsServed(t *testing.T) {
	s, hs := newTestServer(t, Options{})
	cases := []struct {
		path        string
		code, code2 int // before Ready, after
	}{
		{"/healthz", 200, 200},
		{"/readyz", 503, 200},
		{"/status", 200, 200},
		{"/metrics", 200, 200},
	}
	for _, tc := range cases {
		if code, body := get(t, hs.URL+tc.path); code != tc.code {
			t.Errorf("%s before ready: %d %q, want %d", tc.path, code, body, tc.code)
		}
	}
	_, body := get(t, hs.URL+"/status")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Ready || len(st.Volumes) != 0 {
		t.Fatalf("status before ready: %+v", st)
	}
	s.Ready(Model{Volumes: []Volume{{Folder: "llm", Files: []Stater{newFile("a", 1, 0, "filling")}}}})
	for _, tc := range cases {
		if code, body := get(t, hs.URL+tc.path); code != tc.code2 {
			t.Errorf("%s after ready: %d %q, want %d", tc.path, code, body, tc.code2)
		}
	}
	if _, body := get(t, hs.URL+"/healthz"); body != "ok\n" {
		t.Errorf("/healthz body %q", body)
	}
	s.NotReady()
	if code, _ := get(t, hs.URL+"/readyz"); code != 503 {
		t.Errorf("/readyz after NotReady: %d", code)
	}
}

func TestStatusCountsFilesAndBytesPerVolume(t *testing.T) {
	const secret = "hf_abcdefgh12345678"
	bad := newFile("model.safetensors", 1000, 0, "bad")
	bad.st.Error = "hf:acme/llm model.safetensors: sha256 mismatch; token " + secret + " in a body"
	s, hs := newTestServer(t, Options{Secrets: []string{secret}})
	s.Ready(Model{Prefetch: true, Volumes: []Volume{
		{Folder: "llm", Repo: "acme/llm", Kind: "hf", Revision: "main", Commit: strings.Repeat("a", 40), Files: []Stater{
			newFile("config.json", 100, 100, "verified"),
			newFile("model.safetensors", 900, 300, "filling"),
		}},
		{Folder: "bad", Repo: "s3://b/p", Kind: "s3", Files: []Stater{bad, newFile("x.bin", 0, 0, "complete")}},
	}})
	code, body := get(t, hs.URL+"/status")
	if code != 200 {
		t.Fatal(code, body)
	}
	if strings.Contains(body, secret) {
		t.Fatalf("the secret appears in /status:\n%s", body)
	}
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	want := []Summary{
		{Files: 2, TotalBytes: 1000, CachedBytes: 400, DoneFiles: 1, VerifiedFiles: 1, Percent: 40},
		{Files: 2, TotalBytes: 1000, CachedBytes: 0, DoneFiles: 1, FailedFiles: 1, Percent: 0},
	}
	if len(st.Volumes) != len(want) {
		t.Fatalf("%d volumes, want %d", len(st.Volumes), len(want))
	}
	for i, w := range want {
		if st.Volumes[i].Summary != w {
			t.Errorf("volume %d: %+v\nwant %+v", i, st.Volumes[i].Summary, w)
		}
	}
	v := st.Volumes[0]
	if v.Folder != "llm" || v.Repo != "acme/llm" || v.Kind != "hf" || v.Revision != "main" || len(v.Commit) != 40 {
		t.Errorf("volume identity: %+v", v)
	}
	if len(v.FileList) != 2 || v.FileList[1].Path != "model.safetensors" || v.FileList[1].CachedBytes != 300 || v.FileList[0].State != "verified" || !v.FileList[0].Verified {
		t.Errorf("file list: %+v", v.FileList)
	}
	if e := st.Volumes[1].FileList[0].Error; !strings.Contains(e, "[REDACTED]") || !strings.Contains(e, "sha256 mismatch") {
		t.Errorf("error text %q: want it kept, with the secret redacted", e)
	}
	tot := Summary{Files: 4, TotalBytes: 2000, CachedBytes: 400, DoneFiles: 2, VerifiedFiles: 1, FailedFiles: 1, Percent: 20}
	if st.Totals != tot {
		t.Errorf("totals %+v\nwant   %+v", st.Totals, tot)
	}
	if !st.Prefetch.Enabled || st.Prefetch.Complete || st.Prefetch.ETASeconds != nil {
		t.Errorf("prefetch %+v: want enabled, incomplete, no ETA (nothing moved yet)", st.Prefetch)
	}
}

func TestRateAndETAFollowCachedBytes(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	f := newFile("model.safetensors", 100<<20, 0, "filling")
	s, _ := newTestServer(t, Options{Now: clk.Now, RateWindow: 10 * time.Second})
	s.Ready(Model{Prefetch: true, Volumes: []Volume{{Folder: "llm", Files: []Stater{f}}}})
	steps := []struct {
		cached   int64
		state    string
		rate     float64
		eta      float64 // -1: unknown
		complete bool
	}{
		{10 << 20, "filling", 10 << 20, 9, false},
		{20 << 20, "filling", 10 << 20, 8, false},
		{20 << 20, "filling", math.Round(20 << 20 / 3.0), 12, false}, // no progress this second: averaged over 3s
		{100 << 20, "verified", 100 << 20 / 4, 0, true},
	}
	for i, st := range steps {
		clk.advance(time.Second)
		f.set(st.cached, st.state)
		s.sample()
		got := s.Snapshot()
		if got.Prefetch.Rate != st.rate {
			t.Errorf("step %d: rate %.0f, want %.0f", i, got.Prefetch.Rate, st.rate)
		}
		if got.Volumes[0].Rate != st.rate {
			t.Errorf("step %d: volume rate %.0f, want %.0f", i, got.Volumes[0].Rate, st.rate)
		}
		if e := got.Prefetch.ETASeconds; e == nil || *e != st.eta {
			t.Errorf("step %d: eta %v, want %v", i, e, st.eta)
		}
		if got.Prefetch.Complete != st.complete {
			t.Errorf("step %d: complete %v", i, got.Prefetch.Complete)
		}
	}
	// Older samples leave the window.
	for range 20 {
		clk.advance(time.Second)
		s.sample()
	}
	if r := s.Snapshot().Prefetch.Rate; r != 0 {
		t.Errorf("rate %v after 20 idle seconds, want 0", r)
	}
}

func TestListenUnixSocketReplacesAStaleOne(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "control.sock")
	addr := "unix:" + sock
	// A socket file whose daemon died: nobody accepts on it.
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	l, err = Listen(addr)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	s := New(Options{SampleEvery: time.Hour})
	go s.Serve(l)
	defer s.Close()
	s.Ready(Model{Volumes: []Volume{{Folder: "v", Files: []Stater{newFile("a", 10, 10, "verified")}}}})

	st, _, err := NewClient(addr).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Ready || !st.Prefetch.Complete || st.Totals.CachedBytes != 10 {
		t.Fatalf("status over the socket: %+v", st)
	}
	if _, err := Listen(addr); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Listen on a live socket: %v, want a clear refusal", err)
	}
}

func TestListenErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cases := []struct {
		addr  string
		want  string
		inUse bool
	}{
		{l.Addr().String(), "address already in use", true},
		{"unix:", "socket path is empty", false},
		{"nonsense", "nonsense", false},
	}
	for _, tc := range cases {
		_, err := Listen(tc.addr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Listen(%q) = %v, want an error containing %q", tc.addr, err, tc.want)
		}
		if IsAddrInUse(err) != tc.inUse {
			t.Errorf("Listen(%q): IsAddrInUse = %v", tc.addr, !tc.inUse)
		}
	}
}

func TestClientNamesTheAddressWhenNoDaemonAnswers(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	_, _, err := NewClient(addr).Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no answer from the weightfs daemon at "+addr) || strings.Contains(err.Error(), "Get \"") {
		t.Fatalf("err = %v", err)
	}
	_, hs := newTestServer(t, Options{})
	if _, err := NewClient(strings.TrimPrefix(hs.URL, "http://")).Raw(context.Background(), "/readyz"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("non-200 answer: err = %v", err)
	}
}

// Fails before this change under umask 0: the socket was 0777, so every
// local user could read /status and /metrics.
func TestListenUnixSocketIsOwnerOnly(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	sock := filepath.Join(t.TempDir(), "control.sock")
	l, err := Listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("socket mode %o, want 600", perm)
	}
}

// Fails before this change: served_bad files, the version and the daemon's
// clock were not in /status, and no metric counted served-bad files.
func TestStatusAndMetricsReportServedBad(t *testing.T) {
	m := NewMetrics()
	s, hs := newTestServer(t, Options{Metrics: m, Version: "v1.2.3"})
	served := newFile("model.safetensors", 10, 10, "verified")
	served.st.ServedBad = true
	s.Ready(Model{Volumes: []Volume{{Folder: "v", Files: []Stater{newFile("a", 10, 10, "verified"), served}}}})
	m.ServedBad("model.safetensors")
	st := s.Snapshot()
	if st.Totals.ServedBadFiles != 1 || st.Volumes[0].ServedBadFiles != 1 || st.Version != "v1.2.3" || st.Now.IsZero() {
		t.Fatalf("status %+v", st)
	}
	_, body := get(t, hs.URL+"/status")
	for _, w := range []string{`"served_bad_files": 1`, `"served_bad": true`, `"version": "v1.2.3"`} {
		if !strings.Contains(body, w) {
			t.Errorf("/status lacks %s:\n%s", w, body)
		}
	}
	if v, ok := value(scrape(t, hs.URL), "weightfs_files_served_bad_total"); !ok || v != 1 {
		t.Fatalf("weightfs_files_served_bad_total = %v (present %v), want 1", v, ok)
	}
}
