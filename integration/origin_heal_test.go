package integration

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weightfs/weightfs/integration/faultproxy"
	"github.com/weightfs/weightfs/integration/hubemu"
	"github.com/weightfs/weightfs/integration/modelgen"
)

// Real mounts against an origin that forgets what it told the daemon: its
// signed URLs expire or are re-keyed mid-file, it goes down and comes back,
// its listing stalls. Every read must come right again with no restart.

const healFile = "model.safetensors" // the one shard of llmRepo(..., 1)

// readHead reads [0, n) of the file through the mount, so that its CDN URL
// is resolved and cached, and its first chunks are on disk.
func readHead(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.ReadFull(f, make([]byte, n)); err != nil {
		t.Fatalf("reading the first %d bytes: %v", n, err)
	}
}

// wantSum checks the whole file through the mount against the origin.
func wantSum(t *testing.T, m *mount, origin, rel string) {
	t.Helper()
	want, err := modelgen.SHA256File(filepath.Join(origin, rel))
	if err != nil {
		t.Fatal(err)
	}
	got, err := modelgen.SHA256File(m.path("llm", rel))
	if err != nil {
		t.Fatalf("reading the rest of %s: %v\n%s", rel, err, m.stderr.String())
	}
	if got != want {
		t.Fatalf("%s: sha256 %s through the mount, %s at the origin", rel, got, want)
	}
}

// healArgs: no prefetch and no readahead, so the second half of the file is
// fetched only after the fault, by the test's own reads.
var healArgs = []string{"--prefetch=false", "--readahead-max-mb", "0", "--memory-cache-mb", "0"}

// A file half read, then its signed URL expires or the origin re-keys: the
// rest of the file reads right, with no restart.
//
// Fails before this change: with the CDN on the Hub's own host (a mirror or
// proxy set with HF_ENDPOINT) the 403 was taken as "access denied: set the
// hf_access_token secret", permanently, and every later read of the file was
// EIO; a 410 was permanent on either host. (A 403 from another host already
// re-resolved; those rows guard it.)
func TestSignedURLExpiredMidFileHeals(t *testing.T) {
	cases := []struct {
		name  string
		opts  hubemu.Options
		rekey bool // Rekey, else ExpireCDNURLs
	}{
		{"cdn host, expired 403", hubemu.Options{}, false},
		{"cdn host, re-keyed", hubemu.Options{}, true},
		{"cdn host, expired 410", hubemu.Options{ExpiredStatus: 410}, false},
		{"mirror, expired 403", hubemu.Options{CDNOnHub: true}, false},
		{"mirror, re-keyed", hubemu.Options{CDNOnHub: true}, true},
		{"mirror, expired 410", hubemu.Options{CDNOnHub: true, ExpiredStatus: 410}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hub := newHub(t, tc.opts)
			origin := llmRepo(t, hub, 32<<20, 1)
			m := mustMount(t, hub, mountOpts{config: llmConfig, args: healArgs})
			readHead(t, m.path("llm", healFile), 12<<20)
			if tc.rekey {
				hub.Rekey()
			} else {
				hub.ExpireCDNURLs()
			}
			wantSum(t, m, origin, healFile)
			if log := m.stderr.String(); !strings.Contains(log, "CDN refused a cached URL") {
				t.Errorf("the stale URL was never refused (did the fault bite?):\n%s", log)
			}
		})
	}
}

// The origin goes down (503s, or connections reset), reads fail with EIO
// meanwhile, then it comes back, re-keyed as a restarted origin may be:
// reads succeed again with no restart, the half-read file and a file never
// read before alike.
//
// Fails before this change in the re-keyed mirror row: the cached URL's
// 403, on the Hub's host, was "access denied", permanently (EIO forever).
func TestOriginDownThenBackHeals(t *testing.T) {
	cases := []struct {
		name  string
		opts  hubemu.Options
		down  func(hub *hubemu.Server, p *faultproxy.Proxy, down bool)
		rekey bool
	}{
		{"503 outage, cdn host", hubemu.Options{},
			func(hub *hubemu.Server, _ *faultproxy.Proxy, down bool) { hub.SetUnavailable(down) }, false},
		{"503 outage, restart re-keys, mirror", hubemu.Options{CDNOnHub: true},
			func(hub *hubemu.Server, _ *faultproxy.Proxy, down bool) { hub.SetUnavailable(down) }, true},
		{"connections reset, restart re-keys, mirror", hubemu.Options{CDNOnHub: true},
			func(_ *hubemu.Server, p *faultproxy.Proxy, down bool) { p.SetDown(down) }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			proxy := faultproxy.New(faultproxy.Options{})
			tc.opts.Wrap = proxy.Wrap
			hub := newHub(t, tc.opts)
			origin := llmRepo(t, hub, 32<<20, 1)
			m := mustMount(t, hub, mountOpts{config: llmConfig, args: append([]string{
				"--read-timeout", "3s", "--fetch-timeout", "1s", "--fetch-retries", "2"}, healArgs...)})
			readHead(t, m.path("llm", healFile), 12<<20)

			tc.down(hub, proxy, true)
			f, err := os.Open(m.path("llm", healFile))
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.ReadAt(make([]byte, 4096), 24<<20)
			f.Close()
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("read during the outage: err %v, want EIO", err)
			}
			if tc.rekey {
				hub.Rekey()
			}
			tc.down(hub, proxy, false)

			wantSum(t, m, origin, healFile)
			wantSum(t, m, origin, "config.json")
		})
	}
}

// A listing whose first attempts stall costs --fetch-timeout each, not 30 s:
// the mount is ready, and `ls` answers, in a few seconds.
//
// Fails before this change: listings ignored --fetch-timeout (ls has no such
// flag either), each stalled attempt took the default 30 s, and the mount
// was ready only after about a minute.
func TestStalledListingCostsFetchTimeout(t *testing.T) {
	const stalls = 2 // the revision request's first two attempts
	t.Run("mount", func(t *testing.T) {
		hub := newHub(t, hubemu.Options{})
		origin := llmRepo(t, hub, 2<<20, 1)
		hub.StallListingNext(stalls, time.Hour)
		start := time.Now()
		m := mustMount(t, hub, mountOpts{config: llmConfig, args: []string{"--fetch-timeout", "2s", "--prefetch=false"}})
		if d := time.Since(start); d > 15*time.Second {
			t.Fatalf("mount ready after %s; want about %d × --fetch-timeout (2s)", d.Round(time.Millisecond), stalls)
		}
		wantSum(t, m, origin, "config.json")
	})
	t.Run("ls", func(t *testing.T) {
		hub := newHub(t, hubemu.Options{})
		llmRepo(t, hub, 2<<20, 1)
		hub.StallListingNext(stalls, time.Hour)
		start := time.Now()
		out, err := runWeightfs(t, []string{"HF_ENDPOINT=" + hub.URL(), "HF_TOKEN="}, "ls", "--config", writeConfig(t, llmConfig),
			"--cache-dir", t.TempDir(), "--secrets-dir", t.TempDir(), "--fetch-timeout", "2s")
		if err != nil || !strings.Contains(out, healFile) {
			t.Fatalf("ls: %v\n%s", err, out)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Fatalf("ls answered after %s; want about %d × --fetch-timeout (2s)", d.Round(time.Millisecond), stalls)
		}
	})
}
