// Command soak is `make soak`: a generated multi-shard model behind a
// fault-injecting Hub emulator (resets, 5xx, flipped bytes), mounted with the
// weightfs binary and read for a fixed time by random-offset pread readers and
// mmap loaders, once per mode (default, --strict-verify); then `weightfs
// wait` and a sha256 of every file. It prints the tables RELIABILITY.md keeps
// and exits 1 when a check failed. See package integration/soak.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/weightfs/weightfs/integration/faultproxy"
	"github.com/weightfs/weightfs/integration/soak"
)

func main() {
	soak.MaybeRunLoader()
	var cfg soak.Config
	flag.StringVar(&cfg.Bin, "bin", "bin/weightfs", "weightfs binary")
	sizeMB := flag.Int64("size-mb", 512, "model size, MiB")
	flag.IntVar(&cfg.Shards, "shards", 4, "safetensors shards")
	flag.DurationVar(&cfg.Duration, "duration", 2*time.Minute, "load time per mode")
	flag.IntVar(&cfg.Readers, "readers", 48, "random-offset pread readers")
	flag.IntVar(&cfg.Loaders, "loaders", 4, "mmap loader processes")
	maxKB := flag.Int("max-read-kb", 1024, "largest pread, KiB")
	originMBps := flag.Float64("origin-mbps", 0, "emulated CDN cap, MiB/s (0: the model fills in half the load time)")
	flag.Float64Var(&cfg.Faults.Reset, "reset", soak.DefaultFaults.Reset, "share of content responses reset mid-body")
	flag.Float64Var(&cfg.Faults.Status5xx, "5xx", soak.DefaultFaults.Status5xx, "share of content responses answered 503")
	flag.Float64Var(&cfg.Faults.Flip, "flip", soak.DefaultFaults.Flip, "share of content responses with one flipped byte")
	modes := flag.String("modes", "default,strict-verify", "modes to soak, in order: default, strict-verify")
	flag.DurationVar(&cfg.ReadTimeout, "read-timeout", 30*time.Second, "the daemon's --read-timeout")
	flag.DurationVar(&cfg.WaitTimeout, "wait-timeout", 5*time.Minute, "weightfs wait --timeout")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "model bytes and every random draw")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the work dir (model, cache, daemon logs)")
	flag.Parse()
	cfg.Size, cfg.MaxRead = *sizeMB<<20, *maxKB<<10
	cfg.OriginBytesPerSec = int64(*originMBps * (1 << 20))
	if cfg.Faults == (faultproxy.Rates{}) {
		fmt.Fprintln(os.Stderr, "soak: every fault rate is 0; the soak would inject nothing (set -reset, -5xx or -flip)")
		os.Exit(2)
	}
	for _, name := range strings.Split(*modes, ",") {
		m, ok := modeNamed(strings.TrimSpace(name))
		if !ok {
			fmt.Fprintf(os.Stderr, "soak: -modes: unknown mode %q (want default or strict-verify)\n", name)
			os.Exit(2)
		}
		cfg.Modes = append(cfg.Modes, m)
	}
	cfg.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := soak.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(rep.Markdown())
	if len(rep.Failures()) > 0 {
		os.Exit(1)
	}
}

func modeNamed(name string) (soak.Mode, bool) {
	for _, m := range soak.DefaultModes {
		if m.Name == name {
			return m, true
		}
	}
	return soak.Mode{}, false
}
