package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weightfs/weightfs/integration/hubemu"
	"github.com/weightfs/weightfs/integration/modelgen"
)

const commitA = "0123456789abcdef0123456789abcdef01234567"

// llmRepo generates a small sharded model and serves it as acme/llm.
func llmRepo(t *testing.T, hub *hubemu.Server, size int64, shards int) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := modelgen.Generate(dir, modelgen.Spec{TotalSize: size, Shards: shards, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := hub.AddRepo(hubemu.Repo{ID: "acme/llm", Dir: dir, Commit: commitA}); err != nil {
		t.Fatal(err)
	}
	return dir
}

const llmConfig = `
model_cache:
  - repo_id: acme/llm
    revision: main
    use_volume: true
    volume_folder: llm
`

func TestListingIsServedBeforeAnyContentFetch(t *testing.T) {
	hub := newHub(t, hubemu.Options{PageSize: 3}) // forces tree pagination
	origin := llmRepo(t, hub, 24<<20, 3)
	// Prefetch off: with it on, streaming starts right after the mount.
	m := mustMount(t, hub, mountOpts{config: llmConfig, args: []string{"--prefetch=false"}})
	got := treeSizes(t, m.path("llm"))
	want := treeSizes(t, origin)
	if len(got) != len(want) {
		t.Fatalf("listing has %d files, origin %d", len(got), len(want))
	}
	for p, n := range want {
		if got[p] != n {
			t.Errorf("%s: size %d through the mount, %d at the origin", p, got[p], n)
		}
	}
	if n := hub.ContentRequests(); n != 0 {
		t.Fatalf("listing and stat made %d content requests, want 0", n)
	}
	info, err := os.Stat(m.path("llm", "config.json"))
	if err != nil || info.Mode().Perm() != 0o444 || info.ModTime().IsZero() {
		t.Fatalf("config.json stat: %v %v", info, err)
	}
	if _, err := os.ReadFile(m.path("llm", "config.json")); err != nil {
		t.Fatal(err)
	}
	if hub.ContentRequests() == 0 {
		t.Fatal("a read made no content request")
	}
}

// readModes read a whole file through the mount in different ways.
var readModes = []struct {
	name string
	read func(p string, size int64) ([]byte, error)
}{
	{"sequential", func(p string, _ int64) ([]byte, error) { return os.ReadFile(p) }},
	{"random offsets", readRandomOrder},
	{"mmap", readMmap},
}

func readRandomOrder(p string, size int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := make([]byte, size)
	const piece = 300 << 10 // not chunk aligned on purpose
	var offs []int64
	for o := int64(0); o < size; o += piece {
		offs = append(offs, o)
	}
	r := rand.New(rand.NewPCG(9, 9))
	r.Shuffle(len(offs), func(i, j int) { offs[i], offs[j] = offs[j], offs[i] })
	for _, o := range offs {
		end := min(o+piece, size)
		if _, err := f.ReadAt(out[o:end], o); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
	}
	return out, nil
}

// readMmap reads a file through mmap page faults in a child process. Why
// not here: the emulated origin runs inside this test process, and a
// goroutine stuck in a page fault on the mount cannot reach a GC safe point,
// so a stop-the-world would freeze the origin the fault is waiting for.
func readMmap(p string, size int64) ([]byte, error) {
	if size == 0 {
		return os.ReadFile(p)
	}
	return readMmapThreads(p, size, 1)
}

// readMmapThreads is readMmap with the page faults spread over threads
// goroutines taking 1 MiB blocks in turn, the way a 4-thread loader faults.
func readMmapThreads(p string, size int64, threads int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mmapChildEnv+"="+p, fmt.Sprintf("%s=%d", mmapThreadsEnv, threads))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // as the daemon's (startMount)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("mmap reader: %v: %s", err, stderr.String())
	}
	if int64(len(b)) != size {
		return nil, fmt.Errorf("mmap reader returned %d bytes, want %d", len(b), size)
	}
	return b, nil
}

