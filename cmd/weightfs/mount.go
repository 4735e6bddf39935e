package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/chunkcache"
	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
	wfs "github.com/weightfs/weightfs/fs"
)

func mountCommand() *cli.Command {
	return &cli.Command{
		Name:  "mount",
		Usage: "mount every use_volume entry under --mountpoint/<volume_folder>, streaming content on demand (foreground)",
		Flags: []cli.Flag{
			configFlag, cacheDirFlag, secretsDirFlag, dataDirFlag, refreshFlag, logLevelFlag,
			&cli.StringFlag{Name: "mountpoint", Aliases: []string{"m"}, Value: "/app/model_cache", Usage: "where the volume folders appear"},
			positiveDuration(&cli.DurationFlag{Name: "read-timeout", Value: 90 * time.Second, Usage: "a read that cannot be served in this time fails with EIO"}),
			positiveDuration(&cli.DurationFlag{Name: "fetch-timeout", Value: 30 * time.Second, Usage: "deadline of one request attempt to an origin (ranged GETs and listing pages)"}),
			intIn(&cli.IntFlag{Name: "fetch-retries", Value: 4, Usage: "attempts per ranged GET before the read fails"}, 1, maxRetries),
			int64In(&cli.Int64Flag{Name: "memory-cache-mb", Value: 32, Usage: "budget of the in-memory chunk tier, MiB (0 disables)"}, 0, maxBudgetMB),
			int64In(&cli.Int64Flag{Name: "chunk-mb", Value: chunkcache.DefaultChunkSize >> 20, Usage: "chunk size, MiB"}, 1, maxChunkMB),
			&cli.BoolFlag{Name: "allow-other", Usage: "let other users (e.g. a sidecar's app container) read the mount"},
			&cli.BoolFlag{Name: "passthrough", Value: true, Usage: "hand fully cached, verified files to the kernel (FUSE passthrough) where it allows"},
			&cli.BoolFlag{Name: "prefetch", Value: true, Usage: "stream the whole model into the cache in the background, in the order loaders read it"},
			&cli.BoolFlag{Name: "direct-io", Usage: "move bytes to and from the cache dir with O_DIRECT, so a cold load keeps one copy of the model in the page cache, not two: for hosts short of memory (buffered where the filesystem refuses)"},
			intIn(&cli.IntFlag{Name: "workers", Value: 16, Usage: "background chunk fetches in flight (each split into parallel ranges)"}, 1, maxWorkers),
			int64In(&cli.Int64Flag{Name: "readahead-max-mb", Value: 512, Usage: "largest readahead window of a sequential reader, MiB (0 disables)"}, 0, maxBudgetMB),
			positiveDuration(&cli.DurationFlag{Name: "progress-every", Value: 5 * time.Second, Usage: "how often prefetch progress is logged"}),
			&cli.BoolFlag{Name: "strict-verify", Usage: "reads of a file wait until the whole file is verified against its checksum, so no reader ever sees a byte that later fails verification (slower first reads; prefetch order is unchanged)"},
			&cli.BoolFlag{Name: "fuse-debug", Usage: "log every FUSE request"},
			&cli.StringFlag{Name: "cache-size", Action: checkCacheSize,
				Usage: "bound the local cache dir with LRU eviction, in human units (200GiB, 500GB); default: unbounded. Never evicts a chunk being read or a file open with passthrough"},
			sharedCacheFlag, sharedCredsFlag, sharedEndpointFlag, sharedTimeoutFlag, sharedLeaseFlag,
			controlAddrFlag,
		},
		Action: runMount,
	}
}

