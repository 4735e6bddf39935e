// Command bench is `make bench`: it measures weightfs against an emulated
// origin throttled like a real CDN and against the tools people use instead
// (a parallel download followed by a local load, rclone mount, s3fs), on the
// same generated model, the same throttle and the same machine, and writes
// BENCHMARKS.md.
//
// Every cold run starts from a fresh cache directory and an empty page cache;
// every step has a deadline, and a failing step puts its error in its table
// cell while the bench goes on. The origin's files live on tmpfs (when there
// is one), so dropping the page cache does not make the origin itself cold:
// the emulated CDN, not the local disk, is what limits the origin.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// settings is everything a run depends on; all of it is printed in the report.
type settings struct {
	bin          string
	sizeMB       int64   // the model every configuration loads
	rssSizesMB   []int64 // extra sizes weightfs-hf runs at, to show RSS is flat
	shards       int     // 0: modelgen's default (one per 512 MiB)
	perConn      int64   // bytes/s per response stream
	aggregate    int64   // bytes/s over all streams
	ttfb         time.Duration
	workDir      string // caches, mountpoints, downloads (on disk)
	originDir    string // the generated models (tmpfs when available)
	out          string // "" = do not write the report
	quick        bool
	stepTimeout  time.Duration
	mountTimeout time.Duration
	threads      int      // transformers-order loader threads
	warmRuns     int      // repetitions of each warm measurement (the median is reported)
	ttftRuns     int      // repetitions of the cold first-tensor measurement (median)
	coldRuns     int      // repetitions of each cold load of the full comparison (median)
	ttftOnly     bool     // stop each configuration after its first-tensor row (tuning)
	dlRanges     int      // download baseline: ranges in flight
	dlRangeMB    int64    // download baseline: range size
	weightfsArgs []string // extra `weightfs mount` flags
	weightfsEnv  []string // extra environment of `weightfs mount` (K=V)
	leanSizeMB   int64    // the lean row's model (0: no lean row)
	leanShards   int
	skip         map[string]bool
	keep         bool
	logDir       string // where each daemon's output is saved ("" = nowhere)
	command      string // how this run was started, for the report
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == childFlag {
		transformersChild(os.Args[2:])
		return
	}
	var s settings
	var rss, skip, wargs, wenv string
	var perConnMbps, aggGbps float64
	var primeMB int64
	flag.StringVar(&s.bin, "bin", "bin/weightfs", "weightfs binary")
	flag.Int64Var(&s.sizeMB, "size-mb", 2048, "model size for the full comparison, MiB")
	flag.StringVar(&rss, "rss-sizes-mb", "1024", "comma-separated extra model sizes (MiB) weightfs-hf also loads cold, to show its peak RSS does not grow with the model")
	flag.IntVar(&s.shards, "shards", 0, "safetensors shards (0: one per 512 MiB, at least 2)")
	flag.Int64Var(&s.leanSizeMB, "lean-size-mb", 0, "also measure a model of this size (MiB; issue 11 uses 6144), cold, weightfs beside download-then-load: load time, page cache growth, daemon CPU per GB with verification, peak RSS, warm reload against a direct read of the cache files (0: off)")
	flag.IntVar(&s.leanShards, "lean-shards", 12, "safetensors shards of the -lean-size-mb model")
	flag.Float64Var(&perConnMbps, "per-conn-mbps", 400, "emulated CDN speed per connection, Mbit/s")
	flag.Float64Var(&aggGbps, "aggregate-gbps", 10, "emulated CDN aggregate limit, Gbit/s")
	flag.DurationVar(&s.ttfb, "ttfb", 30*time.Millisecond, "emulated time to first byte of every content response")
	flag.StringVar(&s.workDir, "work-dir", os.TempDir(), "where caches, mountpoints and downloads go (a local disk)")
	flag.StringVar(&s.originDir, "origin-dir", defaultOriginDir(), "where the generated models go (tmpfs keeps the origin warm when the page cache is dropped)")
	flag.StringVar(&s.out, "out", "BENCHMARKS.md", "report file (\"\" to only print); -quick writes none unless -out is given")
	flag.BoolVar(&s.quick, "quick", false, "fast sanity run: 256 MiB model, 128 MiB extra size")
	flag.DurationVar(&s.stepTimeout, "step-timeout", 5*time.Minute, "deadline of one timed step (a load); past it the tool is killed and the step fails")
	flag.DurationVar(&s.mountTimeout, "mount-timeout", 60*time.Second, "deadline for a mount to become ready")
	flag.IntVar(&s.warmRuns, "warm-runs", 5, "repetitions of each warm (local disk) measurement; the median is reported")
	flag.IntVar(&s.ttftRuns, "ttft-runs", 5, "repetitions of the cold time-to-first-tensor measurement, each on a new daemon and an empty cache; the median is reported")
	flag.IntVar(&s.coldRuns, "cold-runs", 3, "repetitions of each cold load (file and transformers order) in the full comparison, each on a new daemon and an empty cache; the median is reported")
	flag.BoolVar(&s.ttftOnly, "ttft-only", false, "measure only the listing and first-tensor rows (for tuning; the report is incomplete)")
	flag.IntVar(&s.threads, "threads", 4, "threads of the transformers-order loader")
	flag.IntVar(&s.dlRanges, "download-ranges", 64, "download baseline: ranged GETs in flight")
	flag.Int64Var(&s.dlRangeMB, "download-range-mb", 8, "download baseline: range size, MiB")
	flag.StringVar(&wargs, "weightfs-args", "", "extra flags for `weightfs mount`, space-separated (e.g. \"--workers 32\")")
	flag.StringVar(&wenv, "weightfs-env", "", "extra environment for `weightfs mount`, space-separated K=V (e.g. \"WEIGHTFS_PPROF=127.0.0.1:6060 GODEBUG=gctrace=1\")")
	flag.StringVar(&skip, "skip", "", "comma-separated configurations to leave out: weightfs-hf, weightfs-s3, rclone-s3, s3fs-s3, download, weightfs-fetch")
	flag.BoolVar(&s.keep, "keep", false, "keep the work and origin dirs")
	flag.Int64Var(&primeMB, "prime-mb", 0, "after each page cache drop, touch and free this much memory (MiB), so the run after it finds memory the VM's host has not taken back (0: twice the model plus 512; -1: off)")
	flag.StringVar(&s.logDir, "daemon-logs", "", "save the output of every mounted daemon (weightfs, rclone, s3fs) in this folder")
	flag.Parse()

	outSet := false
	flag.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "out" })
	if s.quick {
		s.sizeMB = 256
		rss = "128"
		if !outSet {
			s.out = ""
		}
	}
	var err error
	if s.rssSizesMB, err = parseSizes(rss); err != nil {
		fatal(err)
	}
	s.warmRuns, s.ttftRuns, s.coldRuns = max(s.warmRuns, 1), max(s.ttftRuns, 1), max(s.coldRuns, 1)
	switch {
	case primeMB == 0:
		primeBytes = (2*s.sizeMB + 512) << 20
	case primeMB > 0:
		primeBytes = primeMB << 20
	}
	s.perConn = int64(perConnMbps * 1e6 / 8)
	s.aggregate = int64(aggGbps * 1e9 / 8)
	s.weightfsArgs = strings.Fields(wargs)
	s.weightfsEnv = strings.Fields(wenv)
	s.skip = map[string]bool{}
	for _, k := range strings.Split(skip, ",") {
		if k = strings.TrimSpace(k); k != "" {
			s.skip[k] = true
		}
	}
	s.command = commandLine()
	if _, err := os.Stat(s.bin); err != nil {
		fatal(fmt.Errorf("weightfs binary %s: %w (run make build)", s.bin, err))
	}
	if s.bin, err = filepath.Abs(s.bin); err != nil {
		fatal(err)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: warning: not root, so the page cache cannot be dropped and mounts may fail; cold numbers will be optimistic")
	}

	mountFusectl()
	b, err := newBench(s)
	if err != nil {
		fatal(err)
	}
	b.run()
	b.close()
	r := b.report()
	fmt.Print(r.text())
	if s.out != "" {
		if err := r.writeMarkdown(s.out); err != nil {
			fatal(err)
		}
		fmt.Printf("\nwrote %s\n", s.out)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	os.Exit(1)
}

