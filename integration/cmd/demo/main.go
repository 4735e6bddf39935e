// Command demo is `make demo`: it serves a generated ~1 GiB model from the
// in-repo Hub emulator (throttled like a CDN), mounts it with the weightfs
// binary, lists it, reads the first tensor, reads everything, checks the
// sha256 of every file against the origin and unmounts, printing timings.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weightfs/weightfs/integration/hubemu"
	"github.com/weightfs/weightfs/integration/modelgen"
)

func main() {
	bin := flag.String("bin", "bin/weightfs", "weightfs binary")
	sizeMB := flag.Int64("size-mb", 1024, "model size, MiB")
	shards := flag.Int("shards", 4, "safetensors shards")
	perConn := flag.Float64("per-conn-mbps", 400, "emulated CDN speed per connection, Mbit/s")
	aggregate := flag.Float64("aggregate-gbps", 10, "emulated CDN aggregate limit, Gbit/s")
	ttfb := flag.Duration("ttfb", 30*time.Millisecond, "emulated time to first byte")
	keep := flag.Bool("keep", false, "keep the work dir")
	flag.Parse()
	if err := run(*bin, *sizeMB<<20, *shards, int64(*perConn*1e6/8), int64(*aggregate*1e9/8), *ttfb, *keep); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(bin string, size int64, shards int, perConn, aggregate int64, ttfb time.Duration, keep bool) error {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("weightfs binary %s: %w (run make build)", bin, err)
	}
	work, err := os.MkdirTemp("", "weightfs-demo-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(work)
	}
	origin, cacheDir, mp := filepath.Join(work, "origin"), filepath.Join(work, "cache"), filepath.Join(work, "model_cache")

	t0 := time.Now()
	if _, err := modelgen.Generate(origin, modelgen.Spec{TotalSize: size, Shards: shards, Seed: 42}); err != nil {
		return err
	}
	step("generated a %d-shard model of %.0f MiB in %s", shards, float64(size)/(1<<20), since(t0))

	hub, err := hubemu.New(hubemu.Options{PerConnBytesPerSec: perConn, AggregateBytesPerSec: aggregate, TTFB: ttfb})
	if err != nil {
		return err
	}
	defer hub.Close()
	if err := hub.AddRepo(hubemu.Repo{ID: "demo/llama-mini", Dir: origin}); err != nil {
		return err
	}
	step("Hub emulator at %s (CDN: %.0f Mbit/s per connection, %.0f Gbit/s aggregate, %s to first byte)",
		hub.URL(), float64(perConn)*8/1e6, float64(aggregate)*8/1e9, ttfb)

	cfg := filepath.Join(work, "config.yaml")
	os.WriteFile(cfg, []byte("model_cache:\n  - repo_id: demo/llama-mini\n    revision: main\n    use_volume: true\n    volume_folder: llama-mini\n"), 0o644)

	tMount := time.Now()
	cmd := exec.Command(bin, "mount", "--config", cfg, "--mountpoint", mp, "--cache-dir", cacheDir, "--secrets-dir", filepath.Join(work, "secrets"))
	cmd.Env = append(os.Environ(), "HF_ENDPOINT="+hub.URL())
	logs := &lineWatcher{want: "listing served", ch: make(chan struct{})}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
		}
	}()
	select {
	case <-logs.ch:
	case err := <-exited:
		return fmt.Errorf("weightfs mount exited: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		return fmt.Errorf("no listing after 60s\n%s", logs.String())
	}
	listing := time.Since(tMount)
	vol := filepath.Join(mp, "llama-mini")
	files, total := listFiles(vol)
	step("mounted at %s: %d files, %.0f MiB listed %s after start, %d content requests so far", vol, len(files), float64(total)/(1<<20), listing.Round(time.Millisecond), hub.ContentRequests())
	for _, f := range files {
		fmt.Printf("      %12d  %s\n", f.size, f.rel)
	}

	tFirst := time.Now()
	name, n, err := firstTensor(filepath.Join(vol, "model-00001-of-"+fmt.Sprintf("%05d", shards)+".safetensors"))
	if err != nil {
		return err
	}
	first := since(tFirst)
	step("first tensor %s (%d bytes) read in %s", name, n, first)

	tAll := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(files))
	for _, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fh, err := os.Open(filepath.Join(vol, f.rel))
			if err == nil {
				_, err = io.Copy(io.Discard, bufio.NewReaderSize(fh, 1<<20))
				fh.Close()
			}
			if err != nil {
				errs <- fmt.Errorf("%s: %w", f.rel, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	all := time.Since(tAll)
	step("read all %.0f MiB in %s (%.0f MB/s; origin limit %.0f MB/s)", float64(total)/(1<<20), all.Round(time.Millisecond),
		float64(total)/all.Seconds()/1e6, float64(aggregate)/1e6)

	tSum := time.Now()
	bad := 0
	for _, f := range files {
		a, err1 := modelgen.SHA256File(filepath.Join(vol, f.rel))
		b, err2 := modelgen.SHA256File(filepath.Join(origin, f.rel))
		if err1 != nil || err2 != nil || a != b {
			bad++
			fmt.Printf("      MISMATCH %s (%v %v)\n", f.rel, err1, err2)
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d files differ from the origin", bad)
	}
	step("sha256 of all %d files matches the origin (%s, warm)", len(files), since(tSum))

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("weightfs exited with %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		return fmt.Errorf("weightfs did not exit after SIGTERM")
	}
	step("unmounted; summary: listing %s, first tensor %s, full read %s",
		listing.Round(time.Millisecond), first, all.Round(time.Millisecond))
	return nil
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

type fileInfo struct {
	rel  string
	size int64
}

func listFiles(dir string) ([]fileInfo, int64) {
	var out []fileInfo
	var total int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			info, _ := d.Info()
			rel, _ := filepath.Rel(dir, p)
			out = append(out, fileInfo{rel, info.Size()})
			total += info.Size()
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].rel < out[j].rel })
	return out, total
}

// firstTensor reads a safetensors header and then the tensor stored first.
func firstTensor(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	var n uint64
	if err := binary.Read(f, binary.LittleEndian, &n); err != nil {
		return "", 0, err
	}
	hdr := make([]byte, n)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return "", 0, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &m); err != nil {
		return "", 0, err
	}
	name, first := "", [2]int64{-1, -1}
	for k, v := range m {
		if k == "__metadata__" {
			continue
		}
		var t struct {
			Offsets [2]int64 `json:"data_offsets"`
		}
		json.Unmarshal(v, &t)
		if first[0] < 0 || t.Offsets[0] < first[0] {
			name, first = k, t.Offsets
		}
	}
	buf := make([]byte, first[1]-first[0])
	if _, err := f.ReadAt(buf, 8+int64(n)+first[0]); err != nil {
		return "", 0, err
	}
	return name, int64(len(buf)), nil
}

// lineWatcher collects the daemon's log and signals when a line appears.
type lineWatcher struct {
	mu   sync.Mutex
	buf  strings.Builder
	want string
	ch   chan struct{}
	seen bool
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.seen && strings.Contains(w.buf.String(), w.want) {
		w.seen = true
		close(w.ch)
	}
	return len(p), nil
}

func (w *lineWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