// mmapChildEnv names the file a child test process maps and copies to
// stdout; mmapThreadsEnv says how many goroutines fault its pages.
const (
	mmapChildEnv   = "WEIGHTFS_TEST_MMAP_CHILD"
	mmapThreadsEnv = "WEIGHTFS_TEST_MMAP_THREADS"
)

// mmapChild is the child side of readMmap: map, fault every page, write.
func mmapChild(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(info.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return err
	}
	defer syscall.Munmap(b)
	threads, _ := strconv.Atoi(os.Getenv(mmapThreadsEnv))
	out := make([]byte, len(b))
	var wg sync.WaitGroup
	const block = 1 << 20
	for t := 0; t < max(threads, 1); t++ {
		wg.Add(1)
		go func(t int) {
			defer wg.Done()
			for off := t * block; off < len(b); off += max(threads, 1) * block {
				copy(out[off:min(off+block, len(b))], b[off:])
			}
		}(t)
	}
	wg.Wait()
	_, err = os.Stdout.Write(out)
	return err
}

func TestEveryFileMatchesOriginBySHA256(t *testing.T) {
	for _, mode := range readModes {
		t.Run(mode.name, func(t *testing.T) {
			hub := newHub(t, hubemu.Options{})
			origin := llmRepo(t, hub, 40<<20, 2)
			m := mustMount(t, hub, mountOpts{config: llmConfig})
			want := treeSums(t, origin)
			for rel, sum := range want {
				info, err := os.Stat(filepath.Join(origin, rel))
				if err != nil {
					t.Fatal(err)
				}
				b, err := mode.read(m.path("llm", rel), info.Size())
				if err != nil {
					t.Fatalf("%s: %v", rel, err)
				}
				if got := sha256Hex(b); got != sum {
					t.Errorf("%s: sha256 %s through the mount, %s at the origin", rel, got, sum)
				}
			}
		})
	}
}

func TestAllowAndIgnorePatterns(t *testing.T) {
	hub := newHub(t, hubemu.Options{})
	llmRepo(t, hub, 8<<20, 2)
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"allow json only", `
    allow_patterns: ["*.json"]`, []string{"config.json", "generation_config.json", "model.safetensors.index.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"}},
		{"ignore wins over allow", `
    allow_patterns: ["*.json", "*.safetensors"]
    ignore_patterns: ["tokenizer*", "*-00002-*"]`, []string{"config.json", "generation_config.json", "model-00001-of-00002.safetensors", "model.safetensors.index.json", "special_tokens_map.json"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := mustMount(t, hub, mountOpts{config: llmConfig + tc.yaml})
			var got []string
			for p := range treeSizes(t, m.path("llm")) {
				got = append(got, p)
			}
			sort.Strings(got)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("files = %v\nwant    %v", got, tc.want)
			}
		})
	}
}

func TestDiffusersLayoutZeroByteAndUnicodeNames(t *testing.T) {
	hub := newHub(t, hubemu.Options{})
	dir := t.TempDir()
	if _, err := modelgen.Generate(dir, modelgen.Spec{TotalSize: 12 << 20, Layout: "diffusers", Seed: 2}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "empty.txt"), nil, 0o644)
	os.MkdirAll(filepath.Join(dir, "notes dir"), 0o755)
	os.WriteFile(filepath.Join(dir, "notes dir", "ünïcode name #1.txt"), []byte("héllo wörld\n"), 0o644)
	if err := hub.AddRepo(hubemu.Repo{ID: "acme/sdxl", Dir: dir, Commit: commitA}); err != nil {
		t.Fatal(err)
	}
	m := mustMount(t, hub, mountOpts{config: `
model_cache:
  - repo_id: acme/sdxl
    revision: ` + commitA + `
    use_volume: true
    volume_folder: sdxl
`})
	want, got := treeSums(t, dir), treeSums(t, m.path("sdxl"))
	if len(got) != len(want) {
		t.Fatalf("mount has %d files, origin %d: %v", len(got), len(want), got)
	}
	for p, s := range want {
		if got[p] != s {
			t.Errorf("%s: sha256 differs (mount %q)", p, got[p])
		}
	}
	for _, d := range []string{"unet", "vae", "text_encoder", "notes dir"} {
		if info, err := os.Stat(m.path("sdxl", d)); err != nil || !info.IsDir() || info.Mode().Perm() != 0o555 {
			t.Errorf("%s: %v %v", d, info, err)
		}
	}
}

