package main

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/weightfs/weightfs/chunkcache"
)

// logProgress logs background streaming every period until complete.
func logProgress(ctx context.Context, p *chunkcache.Prefetcher, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	var lastBytes int64
	last := time.Now()
	for {
		pr := p.Progress()
		if pr.Complete {
			log.Info("prefetch complete: every file cached and verified", "files", pr.Files, "size", humanBytes(pr.TotalBytes),
				"elapsed", time.Duration(pr.Seconds*float64(time.Second)).Round(time.Millisecond))
			return
		}
		if pr.FilesDone+pr.Failed == pr.Files {
			// Settled with failures: they were named at ERROR; ticking on
			// would only wake an idle daemon.
			log.Warn("prefetch settled with files that failed verification for good", "files", pr.Files, "failed", pr.Failed)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pr = p.Progress()
		rate := float64(pr.CachedBytes-lastBytes) / time.Since(last).Seconds()
		lastBytes, last = pr.CachedBytes, time.Now()
		eta := "unknown"
		if rate > 0 {
			eta = time.Duration(float64(pr.TotalBytes-pr.CachedBytes) / rate * float64(time.Second)).Round(time.Second).String()
		}
		if !pr.Complete {
			log.Info("prefetch progress", "percent", math.Round(float64(pr.CachedBytes)*1000/float64(max(pr.TotalBytes, 1)))/10,
				"cached", humanBytes(pr.CachedBytes), "total", humanBytes(pr.TotalBytes), "rate", humanBytes(int64(rate))+"/s",
				"eta", eta, "files_done", pr.FilesDone, "files", pr.Files, "files_failed", pr.Failed)
		}
	}
}

// limitResources keeps the daemon's memory flat and its file limit high.
// The soft Go memory limit is what the daemon needs live: the memory tier,
// one buffer per chunk fetch in flight (kept in a pool of that size) and
// 64 MiB for go-fuse's request buffers and the rest; near it the GC
// collects promptly, so RSS does not drift up with garbage. Every cached
// file holds two descriptors (data and presence log; three with
// --direct-io).
func limitResources(memTier, inflight int64, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(max(memTier, 0) + inflight + 64<<20)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			log.Debug("could not raise the open file limit", "err", err)
		}
	}
}
