package integration

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weightfs/weightfs/cmd/weightfs/control"
	"github.com/weightfs/weightfs/integration/hubemu"
	"github.com/weightfs/weightfs/integration/modelgen"
	"github.com/weightfs/weightfs/internal/diskspace"
)

// A listing is the origin's word, and the origin is not ours. These tests
// mount against a Hub whose tree API lies (hubemu.ListingOverride) or whose
// names are hostile, and check that the daemon refuses what it cannot serve,
// says so clearly, and serves the rest.

// hostileRepo serves a small sharded model (plus extra files, path ->
// content) as acme/llm through a ListingOverride; it returns the origin dir
// and the override to set.
func hostileRepo(t *testing.T, extra map[string]string) (*hubemu.Server, string, *hubemu.ListingOverride) {
	t.Helper()
	o := &hubemu.ListingOverride{}
	hub := newHub(t, hubemu.Options{Wrap: o.Wrap})
	dir := t.TempDir()
	if _, err := modelgen.Generate(dir, modelgen.Spec{TotalSize: 6 << 20, Shards: 3, Seed: 10}); err != nil {
		t.Fatal(err)
	}
	for p, b := range extra {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := hub.AddRepo(hubemu.Repo{ID: "acme/llm", Dir: dir, Commit: commitA}); err != nil {
		t.Fatal(err)
	}
	return hub, dir, o
}

// assertServedExcept checks every origin file but the skipped ones by
// sha256 through the mount, and that the skipped ones are absent.
func assertServedExcept(t *testing.T, m *mount, origin string, skip ...string) {
	t.Helper()
	want := treeSums(t, origin)
	for _, s := range skip {
		delete(want, s)
		if _, err := os.Lstat(m.path("llm", s)); err == nil {
			t.Errorf("refused file %q is in the mount", s)
		}
	}
	got := treeSums(t, m.path("llm"))
	if len(got) != len(want) {
		t.Errorf("mount has %d files, want %d: %v", len(got), len(want), got)
	}
	for p, sum := range want {
		if got[p] != sum {
			t.Errorf("%q: sha256 %s through the mount, %s at the origin", p, got[p], sum)
		}
	}
}

func lsRun(t *testing.T, hub *hubemu.Server, cacheDir string) string {
	t.Helper()
	// stdout and stderr apart: the log lines would otherwise land inside
	// the table's rows, as the two streams interleave.
	cmd := exec.Command(weightfsBin, "ls", "--config", writeConfig(t, llmConfig), "--cache-dir", cacheDir, "--secrets-dir", filepath.Join(t.TempDir(), "none"))
	cmd.Env = append(os.Environ(), "HF_ENDPOINT="+hub.URL(), "HF_TOKEN=", "HUGGING_FACE_HUB_TOKEN=")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("weightfs ls: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	return stdout.String() + "\n" + stderr.String()
}

var (
	lsTotal = regexp.MustCompile(`(?m)^# .* files=(\d+) size=(-?\d+) `)
	lsFile  = regexp.MustCompile(`(?m)^ *(-?\d+) +(\S+) +(\S+)$`)
)

// lsFiles is the size column of `weightfs ls` output by (printed) name.
func lsFiles(out string) map[string]string {
	files := map[string]string{}
	for _, m := range lsFile.FindAllStringSubmatch(out, -1) {
		files[m[2]] = m[1]
	}
	return files
}

// Fails before this change: a size of 2^60 ended the daemon in "fatal
// error: out of memory" and 2^63-1 in "panic: makeslice", each leaving a
// dead mount; `weightfs ls` printed a negative total.
func TestHostileSizesAreRefusedAndTheRestServed(t *testing.T) {
	hub, origin, o := hostileRepo(t, nil)
	shards := []string{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors"}
	o.Set("acme/llm", hubemu.Listing{Sizes: map[string]int64{shards[0]: 1 << 60, shards[1]: math.MaxInt64}})
	m := mustMount(t, hub, mountOpts{config: llmConfig})
	assertServedExcept(t, m, origin, shards...)
	log := m.stderr.String()
	for _, want := range []string{
		`level=ERROR msg="refusing a listed file; the entry's other files are served" entry="model_cache[0] (acme/llm)" file=` + shards[0] + ` reason="listed size 1152921504606846976 is impossible`,
		`file=` + shards[1] + ` reason="listed size 9223372036854775807 is impossible`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks\n%s\ngot:\n%s", want, log)
		}
	}
	for _, bad := range []string{"panic", "fatal error", "goroutine "} {
		if strings.Contains(log, bad) {
			t.Errorf("log holds %q:\n%s", bad, log)
		}
	}
	select {
	case <-m.exited:
		t.Fatalf("the daemon exited:\n%s", log)
	default:
	}

	// ls, listing afresh and then from its saved manifest: a total that is
	// the sum of the served files, never negative.
	cache := t.TempDir()
	for _, run := range []string{"listed", "saved"} {
		out := lsRun(t, hub, cache)
		mt := lsTotal.FindStringSubmatch(out)
		if mt == nil {
			t.Fatalf("%s: no total line in ls output:\n%s", run, out)
		}
		var sum int64
		for p, n := range treeSizes(t, origin) {
			if p != shards[0] && p != shards[1] {
				sum += n
			}
		}
		if mt[2] != strconv.FormatInt(sum, 10) {
			t.Errorf("%s: ls total %s, want %d (the served files):\n%s", run, mt[2], sum, out)
		}
		files := lsFiles(out)
		if _, listed := files[shards[0]]; listed || len(files) != len(treeSizes(t, origin))-2 || strings.Count(out, "is impossible") != 2 {
			t.Errorf("%s: ls should list the %d served files only, and name each refused one once:\n%s", run, len(treeSizes(t, origin))-2, out)
		}
	}
}

// Fails before this change: "d" was mounted as a file and "d/real.txt"
// under it was invisible (ENOTDIR), while /status called it verified.
func TestFileDirectoryCollisionIsRefusedAndTheDirectoryServed(t *testing.T) {
	hub, origin, o := hostileRepo(t, map[string]string{"d/real.txt": "the real one\n"})
	o.Set("acme/llm", hubemu.Listing{Extra: []hubemu.ExtraFile{{Path: "d", Size: 5}}})
	addr := freeAddr(t)
	m := mustMount(t, hub, mountOpts{config: llmConfig, args: []string{"--control-addr", addr}})
	if b, err := os.ReadFile(m.path("llm", "d", "real.txt")); err != nil || string(b) != "the real one\n" {
		t.Fatalf("d/real.txt: %q, %v", b, err)
	}
	if fi, err := os.Stat(m.path("llm", "d")); err != nil || !fi.IsDir() {
		t.Fatalf("d: %v, %v; want a directory", fi, err)
	}
	assertServedExcept(t, m, origin)
	want := `file=d reason="the listing also has files under it (such as \"d/real.txt\"), so it must be a directory; the directory is served, this file is not"`
	if !strings.Contains(m.stderr.String(), want) {
		t.Errorf("log lacks\n%s\ngot:\n%s", want, m.stderr.String())
	}
	st := controlStatus(t, addr, 30*time.Second, func(st *control.Status) bool { return st.Prefetch.Complete })
	for _, f := range st.Volumes[0].FileList {
		if f.Path == "d" {
			t.Errorf("/status lists the refused file d: %+v", f)
		}
	}
	if st.Totals.Files != len(treeSizes(t, origin)) {
		t.Errorf("/status counts %d files, want %d", st.Totals.Files, len(treeSizes(t, origin)))
	}
}

// Fails before this change: `weightfs ls` printed the name raw, so its ESC
// sequence reached the terminal and its newline forged a line of output.
func TestControlCharactersInNamesAreEscaped(t *testing.T) {
	evil := "evil\n\x1b[31mred.txt"
	hub, origin, _ := hostileRepo(t, map[string]string{evil: "still served\n"})
	out := lsRun(t, hub, t.TempDir())
	if strings.ContainsAny(out, "\x1b") {
		t.Fatalf("raw ESC in ls output: %q", out)
	}
	if _, ok := lsFiles(out)[`"evil\n\x1b[31mred.txt"`]; !ok {
		t.Errorf("ls output lacks the quoted name:\n%s", out)
	}
	// The name is legal on Linux: it is served, byte for byte.
	m := mustMount(t, hub, mountOpts{config: llmConfig})
	if b, err := os.ReadFile(m.path("llm", evil)); err != nil || string(b) != "still served\n" {
		t.Fatalf("%q: %q, %v", evil, b, err)
	}
	assertServedExcept(t, m, origin)
}

// Fails before this change: the daemon mounted over the file and left a
// mount no reader could use.
func TestMountpointThatIsARegularFileIsRefused(t *testing.T) {
	hub, _, _ := hostileRepo(t, nil)
	mp := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(mp, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // what the old code left behind
		if isMounted(t, mp) {
			syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	})
	_, err := startMount(t, hub, mountOpts{config: llmConfig, mountDir: mp})
	if err == nil {
		t.Fatal("mount succeeded on a regular file")
	}
	want := "mountpoint " + mp + " is a regular file, not a directory: pass a directory as --mountpoint"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error lacks %q:\n%v", want, err)
	}
	if isMounted(t, mp) {
		t.Error("a mount was left on the file")
	}
	if b, _ := os.ReadFile(mp); string(b) != "keep me" {
		t.Errorf("the file now reads %q", b)
	}
}

// Fails before this change: mount prefetched a file bigger than the cache
// disk without a word, until writes failed.
func TestModelBiggerThanTheCacheDiskStreamsWithoutCaching(t *testing.T) {
	hub, origin, o := hostileRepo(t, nil)
	cache := t.TempDir()
	free, _, ok := diskspace.Free(cache)
	if !ok {
		t.Skip("free space unknown here")
	}
	big := int64(1 << 40) // 1 TiB
	if free >= big {
		t.Skipf("the cache disk has %d bytes free: a 1 TiB file fits", free)
	}
	shard := "model-00003-of-00003.safetensors"
	o.Set("acme/llm", hubemu.Listing{Sizes: map[string]int64{shard: big}})
	addr := freeAddr(t)
	m := mustMount(t, hub, mountOpts{config: llmConfig, cacheDir: cache, args: []string{"--control-addr", addr}})
	// The other files stream from the origin, right.
	want := treeSums(t, origin)
	delete(want, shard)
	for p, sum := range want {
		if got, err := modelgen.SHA256File(m.path("llm", p)); err != nil || got != sum {
			t.Errorf("%q: sha256 %s (%v), want %s", p, got, err, sum)
		}
	}
	log := m.stderr.String()
	for _, w := range []string{
		`level=ERROR msg="the model does not fit in the cache dir: not caching and not prefetching; every read is fetched from the origin" cache_dir=` + cache,
		`needed="1.0 TiB"`, "free=", "--cache-dir on a bigger disk",
	} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q:\n%s", w, log)
		}
	}
	st := controlStatus(t, addr, 10*time.Second, nil)
	if st.Prefetch.Enabled {
		t.Error("/status says the prefetch runs")
	}
	for _, f := range st.Volumes[0].FileList {
		if f.Path == shard && !strings.Contains(f.Error, "not caching: the cache dir") {
			t.Errorf("/status of %s does not say why nothing is cached: %+v", shard, f)
		}
	}
	select {
	case <-m.exited:
		t.Fatalf("the daemon exited:\n%s", log)
	default:
	}
}