func TestWritesFailWithEROFS(t *testing.T) {
	hub := newHub(t, hubemu.Options{})
	llmRepo(t, hub, 4<<20, 1)
	m := mustMount(t, hub, mountOpts{config: llmConfig})
	cases := []struct {
		name string
		op   func() error
	}{
		{"open for write", func() error {
			f, err := os.OpenFile(m.path("llm", "config.json"), os.O_WRONLY, 0)
			if err == nil {
				f.Close()
			}
			return err
		}},
		{"create", func() error { return os.WriteFile(m.path("llm", "new.txt"), []byte("x"), 0o644) }},
		{"mkdir", func() error { return os.Mkdir(m.path("llm", "d"), 0o755) }},
		{"remove", func() error { return os.Remove(m.path("llm", "config.json")) }},
		{"rename", func() error { return os.Rename(m.path("llm", "config.json"), m.path("llm", "c.json")) }},
		{"chmod", func() error { return os.Chmod(m.path("llm", "config.json"), 0o777) }},
		{"truncate", func() error { return os.Truncate(m.path("llm", "config.json"), 0) }},
	}
	for _, tc := range cases {
		if err := tc.op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: err = %v, want EROFS", tc.name, err)
		}
	}
}

func TestSixteenConcurrentReadersOfOneFile(t *testing.T) {
	hub := newHub(t, hubemu.Options{})
	origin := llmRepo(t, hub, 48<<20, 1)
	m := mustMount(t, hub, mountOpts{config: llmConfig})
	rel := "model.safetensors"
	want, err := os.ReadFile(filepath.Join(origin, rel))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var b []byte
			var err error
			switch i % 3 {
			case 0:
				b, err = os.ReadFile(m.path("llm", rel))
			case 1:
				b, err = readRandomOrder(m.path("llm", rel), int64(len(want)))
			default:
				b, err = readMmap(m.path("llm", rel), int64(len(want)))
			}
			if err == nil && !bytes.Equal(b, want) {
				err = errors.New("bytes differ from origin")
			}
			if err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestFourThreadMmapLoadersNeverDeadlock(t *testing.T) {
	hub := newHub(t, hubemu.Options{PerConnBytesPerSec: 200 << 20, TTFB: 5 * time.Millisecond})
	origin := llmRepo(t, hub, 48<<20, 3)
	m := mustMount(t, hub, mountOpts{config: llmConfig, args: []string{"--read-timeout", "60s"}})
	shards, _ := filepath.Glob(filepath.Join(origin, "*.safetensors"))
	var wg sync.WaitGroup
	errs := make(chan error, len(shards))
	for _, p := range shards {
		wg.Add(1)
		go func(p string) {
			defer wg.Done()
			want, _ := os.ReadFile(p)
			got, err := readMmapThreads(m.path("llm", filepath.Base(p)), int64(len(want)), 4)
			if err == nil && !bytes.Equal(got, want) {
				err = fmt.Errorf("%s: bytes differ from origin", filepath.Base(p))
			}
			if err != nil {
				errs <- err
			}
		}(p)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPrefetchCompletesWholeModelWithNobodyReading(t *testing.T) {
	hub := newHub(t, hubemu.Options{})
	origin := llmRepo(t, hub, 32<<20, 2)
	m := mustMount(t, hub, mountOpts{config: llmConfig, args: []string{"--progress-every", "200ms"}})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(m.stderr.String(), "prefetch complete") {
		if time.Now().After(deadline) {
			t.Fatalf("prefetch did not complete:\n%s", m.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	served := hub.BytesServed()
	want := int64(0)
	for _, n := range treeSizes(t, origin) {
		want += n
	}
	if served < want {
		t.Fatalf("origin served %d bytes, model is %d", served, want)
	}
	// Everything now comes from the cache: reading it all costs the origin nothing.
	got := treeSums(t, m.path("llm"))
	for rel, sum := range treeSums(t, origin) {
		if got[rel] != sum {
			t.Errorf("%s differs", rel)
		}
	}
	if hub.BytesServed() != served {
		t.Fatalf("reads after prefetch fetched %d more bytes", hub.BytesServed()-served)
	}
}

func TestRestartWithOriginGoneServesCache(t *testing.T) {
	hub := newHub(t, hubemu.Options{})
	origin := llmRepo(t, hub, 16<<20, 2)
	cacheDir := t.TempDir()
	cfg := llmConfig
	m := mustMount(t, hub, mountOpts{config: cfg, cacheDir: cacheDir, args: []string{"--prefetch=false", "--readahead-max-mb=0"}})
	cached := []string{"config.json", "model-00001-of-00002.safetensors"}
	for _, rel := range cached {
		if _, err := os.ReadFile(m.path("llm", rel)); err != nil {
			t.Fatal(err)
		}
	}
	m.stop()
	wantSizes := treeSizes(t, origin)
	hub.Close() // the origin is gone: any network call would fail

	// The same HF_ENDPOINT, now refusing connections: saved manifests are
	// keyed by the endpoint, so another Hub would be listed afresh.
	m2 := mustMount(t, nil, mountOpts{config: cfg, cacheDir: cacheDir, env: []string{"HF_ENDPOINT=" + hub.URL()},
		args: []string{"--read-timeout", "3s", "--fetch-timeout", "500ms", "--fetch-retries", "2"}})
	if !strings.Contains(m2.stderr.String(), "from_saved_manifest=true") {
		t.Errorf("restart did not use the saved manifest: %s", m2.stderr.String())
	}
	got := treeSizes(t, m2.path("llm"))
	if len(got) != len(wantSizes) {
		t.Fatalf("offline listing has %d files, want %d", len(got), len(wantSizes))
	}
	for _, rel := range cached {
		sum, err := modelgen.SHA256File(m2.path("llm", rel))
		want, _ := modelgen.SHA256File(filepath.Join(origin, rel))
		if err != nil || sum != want {
			t.Errorf("%s offline: %v (sha256 match %v)", rel, err, sum == want)
		}
	}
	start := time.Now()
	_, err := os.ReadFile(m2.path("llm", "model-00002-of-00002.safetensors"))
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("uncached file offline: err = %v, want EIO", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("uncached read took %s to fail; want bounded by --read-timeout", d)
	}
}

func TestStaleMountpointIsRecovered(t *testing.T) {
	hub := newHub(t, hubemu.Options{})
	llmRepo(t, hub, 4<<20, 1)
	mp := t.TempDir()
	m := mustMount(t, hub, mountOpts{config: llmConfig, mountDir: mp})
	m.kill()
	if _, err := os.Stat(filepath.Join(mp, "llm")); !errors.Is(err, syscall.ENOTCONN) {
		t.Logf("after kill, stat = %v (expected ENOTCONN)", err)
	}
	m2 := mustMount(t, hub, mountOpts{config: llmConfig, mountDir: mp})
	if _, err := os.ReadFile(m2.path("llm", "config.json")); err != nil {
		t.Fatal(err)
	}
}

func sha256Hex(b []byte) string {
	h := sha256Sum(b)
	return h
}
