// Package soak owns the soak run behind `make soak` and the short soak of
// `make test`: a generated multi-shard model served by the Hub emulator
// through a fault-injecting proxy (connection resets, 5xx, flipped bytes),
// mounted with the weightfs binary, read for a fixed time by random-offset
// pread readers and mmap loaders that compare every byte with the origin.
// After the load it runs `weightfs wait` and checks every file is verified
// and right by sha256, once per mode (the default, then --strict-verify).
//
// Everything is bounded: every loop has a deadline, a reader stuck in the
// mount is freed by killing the daemon, and only loopback is used. It
// reports; it does not judge beyond the checks Report.Failures names.
package soak

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/weightfs/weightfs/integration/faultproxy"
	"github.com/weightfs/weightfs/integration/hubemu"
	"github.com/weightfs/weightfs/integration/modelgen"
)

// Mode is one way of mounting: a name and the extra mount flags.
type Mode struct {
	Name string
	Args []string
	// Exact: readers must see no wrong byte (the --strict-verify promise);
	// otherwise every file a wrong byte came from must be named served_bad
	// in /status.
	Exact bool
}

// waitServedBad is the exit status of `weightfs wait` when every file is
// verified but some had served bytes that failed verification.
const waitServedBad = 4

// DefaultModes are the default mode and --strict-verify.
var DefaultModes = []Mode{
	{Name: "default"},
	{Name: "strict-verify", Args: []string{"--strict-verify"}, Exact: true},
}

// Config sets up a soak. Zero values pick the defaults noted.
type Config struct {
	Bin      string        // weightfs binary (required)
	WorkDir  string        // parent of the run's temp dir (default os.TempDir())
	Size     int64         // model weight bytes (default 512 MiB)
	Shards   int           // safetensors shards (default 4)
	Duration time.Duration // load time per mode (default 2m)
	Readers  int           // random-offset pread readers (default 48)
	Loaders  int           // mmap loader processes (default 4)
	MaxRead  int           // largest pread (default 1 MiB); sizes are log-uniform from 1 byte
	// OriginBytesPerSec caps the emulated CDN. 0 picks Size / (Duration/2),
	// so the model fills during the first half of the load and faults keep
	// landing on reads that wait for the network.
	OriginBytesPerSec int64
	Faults            faultproxy.Rates // default: 5% resets, 5% 5xx, 20% flipped bytes
	Modes             []Mode           // default DefaultModes
	ReadTimeout       time.Duration    // the daemon's --read-timeout (default 30s)
	WaitTimeout       time.Duration    // `weightfs wait --timeout` (default 5m)
	Seed              uint64           // model bytes and every random draw (default 1)
	Log               io.Writer        // progress lines (default io.Discard)
	Keep              bool             // keep the work dir
}

// DefaultFaults are the fault rates of content responses when Config.Faults
// is zero.
var DefaultFaults = faultproxy.Rates{Reset: 0.05, Status5xx: 0.05, Flip: 0.20}

func (c *Config) fill() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Shards, 4)
	def(&c.Readers, 48)
	def(&c.Loaders, 4)
	def(&c.MaxRead, 1<<20)
	if c.Size <= 0 {
		c.Size = 512 << 20
	}
	if c.Duration <= 0 {
		c.Duration = 2 * time.Minute
	}
	if c.OriginBytesPerSec <= 0 {
		c.OriginBytesPerSec = max(1<<20, int64(float64(c.Size)/(c.Duration.Seconds()/2)))
	}
	if c.Faults == (faultproxy.Rates{}) {
		c.Faults = DefaultFaults
	}
	if len(c.Modes) == 0 {
		c.Modes = DefaultModes
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.WaitTimeout <= 0 {
		c.WaitTimeout = 5 * time.Minute
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Run generates the model, starts the origin and soaks each mode in turn.
// An error means the soak could not be set up; what went wrong under load is
// in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.fill()
	if _, err := os.Stat(cfg.Bin); err != nil {
		return nil, fmt.Errorf("soak: weightfs binary: %w (run make build)", err)
	}
	work, err := os.MkdirTemp(cfg.WorkDir, "weightfs-soak-")
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	if !cfg.Keep {
		defer os.RemoveAll(work)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(cfg.Log, "soak: "+format+"\n", args...) }

	originDir := filepath.Join(work, "origin")
	model, err := modelgen.Generate(originDir, modelgen.Spec{TotalSize: cfg.Size, Shards: cfg.Shards, Seed: cfg.Seed})
	if err != nil {
		return nil, err
	}
	files, err := describe(model)
	if err != nil {
		return nil, err
	}
	logf("model: %d files, %d shards, %.0f MiB (work dir %s)", len(files), len(model.Safetensors), float64(model.TotalBytes)/(1<<20), work)

	proxy := faultproxy.New(faultproxy.Options{Seed: cfg.Seed, Content: faultproxy.HubContent})
	hub, err := hubemu.New(hubemu.Options{AggregateBytesPerSec: cfg.OriginBytesPerSec, Wrap: proxy.Wrap})
	if err != nil {
		return nil, err
	}
	defer hub.Close()
	const repo = "soak/llama"
	if err := hub.AddRepo(hubemu.Repo{ID: repo, Dir: originDir}); err != nil {
		return nil, err
	}
	config := filepath.Join(work, "config.yaml")
	yaml := "model_cache:\n  - repo_id: " + repo + "\n    revision: main\n    use_volume: true\n    volume_folder: llama\n"
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		return nil, err
	}

	rep := &Report{Settings: settingsOf(cfg, model)}
	for i, mode := range cfg.Modes {
		if ctx.Err() != nil {
			break
		}
		dir := filepath.Join(work, fmt.Sprintf("%d-%s", i, mode.Name))
		proxy.ResetStats()
		proxy.SetRates(cfg.Faults)
		m := soakMode(ctx, cfg, mode, mountSpec{bin: cfg.Bin, config: config, dir: dir, hubURL: hub.URL(),
			args: mode.Args, readTimeout: cfg.ReadTimeout}, originDir, files, model.Safetensors, logf)
		m.Faults = proxy.Stats() // the whole mode: load, wait and the sha256 pass
		proxy.Clear()
		rep.Modes = append(rep.Modes, m)
	}
	return rep, nil
}

