package integration

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weightfs/weightfs/integration/hubemu"
	"github.com/weightfs/weightfs/integration/modelgen"
)

// fetchRun is one `weightfs fetch` invocation's folders and flags.
type fetchRun struct {
	config, dest, cache string
	env                 []string
	args                []string
}

func newFetchRun(t *testing.T, hub *hubemu.Server, yaml string, args ...string) *fetchRun {
	t.Helper()
	return &fetchRun{config: writeConfig(t, yaml), dest: t.TempDir(), cache: t.TempDir(),
		env:  []string{"HF_ENDPOINT=" + hub.URL(), "HF_TOKEN=", "HUGGING_FACE_HUB_TOKEN="},
		args: append([]string{"--chunk-mb", "1", "--workers", "16"}, args...)}
}

func (r *fetchRun) argv() []string {
	return append([]string{"fetch", "--config", r.config, "--dest", r.dest, "--cache-dir", r.cache,
		"--secrets-dir", "/nonexistent-secrets"}, r.args...)
}

// run runs the fetch to completion.
func (r *fetchRun) run(t *testing.T) (string, error) {
	t.Helper()
	return runWeightfs(t, r.env, r.argv()...)
}

// start runs the fetch in the background, its output going to a file.
func (r *fetchRun) start(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	log := filepath.Join(t.TempDir(), "fetch.log")
	out, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(weightfsBin, r.argv()...)
	cmd.Env = append(os.Environ(), r.env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, log
}

// assertSameFiles checks every origin file under dir by sha256, and that
// nothing else is there but weightfs's ledger.
func assertSameFiles(t *testing.T, origin, dir string) {
	t.Helper()
	want := treeSums(t, origin)
	got := treeSums(t, dir)
	for p, sum := range want {
		if got[p] != sum {
			t.Errorf("%s: sha256 %q after fetch, %q at the origin", p, got[p], sum)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("unexpected file %s after fetch", p)
		}
	}
}

func TestFetchVolumeThenRerunIsANoOp(t *testing.T) {
	hub := newHub(t, hubemu.Options{})
	origin := llmRepo(t, hub, 24<<20, 3)
	r := newFetchRun(t, hub, llmConfig)
	if out, err := r.run(t); err != nil {
		t.Fatalf("fetch: %v\n%s", err, out)
	}
	assertSameFiles(t, origin, filepath.Join(r.dest, "llm"))
	if _, err := os.Stat(filepath.Join(r.dest, ".weightfs", "verified.json")); err != nil {
		t.Fatalf("no ledger: %v", err)
	}

	// Same cache dir: no listing, no content. A fresh cache dir lists again
	// but the ledger in dest still spares every byte.
	before := hub.ContentRequests()
	if out, err := r.run(t); err != nil {
		t.Fatalf("re-run: %v\n%s", err, out)
	}
	r.cache = t.TempDir()
	if out, err := r.run(t); err != nil {
		t.Fatalf("re-run with a fresh cache dir: %v\n%s", err, out)
	}
	if n := hub.ContentRequests() - before; n != 0 {
		t.Fatalf("re-runs made %d content requests, want 0", n)
	}

	// Without the ledger the files are hashed, accepted, and still not fetched.
	os.RemoveAll(filepath.Join(r.dest, ".weightfs"))
	if out, err := r.run(t); err != nil {
		t.Fatalf("re-run without ledger: %v\n%s", err, out)
	}
	if n := hub.ContentRequests() - before; n != 0 {
		t.Fatalf("re-run without ledger made %d content requests, want 0", n)
	}
	assertSameFiles(t, origin, filepath.Join(r.dest, "llm"))
}

func TestFetchResumesAfterInterruptAndKill(t *testing.T) {
	// 4 streams of 2 MiB/s: a 24 MiB model takes ~3 s, long enough to
	// interrupt twice. At most workers × chunk = 4 MiB is in flight when a
	// run is stopped, so of the bytes served to a run, all but 4 MiB were
	// written and recorded.
	const inFlight = 4 << 20
	hub := newHub(t, hubemu.Options{PerConnBytesPerSec: 2 << 20})
	origin := llmRepo(t, hub, 24<<20, 3)
	var total int64
	for _, n := range treeSizes(t, origin) {
		total += n
	}
	r := newFetchRun(t, hub, llmConfig)
	r.args = []string{"--chunk-mb", "1", "--workers", "4", "--progress-interval", "250ms"}

	serve := func(log string, n int64) {
		t.Helper()
		target := hub.BytesServed() + n
		deadline := time.Now().Add(20 * time.Second)
		for hub.BytesServed() < target {
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(log)
				t.Fatalf("only %d bytes served after 20s:\n%s", hub.BytesServed(), b)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// SIGTERM: exits 130, says how to resume, keeps what it has.
	cmd, log := r.start(t)
	serve(log, inFlight+3<<20)
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	out, _ := os.ReadFile(log)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(string(out), "run again to resume") {
		t.Fatalf("after SIGTERM: %v, want exit 130 and a resume hint:\n%s", err, out)
	}
	assertOnlyVerifiedUnderFinalNames(t, origin, filepath.Join(r.dest, "llm"))

	// SIGKILL: nothing gets to clean up or save at exit.
	cmd, log = r.start(t)
	serve(log, inFlight+3<<20)
	cmd.Process.Kill()
	second, _ := os.ReadFile(log)
	cmd.Wait()
	assertOnlyVerifiedUnderFinalNames(t, origin, filepath.Join(r.dest, "llm"))

	before := hub.BytesServed()
	out3, err := r.run(t)
	if err != nil {
		t.Fatalf("resumed fetch: %v\n%s", err, out3)
	}
	// A SIGTERM lets the ranges in flight finish, which may complete the
	// file they were in: then the run after the SIGKILL is the one that
	// finds a partial file.
	if !strings.Contains(string(second)+out3, "resuming a partial file") {
		t.Errorf("no later run resumed a partial file:\n%s\n%s", second, out3)
	}
	assertSameFiles(t, origin, filepath.Join(r.dest, "llm"))
	last := hub.BytesServed() - before
	t.Logf("model %d bytes; the stopped runs were served %d, the last run %d", total, before, last)
	if last <= 0 || last > total-6<<20 {
		t.Fatalf("the last run was served %d of %d bytes, want at most %d: the stopped runs' ranges were not reused",
			last, total, total-6<<20)
	}
}

// assertOnlyVerifiedUnderFinalNames: whatever is under an origin file's
// name has that file's bytes; a partial file is only ever a .part.
func assertOnlyVerifiedUnderFinalNames(t *testing.T, origin, dir string) {
	t.Helper()
	for p, sum := range treeSums(t, origin) {
		got, err := modelgen.SHA256File(filepath.Join(dir, p))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil || got != sum {
			t.Errorf("%s is under its final name with sha256 %s (%v), want %s", p, got, err, sum)
		}
	}
}

func TestFetchCorruptOriginFailsNamingTheFile(t *testing.T) {
	hub := newHub(t, hubemu.Options{})
	origin := llmRepo(t, hub, 24<<20, 3)
	const bad = "model-00002-of-00003.safetensors"
	if _, err := os.Stat(filepath.Join(origin, bad)); err != nil {
		t.Fatalf("modelgen layout changed: %v", err)
	}
	hub.SetFault("acme/llm", bad, hubemu.Fault{Corrupt: true})
	r := newFetchRun(t, hub, llmConfig)
	out, err := r.run(t)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("want a non-zero exit, got %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "weightfs: 1 of ") || !strings.Contains(last, bad+": sha256 mismatch (want ") {
		t.Fatalf("last line %q, want the one-line reason naming %s", last, bad)
	}
	dir := filepath.Join(r.dest, "llm")
	for _, p := range []string{bad, bad + ".part"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s exists after a mismatch", p)
		}
	}
	assertOnlyVerifiedUnderFinalNames(t, origin, dir)
	if _, err := os.Stat(filepath.Join(dir, "model-00001-of-00003.safetensors")); err != nil {
		t.Errorf("the good files should be in place: %v", err)
	}
}

func TestFetchHuggingFaceCacheLayout(t *testing.T) {
	hub := newHub(t, hubemu.Options{})
	origin := t.TempDir()
	if _, err := modelgen.Generate(origin, modelgen.Spec{Layout: "diffusers", TotalSize: 6 << 20, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	if err := hub.AddRepo(hubemu.Repo{ID: "acme/sd", Dir: origin, Commit: commitA}); err != nil {
		t.Fatal(err)
	}
	hfHome := t.TempDir()
	r := newFetchRun(t, hub, `
model_cache:
  - repo_id: acme/sd
    revision: main
    use_volume: false
`)
	r.env = append(r.env, "HF_HUB_CACHE=", "HUGGINGFACE_HUB_CACHE=", "HF_HOME="+hfHome)
	if out, err := r.run(t); err != nil {
		t.Fatalf("fetch: %v\n%s", err, out)
	}
	repoDir := filepath.Join(hfHome, "hub", "models--acme--sd")
	if ref, err := os.ReadFile(filepath.Join(repoDir, "refs", "main")); err != nil || string(ref) != commitA {
		t.Fatalf("refs/main = %q, %v; want %s", ref, err, commitA)
	}
	etags := map[string]bool{}
	deep := 0
	for p, sum := range treeSums(t, origin) {
		content, err := os.ReadFile(filepath.Join(origin, p))
		if err != nil {
			t.Fatal(err)
		}
		etag := sum // LFS: the content's sha256
		if !hubemu.IsLFS(p, int64(len(content))) {
			h := sha1.New()
			fmt.Fprintf(h, "blob %d\x00", len(content))
			h.Write(content)
			etag = hex.EncodeToString(h.Sum(nil))
		}
		etags[etag] = true
		if got, err := modelgen.SHA256File(filepath.Join(repoDir, "blobs", etag)); err != nil || got != sum {
			t.Errorf("%s: blobs/%s has sha256 %s (%v), want %s", p, etag, got, err, sum)
		}
		link := filepath.Join(repoDir, "snapshots", commitA, filepath.FromSlash(p))
		target, err := os.Readlink(link)
		if err != nil {
			t.Errorf("%s: snapshot entry is not a symlink: %v", p, err)
			continue
		}
		depth := strings.Count(p, "/")
		if depth > 0 {
			deep++
		}
		if want := strings.Repeat("../", depth+2) + "blobs/" + etag; target != want {
			t.Errorf("%s: link target %q, want %q", p, target, want)
		}
		if got, err := modelgen.SHA256File(link); err != nil || got != sum {
			t.Errorf("%s: snapshot resolves to sha256 %s (%v), want %s", p, got, err, sum)
		}
	}
	if deep == 0 {
		t.Fatal("the diffusers model has no file in a subfolder: the depth math went untested")
	}
	blobs, _ := os.ReadDir(filepath.Join(repoDir, "blobs"))
	for _, b := range blobs {
		if !etags[b.Name()] {
			t.Errorf("unexpected entry blobs/%s", b.Name())
		}
	}
	if len(blobs) != len(etags) {
		t.Errorf("%d blobs, want %d", len(blobs), len(etags))
	}

	before := hub.ContentRequests()
	if out, err := r.run(t); err != nil {
		t.Fatalf("re-run: %v\n%s", err, out)
	}
	if n := hub.ContentRequests() - before; n != 0 {
		t.Fatalf("re-run made %d content requests, want 0", n)
	}
}

// TestFetchSpeedAgainstAThrottledOrigin checks the parallel downloader
// reaches the origin's aggregate limit when each connection is capped far
// below it, as a CDN does.
func TestFetchSpeedAgainstAThrottledOrigin(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	const perConn, aggregate = 4 << 20, 64 << 20
	hub := newHub(t, hubemu.Options{PerConnBytesPerSec: perConn, AggregateBytesPerSec: aggregate})
	origin := llmRepo(t, hub, 256<<20, 4)
	var total int64
	for _, n := range treeSizes(t, origin) {
		total += n
	}
	r := newFetchRun(t, hub, llmConfig)
	r.args = []string{"--chunk-mb", "2", "--workers", "64"}
	start := time.Now()
	out, err := r.run(t)
	if err != nil {
		t.Fatalf("fetch: %v\n%s", err, out)
	}
	el := time.Since(start)
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "fetch complete") {
			t.Log(line)
		}
	}
	rate := float64(total) / el.Seconds()
	t.Logf("%d MiB in %s: %.1f MiB/s; origin limits: %d MiB/s per connection, %d MiB/s in all",
		total>>20, el.Round(time.Millisecond), rate/(1<<20), perConn>>20, aggregate>>20)
	// Lenient: this machine may be shared. At 64 ranges in flight the
	// downloader reaches ~97% of the limit when the CPU is free.
	if rate < 0.5*aggregate {
		t.Errorf("%.1f MiB/s is below half the origin's %d MiB/s", rate/(1<<20), aggregate>>20)
	}
}
