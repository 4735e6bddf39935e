package main

import (
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/chunkcache"
	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/internal/diskspace"
)

// storeFits checks, before the prefetch starts, that the cache dir's
// filesystem can hold what the model still needs: `weightfs fetch` checks
// its --dest the same way. When it cannot, the prefetch would fill the disk
// and then fail chunk after chunk; instead this logs one ERROR saying how
// much is needed and free and what to do, turns the cache's store off (reads
// stream from the origin, and /status shows why) and returns false: the
// caller must not start the prefetch, which would only fetch bytes nobody
// keeps.
//
// Cache data files are sparse, so what a file still needs is its size less
// the bytes already cached. With --direct-io (reserved) they are
// preallocated when opened, so opening objs already took their room from
// the free space (or failed), and nothing more is needed.
func storeFits(cache *chunkcache.Cache, objs []*chunkcache.Object, reserved bool, log *slog.Logger) bool {
	if reserved {
		return true
	}
	free, _, ok := diskspace.Free(cache.Dir())
	if !ok {
		return true // unknown here: let writes find out
	}
	need := spaceNeeded(objs)
	if _, limit := cache.CacheUsage(); limit > 0 {
		need = min(need, limit) // --cache-size: never more than the budget
	}
	if need <= free {
		return true
	}
	err := fmt.Errorf("not caching: the cache dir %s has %s free, and the model needs %s more; reads stream from the origin instead",
		cache.Dir(), humanBytes(free), humanBytes(need))
	log.Error("the model does not fit in the cache dir: not caching and not prefetching; every read is fetched from the origin",
		"cache_dir", cache.Dir(), "needed", humanBytes(need), "free", humanBytes(free),
		"fix", "free space there, or pass a --cache-dir on a bigger disk, then restart")
	cache.DisableStore(err)
	return false
}

// spaceNeeded is what objs still need on disk: their sizes less what is
// cached, summed without overflow.
func spaceNeeded(objs []*chunkcache.Object) int64 {
	var need int64
	for _, o := range objs {
		st := o.Stats()
		need = fetch.AddSizes(need, max(st.Size-st.CachedBytes, 0))
	}
	return need
}

// cacheSize is --cache-size in bytes, 0 when unset.
func cacheSize(c *cli.Context) (int64, error) {
	v := c.String("cache-size")
	if v == "" {
		return 0, nil
	}
	n, err := chunkcache.ParseSize(v)
	if err != nil {
		return 0, fmt.Errorf("--cache-size: %w (as 200GiB or 500GB)", err)
	}
	return n, nil
}

func checkCacheSize(c *cli.Context, _ string) error {
	_, err := cacheSize(c)
	return err
}