// describe lists the model's files with their sizes and sha256.
func describe(m *modelgen.Model) ([]file, error) {
	var out []file
	for _, rel := range m.Files {
		p := filepath.Join(m.Dir, filepath.FromSlash(rel))
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		sum, err := modelgen.SHA256File(p)
		if err != nil {
			return nil, err
		}
		out = append(out, file{rel: rel, size: info.Size(), shard: slices.Contains(m.Safetensors, rel), sha256: sum})
	}
	return out, nil
}

// soakMode mounts in one mode, runs the load for cfg.Duration, then waits
// and checks every file.
func soakMode(ctx context.Context, cfg Config, mode Mode, spec mountSpec, originDir string, files []file,
	shards []string, logf func(string, ...any)) ModeReport {
	r := ModeReport{Mode: mode.Name, Args: mode.Args, Files: len(files), Wait: waitResult{Code: -1, Out: "not run"}}
	fail := func(format string, args ...any) { r.Failures = append(r.Failures, fmt.Sprintf(format, args...)) }
	d, err := startDaemon(spec)
	if err != nil {
		fail("%v", err)
		return r
	}
	defer d.kill()
	root := filepath.Join(d.mountpoint, "llama")
	logf("%s: mounted at %s; %d readers and %d mmap loaders for %s", mode.Name, root, cfg.Readers, cfg.Loaders, cfg.Duration)

	t0 := time.Now()
	until := t0.Add(cfg.Duration)
	// Past the hard stop a loader is killed: a tensor started just before
	// the deadline may need several page faults of up to --read-timeout.
	hardStop := until.Add(2*cfg.ReadTimeout + 30*time.Second)
	loadCtx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	loaders, err := startLoaders(ctx, loaderJob{MountRoot: root, OriginRoot: originDir, Shards: shards,
		UntilNs: until.UnixNano(), Seed: cfg.Seed}, cfg.Loaders, spec.dir, hardStop)
	if err != nil {
		fail("%v", err)
		return r
	}
	readersDone := make(chan LoadStats, 1)
	go func() {
		readersDone <- runReaders(loadCtx, readerPlan{mountRoot: root, originRoot: originDir, files: files,
			readers: cfg.Readers, maxRead: cfg.MaxRead, seed: cfg.Seed})
	}()
	select {
	case r.Readers = <-readersDone:
	case <-time.After(time.Until(until.Add(cfg.ReadTimeout + 30*time.Second))):
		// A pread outlived --read-timeout by far: the daemon is wedged.
		// Killing it aborts the FUSE connection and frees every reader.
		fail("readers still blocked %s after the load ended; weightfs killed%s", cfg.ReadTimeout+30*time.Second, stuck(d))
		d.kill()
		r.Readers = <-readersDone
	}
	loadersDone := make(chan LoadStats, 1)
	go func() { loadersDone <- loaders() }()
	select {
	case r.Loaders = <-loadersDone:
	case <-time.After(time.Until(hardStop) + 15*time.Second):
		// The loaders were sent SIGKILL at the hard stop; one that outlives
		// it is in uninterruptible sleep in the mount.
		fail("mmap loaders still blocked %s after the load ended, SIGKILL or not; weightfs killed%s", hardStop.Sub(until)+15*time.Second, stuck(d))
		d.kill()
		r.Loaders = <-loadersDone
	}
	r.LoadTime = time.Since(t0)
	logf("%s: load done in %s: %d preads, %d tensors", mode.Name, r.LoadTime.Round(time.Second), r.Readers.Ops, r.Loaders.Ops)

	if !d.alive() {
		if !d.killed.Load() {
			fail("weightfs mount died under load (%v): %s", d.exitErr, tail([]byte(d.logText()), 600))
		}
		r.Failures = append(r.Failures, d.logProblems()...)
		return r
	}
	r.Wait = d.wait(cfg.WaitTimeout)
	logf("%s: weightfs wait exited %d after %s: %s", mode.Name, r.Wait.Code, r.Wait.Took.Round(100*time.Millisecond), r.Wait.Out)
	// Exit 4 is "all verified now, but some bytes reached readers before
	// their file failed verification": the default mode's loud warning,
	// which strict verification exists to make impossible.
	if r.Wait.Code != 0 && (mode.Exact || r.Wait.Code != waitServedBad) {
		fail("weightfs wait exited %d after %s: %s", r.Wait.Code, r.Wait.Took.Round(time.Second), r.Wait.Out)
	}
	checkFiles(d, root, files, mode, cfg.WaitTimeout, &r, fail)
	if d.alive() {
		if err := d.stop(); err != nil {
			fail("%v", err)
		}
	}
	r.Failures = append(r.Failures, d.logProblems()...)
	return r
}

// stuck is ", daemon threads stuck in the kernel: ..." when there are any.
func stuck(d *daemon) string {
	if s := d.stuckThreads(); s != "" {
		return "; daemon threads stuck in the kernel: " + s
	}
	return ""
}
