package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/weightfs/weightfs/integration/modelgen"
)

// loaderEnv carries a loader's job (JSON) to the process that runs it.
//
// Loaders run in processes of their own, not as goroutines of this one: the
// emulated origin lives here, and a goroutine stuck in a page fault on the
// mount cannot reach a GC safe point, so a stop-the-world would freeze the
// origin the fault is waiting for.
const loaderEnv = "WEIGHTFS_SOAK_LOADER"

// loaderJob is one mmap loader's work.
type loaderJob struct {
	MountRoot  string   `json:"mount_root"`
	OriginRoot string   `json:"origin_root"`
	Shards     []string `json:"shards"`
	UntilNs    int64    `json:"until_ns"` // stop starting tensors after this (unix ns)
	Seed       uint64   `json:"seed"`
	Out        string   `json:"out"` // where the LoadStats JSON goes
}

// MaybeRunLoader runs an mmap loader and exits if this process was started
// as one; otherwise it returns at once. Call it first thing in main (or in
// an init of a test package) of any program that calls Run.
func MaybeRunLoader() {
	v := os.Getenv(loaderEnv)
	if v == "" {
		return
	}
	var job loaderJob
	if err := json.Unmarshal([]byte(v), &job); err != nil {
		fmt.Fprintf(os.Stderr, "soak loader: bad %s: %v\n", loaderEnv, err)
		os.Exit(2)
	}
	if err := job.run(); err != nil {
		fmt.Fprintf(os.Stderr, "soak loader: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// startLoaders starts n loader processes (the running executable again) and
// returns a function that waits for them, killing any still running at
// hardStop, and merges what they report.
func startLoaders(ctx context.Context, job loaderJob, n int, workDir string, hardStop time.Time) (func() LoadStats, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("mmap loaders: %w", err)
	}
	var wg sync.WaitGroup
	var c collector
	for i := 0; i < n; i++ {
		j := job
		j.Seed = job.Seed*1000 + uint64(i)
		j.Out = filepath.Join(workDir, fmt.Sprintf("loader-%d.json", i))
		b, _ := json.Marshal(j)
		lctx, cancel := context.WithDeadline(ctx, hardStop)
		// -test.run=^$ keeps a test binary from running its tests should
		// MaybeRunLoader not be wired in; a program ignores it.
		cmd := exec.CommandContext(lctx, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), loaderEnv+"="+string(b))
		logPath := j.Out + ".log"
		logf, err := os.Create(logPath)
		if err != nil {
			cancel()
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			cancel()
			logf.Close()
			return nil, fmt.Errorf("mmap loader: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			werr := cmd.Wait()
			logf.Close()
			s, rerr := readStats(j.Out)
			if werr != nil || rerr != nil {
				log, _ := os.ReadFile(logPath)
				s.Other++
				s.LastError = fmt.Sprintf("mmap loader %d: exit %v, report %v: %s", i, werr, rerr, tail(log, 300))
			}
			c.merge(&s)
		}()
	}
	return func() LoadStats {
		// A loader in uninterruptible sleep (a page fault the daemon never
		// answers) survives SIGKILL; past the hard stop it is abandoned.
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Until(hardStop) + 30*time.Second):
			s := LoadStats{Other: 1, LastError: "an mmap loader was still stuck in the mount 30s after the hard stop; abandoned"}
			c.merge(&s)
		}
		return c.result()
	}, nil
}

func readStats(p string) (LoadStats, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return LoadStats{}, err
	}
	return decodeStats(b)
}