func runMount(c *cli.Context) error {
	log := newLogger(c)
	start := time.Now()
	entries, err := config.Load(c.String("config"))
	if err != nil {
		return err
	}
	if entries, err = volumeOnly(entries); err != nil {
		return err
	}
	logWarnings(log, entries)
	warnExposedCredentials(log, entries, sourceEnv(c, log))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tier, err := openSharedTier(ctx, c, log)
	if err != nil {
		return err
	}
	defer tier.Leave() // deferred before cache.Close, so it runs after the cache has closed
	ctl, err := startControl(c, log, entries, sharedSecrets(tier)...)
	if err != nil {
		return err
	}
	defer ctl.close()
	mem := c.Int64("memory-cache-mb") << 20
	if mem == 0 {
		mem = -1
	}
	limitResources(mem, int64(c.Int("workers")+chunkcache.DemandSlack)*c.Int64("chunk-mb")<<20, log)
	ra := c.Int64("readahead-max-mb") << 20
	if ra == 0 {
		ra = -1
	}
	budget, err := cacheSize(c)
	if err != nil {
		return err
	}
	cache, err := chunkcache.Open(chunkcache.Options{
		Shared:       tier,
		CacheSize:    budget,
		Dir:          c.String("cache-dir"),
		ChunkSize:    c.Int64("chunk-mb") << 20,
		MemoryBytes:  mem,
		FetchTimeout: time.Duration(c.Int("fetch-retries")+1) * c.Duration("fetch-timeout"),
		MaxWorkers:   c.Int("workers"),
		ReadaheadMax: ra,
		DirectWrites: c.Bool("direct-io"),
		StrictVerify: c.Bool("strict-verify"),
		Logger:       log,
		Events:       ctl.events(),
	})
	if err != nil {
		return err
	}
	defer cache.Close()
	env := sourceEnv(c, log)
	rs, err := resolveAll(ctx, entries, env, cache.Manifests(), c.Bool("refresh"))
	if err != nil {
		return err
	}
	policy := fetch.RetryPolicy{Attempts: c.Int("fetch-retries"), AttemptTimeout: c.Duration("fetch-timeout"), OnRetry: ctl.metrics.Retried}
	mp := c.String("mountpoint")
	op := newOpener(cache, rs, policy)
	srv, err := wfs.Mount(mp, volumesOf(rs), op, wfs.Options{
		ReadTimeout: c.Duration("read-timeout"),
		AllowOther:  c.Bool("allow-other"),
		Passthrough: c.Bool("passthrough"),
		Debug:       c.Bool("fuse-debug"),
		Logger:      log,
		OnRead:      ctl.metrics.ObserveRead,
	})
	if err != nil {
		return err
	}
	var files int
	var bytes int64
	offline := true
	for _, r := range rs {
		files += len(r.manifest.Files)
		bytes = fetch.AddSizes(bytes, r.manifest.TotalSize())
		offline = offline && r.fromDisk
		log.Info("volume", "folder", r.entry.VolumeFolder, "repo", r.entry.RepoID, "commit", r.manifest.Commit, "files", len(r.manifest.Files), "size", humanBytes(r.manifest.TotalSize()))
	}
	log.Info("listing served", "mountpoint", mp, "volumes", len(rs), "files", files, "size", humanBytes(bytes),
		"from_saved_manifest", offline, "elapsed", time.Since(start).Round(time.Millisecond))

	prefetching := false
	if c.Bool("prefetch") {
		objs, err := op.objects()
		if err != nil {
			log.Error("prefetch disabled: cannot open cache objects", "err", err)
		} else if storeFits(cache, objs, c.Bool("direct-io") && budget == 0, log) { // space.go
			p := cache.StartPrefetch(ctx, objs)
			go logProgress(ctx, p, c.Duration("progress-every"), log)
			prefetching = true
		}
	}
	// Ready once the tree answers; after prefetch starts, so the probe
	// never delays the first fetch. /status says whether it runs.
	ctl.ready(rs, op, prefetching)

	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-ctx.Done():
		log.Info("signal received; unmounting", "mountpoint", mp)
	case <-done:
		log.Warn("mount went away (unmounted from outside)", "mountpoint", mp)
		return nil
	}
	return unmountGracefully(srv, mp, done, log)
}
