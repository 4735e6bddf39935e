package integration

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/weightfs/weightfs/cmd/weightfs/control"
	"github.com/weightfs/weightfs/integration/hubemu"
	"github.com/weightfs/weightfs/integration/modelgen"
)

// freeAddr returns a loopback address nothing listens on (for a moment).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func controlGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// controlStatus polls /status until cond holds (nil: once ready).
func controlStatus(t *testing.T, addr string, within time.Duration, cond func(*control.Status) bool) *control.Status {
	t.Helper()
	cl := control.NewClient(addr)
	var st *control.Status
	var err error
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		st, _, err = cl.Status(context.Background())
		if err == nil && st.Ready && (cond == nil || cond(st)) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status not as wanted after %s: err=%v status=%+v", within, err, st)
		}
	}
}

// metricValue sums name's samples whose labels include the given pairs
// (counters and gauges; histograms count their observations).
func metricValue(t *testing.T, addr, name string, labels ...string) float64 {
	t.Helper()
	code, body := controlGet(t, addr, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	var sum float64
	for _, m := range fams[name].GetMetric() {
		if hasLabels(m, labels) {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			found = found || (l.GetName() == want[i] && l.GetValue() == want[i+1])
		}
		if !found {
			return false
		}
	}
	return true
}

func exitCodeOf(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestControlEndpointsFollowReads(t *testing.T) {
	const token = "hf_control_plane_secret_1234"
	hub := newHub(t, hubemu.Options{Token: token})
	origin := llmRepo(t, hub, 12<<20, 2)
	addr := freeAddr(t)
	m := mustMount(t, hub, mountOpts{config: llmConfig, env: []string{"TRUSS_SECRET_hf_access_token=" + token},
		args: []string{"--prefetch=false", "--control-addr", addr}})

	if code, body := controlGet(t, addr, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	st := controlStatus(t, addr, 5*time.Second, nil)
	if code, _ := controlGet(t, addr, "/readyz"); code != 200 {
		t.Errorf("/readyz after the listing: %d", code)
	}
	sizes := treeSizes(t, origin)
	var total, biggest int64
	var big string
	for p, n := range sizes {
		total += n
		if n > biggest {
			big, biggest = p, n
		}
	}
	if len(st.Volumes) != 1 {
		t.Fatalf("%d volumes", len(st.Volumes))
	}
	v := st.Volumes[0]
	if v.Folder != "llm" || v.Repo != "acme/llm" || v.Kind != "hf" || v.Revision != "main" || v.Commit != commitA {
		t.Errorf("volume identity: %s %s %s %s %s", v.Folder, v.Repo, v.Kind, v.Revision, v.Commit)
	}
	if v.Files != len(sizes) || v.TotalBytes != total || v.CachedBytes != 0 || st.Prefetch.Enabled || st.Prefetch.Complete {
		t.Errorf("before reads: files %d (want %d), bytes %d/%d (want 0/%d), prefetch %+v", v.Files, len(sizes), v.CachedBytes, v.TotalBytes, total, st.Prefetch)
	}
	if n := metricValue(t, addr, "weightfs_fetched_bytes_total", "origin", "hf:acme/llm"); n != 0 {
		t.Errorf("fetched %v bytes before any read", n)
	}

	if _, err := modelgen.SHA256File(m.path("llm", big)); err != nil {
		t.Fatal(err)
	}
	st = controlStatus(t, addr, 15*time.Second, func(st *control.Status) bool {
		for _, f := range st.Volumes[0].FileList {
			if f.Path == big {
				return f.State == "verified"
			}
		}
		return false
	})
	for _, f := range st.Volumes[0].FileList {
		if f.Path == big && (f.CachedBytes != biggest || !f.Verified || f.Error != "") {
			t.Errorf("%s after a full read: %+v", big, f)
		}
	}
	if st.Totals.CachedBytes < biggest || st.Totals.VerifiedFiles < 1 {
		t.Errorf("totals after reading %s (%d bytes): %+v", big, biggest, st.Totals)
	}
	for _, c := range []struct {
		name    string
		labels  []string
		atLeast float64
	}{
		{"weightfs_fetched_bytes_total", []string{"origin", "hf:acme/llm"}, float64(biggest)},
		{"weightfs_cache_misses_total", nil, 1},
		{"weightfs_reader_wait_seconds", nil, 1}, // observations
		{"weightfs_read_duration_seconds", nil, float64(biggest >> 20)},
		{"weightfs_files_verified", nil, 1},
		{"weightfs_prefetch_bytes_cached", nil, float64(biggest)},
		{"weightfs_prefetch_bytes_total", nil, float64(total)},
	} {
		if got := metricValue(t, addr, c.name, c.labels...); got < c.atLeast {
			t.Errorf("%s%v = %v, want >= %v", c.name, c.labels, got, c.atLeast)
		}
	}
	// Every chunk read is a hit or a miss; readers that join a fetch in
	// flight count as misses, so hits alone may still be zero here.
	chunks := float64((biggest + 8<<20 - 1) / (8 << 20))
	if got := metricValue(t, addr, "weightfs_cache_hits_total") + metricValue(t, addr, "weightfs_cache_misses_total"); got < chunks {
		t.Errorf("hits+misses = %v, want >= %v (chunks of %s)", got, chunks, big)
	}
	if got := metricValue(t, addr, "weightfs_verification_failures_total"); got != 0 {
		t.Errorf("verification failures %v on clean content", got)
	}
	for _, p := range []string{"/status", "/metrics"} {
		if _, body := controlGet(t, addr, p); strings.Contains(body, token) {
			t.Errorf("the token appears in %s", p)
		}
	}

	out, err := runWeightfs(t, nil, "status", "--control-addr", addr)
	if err != nil {
		t.Fatalf("weightfs status: %v\n%s", err, out)
	}
	t.Logf("weightfs status:\n%s", out)
	for _, w := range []string{"VOLUME", "llm", "hf:acme/llm@" + commitA[:12], "prefetch off"} {
		if !strings.Contains(out, w) {
			t.Errorf("weightfs status lacks %q:\n%s", w, out)
		}
	}
	out, err = runWeightfs(t, nil, "status", "--json", "--control-addr", addr)
	var js control.Status
	if err != nil || json.Unmarshal([]byte(out), &js) != nil || js.Totals.Files != len(sizes) {
		t.Errorf("weightfs status --json: %v\n%s", err, out)
	}
}

func TestWaitReturnsOnlyOnceEveryFileIsVerified(t *testing.T) {
	// Paced so that prefetch takes a while: wait must outlast it.
	hub := newHub(t, hubemu.Options{AggregateBytesPerSec: 8 << 20})
	origin := llmRepo(t, hub, 12<<20, 2)
	addr := "unix:" + filepath.Join(t.TempDir(), "control.sock")
	mustMount(t, hub, mountOpts{config: llmConfig, args: []string{"--control-addr", addr}})
	start := time.Now()
	out, err := runWeightfs(t, nil, "wait", "--control-addr", addr, "--timeout", "40s", "--poll", "100ms")
	if err != nil {
		t.Fatalf("wait: %v\n%s", err, out)
	}
	if !strings.Contains(out, "cached and verified") {
		t.Errorf("wait output: %s", out)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("wait returned after %s; 12 MiB at 8 MiB/s cannot be cached that fast", d)
	}
	st, _, err := control.NewClient(addr).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sizes := treeSizes(t, origin)
	if !st.Prefetch.Complete || st.Totals.VerifiedFiles != len(sizes) || st.Totals.CachedBytes != st.Totals.TotalBytes {
		t.Fatalf("after wait: %+v", st.Totals)
	}
	for _, f := range st.Volumes[0].FileList {
		if f.State != "verified" {
			t.Errorf("after wait: %s is %s", f.Path, f.State)
		}
	}
}

func TestWaitTimesOutNamingWhatIsLeftWhenTheOriginStalls(t *testing.T) {
	hub := newHub(t, hubemu.Options{})
	llmRepo(t, hub, 4<<20, 1)
	hub.SetFault("acme/llm", "model.safetensors", hubemu.Fault{Stall: time.Hour})
	addr := freeAddr(t)
	mustMount(t, hub, mountOpts{config: llmConfig,
		args: []string{"--control-addr", addr, "--fetch-timeout", "1s", "--fetch-retries", "1"}})
	start := time.Now()
	out, err := runWeightfs(t, nil, "wait", "--control-addr", addr, "--timeout", "2s", "--progress-every", "500ms")
	t.Logf("weightfs wait:\n%s", out)
	if code := exitCodeOf(err); code != 1 {
		t.Fatalf("wait exit %d, want 1:\n%s", code, out)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("wait --timeout 2s took %s", d)
	}
	for _, w := range []string{"timed out after 2s", "cached", "1 of", "files left", "llm/model.safetensors"} {
		if !strings.Contains(out, w) {
			t.Errorf("wait output lacks %q:\n%s", w, out)
		}
	}
	if strings.Count(strings.TrimSpace(out), "\n") < 2 {
		t.Errorf("no progress lines every 500ms:\n%s", out)
	}
}

func TestWaitExitsTwoNamingTheCorruptFile(t *testing.T) {
	hub := newHub(t, hubemu.Options{})
	llmRepo(t, hub, 4<<20, 1)
	hub.SetFault("acme/llm", "model.safetensors", hubemu.Fault{Corrupt: true})
	addr := freeAddr(t)
	mustMount(t, hub, mountOpts{config: llmConfig, args: []string{"--control-addr", addr}})
	out, err := runWeightfs(t, nil, "wait", "--control-addr", addr, "--timeout", "40s")
	t.Logf("weightfs wait:\n%s", out)
	if code := exitCodeOf(err); code != 2 {
		t.Fatalf("wait exit %d, want 2:\n%s", code, out)
	}
	for _, w := range []string{"failed verification", "llm/model.safetensors"} {
		if !strings.Contains(out, w) {
			t.Errorf("wait output lacks %q:\n%s", w, out)
		}
	}
	st := controlStatus(t, addr, time.Second, nil)
	if st.Totals.FailedFiles != 1 {
		t.Errorf("failed files %d, want 1", st.Totals.FailedFiles)
	}
	for _, f := range st.Volumes[0].FileList {
		if f.Path == "model.safetensors" && (f.State != "bad" || !strings.Contains(f.Error, "mismatch")) {
			t.Errorf("corrupt file status: %+v", f)
		}
	}
	if n := metricValue(t, addr, "weightfs_verification_failures_total"); n != 2 {
		t.Errorf("verification failures %v, want 2 (the first, then the refetch)", n)
	}
}

func TestControlAddrThatIsTaken(t *testing.T) {
	t.Run("asked for: a clear error", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		_, err = startMount(t, nil, mountOpts{config: llmConfig, args: []string{"--control-addr", l.Addr().String()}})
		if err == nil {
			t.Fatal("mount started on a taken --control-addr")
		}
		for _, w := range []string{"control address " + l.Addr().String(), "address already in use", "--control-addr"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error lacks %q: %v", w, err)
			}
		}
	})
	t.Run("default: a warning, and the mount serves", func(t *testing.T) {
		// Hold the default port; if another process already holds it, the
		// daemon finds it taken all the same.
		if l, err := net.Listen("tcp", control.DefaultAddr); err == nil {
			defer l.Close()
		}
		hub := newHub(t, hubemu.Options{})
		llmRepo(t, hub, 1<<20, 1)
		m := mustMount(t, hub, mountOpts{config: llmConfig, args: []string{"--prefetch=false"}})
		if _, err := modelgen.SHA256File(m.path("llm", "config.json")); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(m.stderr.String(), "control endpoint disabled") {
			t.Errorf("no warning about the taken default port:\n%s", m.stderr.String())
		}
	})
}