// run maps each shard in turn (in a random order), touches its header and
// then every tensor in a random order, comparing each with the origin, until
// UntilNs, saving its stats as it goes.
func (j loaderJob) run() error {
	rng := rand.New(rand.NewPCG(j.Seed, 7))
	until := time.Unix(0, j.UntilNs)
	var s LoadStats
	var saved time.Time // zero: save at once, so a report exists however soon the loader is killed
	headers := map[string]modelgen.Header{}
	for _, rel := range j.Shards {
		f, err := os.Open(filepath.Join(j.OriginRoot, rel))
		if err != nil {
			return err
		}
		h, err := modelgen.ParseHeader(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("origin %s: %w", rel, err)
		}
		headers[rel] = h
	}
	for time.Now().Before(until) {
		order := append([]string(nil), j.Shards...)
		rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		for _, rel := range order {
			if !time.Now().Before(until) {
				break
			}
			if err := j.loadShard(rel, headers[rel], rng, until, &s, &saved); err != nil {
				s.Other++
				s.LastError = err.Error()
				time.Sleep(50 * time.Millisecond) // a dead mount must not spin
			}
			if err := j.save(&s); err != nil {
				return err
			}
		}
	}
	return j.save(&s)
}

func (j loaderJob) save(s *LoadStats) error {
	b, err := encodeStats(s)
	if err != nil {
		return err
	}
	tmp := j.Out + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, j.Out)
}

// span is a byte range of a shard: its header, or one tensor.
type span struct{ begin, end int64 }

// loadShard also saves s every 2 s (saved is when it last did), so a loader
// killed mid-shard at the hard stop still reports what it did.
func (j loaderJob) loadShard(rel string, h modelgen.Header, rng *rand.Rand, until time.Time, s *LoadStats, saved *time.Time) error {
	mf, err := os.Open(filepath.Join(j.MountRoot, rel))
	if err != nil {
		return err
	}
	defer mf.Close()
	of, err := os.Open(filepath.Join(j.OriginRoot, rel))
	if err != nil {
		return err
	}
	defer of.Close()
	size := h.DataStart + h.DataLen()
	mapped, err := syscall.Mmap(int(mf.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap %s: %w", rel, err)
	}
	defer syscall.Munmap(mapped)
	spans := []span{{0, h.DataStart}} // a loader reads the header first
	var tensors []span
	for _, t := range h.Tensors {
		tensors = append(tensors, span{h.DataStart + t.Begin, h.DataStart + t.End})
	}
	rng.Shuffle(len(tensors), func(a, b int) { tensors[a], tensors[b] = tensors[b], tensors[a] })
	want := make([]byte, 1<<20)
	for _, sp := range append(spans, tensors...) {
		if !time.Now().Before(until) {
			return nil
		}
		if time.Since(*saved) > 2*time.Second {
			if err := j.save(s); err != nil {
				return err
			}
			*saved = time.Now()
		}
		t0 := time.Now()
		wrong, faulted, err := touch(mapped[sp.begin:sp.end], of, sp.begin, want)
		s.Ops++
		s.LatNs = append(s.LatNs, int64(time.Since(t0)))
		switch {
		case err != nil:
			return fmt.Errorf("origin %s: %w", rel, err)
		case faulted:
			s.EIO++ // SIGBUS: the daemon answered the page fault with an error
			time.Sleep(10 * time.Millisecond)
		default:
			s.Bytes += sp.end - sp.begin
			if wrong > 0 {
				s.WrongOps++
				s.WrongBytes += wrong
				s.noteWrong(rel)
			}
		}
	}
	return nil
}

// touch compares mapped (the shard's bytes from off) with the origin, 1 MiB
// at a time, faulting the pages in. A SIGBUS (the daemon failed the read)
// becomes faulted instead of killing the process.
func touch(mapped []byte, origin *os.File, off int64, buf []byte) (wrong int64, faulted bool, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			faulted = true
		}
	}()
	for p := 0; p < len(mapped); p += len(buf) {
		piece := mapped[p:min(p+len(buf), len(mapped))]
		want := buf[:len(piece)]
		if _, err := origin.ReadAt(want, off+int64(p)); err != nil {
			return wrong, false, err
		}
		wrong += diffBytes(piece, want)
	}
	return wrong, false, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