func defaultOriginDir() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

func parseSizes(s string) ([]int64, error) {
	var out []int64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-rss-sizes-mb: %q is not a size in MiB", f)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// commandLine is how this run was started: `make bench` runs `go run`, whose
// binary name says nothing, so the flags are shown after the package path.
func commandLine() string {
	args := append([]string{"go run ./integration/cmd/bench"}, os.Args[1:]...)
	return strings.Join(args, " ")
}

func step(format string, args ...any) {
	fmt.Printf("%s ==> %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// dropCaches empties the page cache (root only), so a cold run reads from
// the network and the cache directory's disk, not from memory, then primes
// memory (see prime).
func dropCaches() error {
	exec.Command("sync").Run()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return fmt.Errorf("drop page cache: %w", err)
	}
	return prime()
}

// primeBytes configures prime; set from -prime-mb.
var primeBytes int64

// prime touches primeBytes of memory in huge pages and lets it go. Why: on
// this kind of VM the host takes back guest memory that sits unused for a
// few seconds, and touching it again costs a host fault per page: writing
// 2 GiB into the page cache after 30 s idle ran at 400 MB/s, and at 5.1
// GB/s right after a run that had used the memory. A cold load fills two
// page caches, so without priming whichever run follows a light one pays for
// that alone, and the rows measure the VM's memory reclaim instead of the
// filesystems. Priming gives every run the same start. Huge pages, because
// page caches allocate large folios: priming with a tmpfs file of 4 KiB
// pages did not help (416 MB/s), anonymous huge pages did (5.2 GB/s).
func prime() error {
	if primeBytes <= 0 {
		return nil
	}
	m, err := syscall.Mmap(-1, 0, int(primeBytes), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return fmt.Errorf("prime memory: %w", err)
	}
	defer syscall.Munmap(m)
	syscall.Madvise(m, syscall.MADV_HUGEPAGE) // ignored where huge pages are off
	for i := 0; i < len(m); i += 4096 {
		m[i] = 1
	}
	return nil
}

// mountFusectl mounts the FUSE control filesystem if it is missing, so a
// hung mount's connection can be aborted (/sys/fs/fuse/connections/N/abort).
func mountFusectl() {
	if ents, err := os.ReadDir("/sys/fs/fuse/connections"); err == nil && len(ents) == 0 && os.Geteuid() == 0 {
		exec.Command("mount", "-t", "fusectl", "none", "/sys/fs/fuse/connections").Run()
	}
}
