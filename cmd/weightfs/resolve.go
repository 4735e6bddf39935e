package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/chunkcache"
	"github.com/weightfs/weightfs/chunkcache/store/manifests"
	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/sources"
	wfs "github.com/weightfs/weightfs/fs"
)

// resolved is one entry with its source and manifest.
type resolved struct {
	entry    config.Entry
	origin   string
	src      fetch.Source
	manifest *fetch.Manifest
	fromDisk bool // the manifest was loaded, not listed
}

// manifestStore keeps listings between starts: chunkcache/store/manifests,
// which ls and fetch open alone, without a cache and its workers.
type manifestStore interface {
	Load(key string) (*fetch.Manifest, error)
	Save(key string, m *fetch.Manifest) error
}

var _ manifestStore = (*manifests.Store)(nil)

// resolveAll lists every entry in parallel. A saved manifest is used as is
// (no network), unless refresh is set; listing errors of all entries are
// reported together.
func resolveAll(ctx context.Context, entries []config.Entry, env sources.Env, saved manifestStore, refresh bool) ([]*resolved, error) {
	out := make([]*resolved, len(entries))
	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = resolveOne(ctx, e, env, saved, refresh)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func resolveOne(ctx context.Context, e config.Entry, env sources.Env, saved manifestStore, refresh bool) (*resolved, error) {
	src, err := sources.Open(e, env)
	if err != nil {
		return nil, err
	}
	r := &resolved{entry: e, origin: sources.Origin(e), src: src}
	key := manifestKey(e, env)
	if !refresh {
		m, err := saved.Load(key)
		if err != nil {
			return nil, err
		}
		if m != nil {
			refuseImpossible(e, m, env.Logger)
			r.manifest, r.fromDisk = m, true
			return r, nil
		}
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	m, err := src.List(lctx)
	if err != nil {
		return nil, err
	}
	m.Volume = e.VolumeFolder
	// Saved as listed, before the check, so every later start that loads
	// it names the refused entries again.
	if err := saved.Save(key, m); err != nil {
		return nil, fmt.Errorf("%s: saving its manifest: %w", e.Name(), err)
	}
	refuseImpossible(e, m, env.Logger)
	r.manifest = m
	return r, nil
}

// refuseImpossible drops the files of m that cannot be served as listed
// (fetch.CheckManifest) and logs each one once, at ERROR: the rest of the
// entry is served.
func refuseImpossible(e config.Entry, m *fetch.Manifest, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	for _, err := range fetch.CheckManifest(m) {
		var ee *fetch.EntryError
		if errors.As(err, &ee) {
			log.Error("refusing a listed file; the entry's other files are served", "entry", e.Name(), "file", ee.Path, "reason", ee.Reason)
			continue
		}
		log.Error("refusing a listed file; the entry's other files are served", "entry", e.Name(), "err", err)
	}
}

// resolveConfig is the common start of commands that only need manifests
// (ls, fetch): load and check the config, then resolve every entry, with the
// saved manifests as a cache. done releases what it opened; ctx ends on
// SIGINT/SIGTERM.
func resolveConfig(c *cli.Context, log *slog.Logger) (rs []*resolved, ctx context.Context, done func(), err error) {
	entries, err := config.Load(c.String("config"))
	if err != nil {
		return nil, nil, nil, err
	}
	logWarnings(log, entries)
	warnExposedCredentials(log, entries, sourceEnv(c, log))
	saved, err := manifests.Open(c.String("cache-dir"))
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	done = stop
	if rs, err = resolveAll(ctx, entries, sourceEnv(c, log), saved, c.Bool("refresh")); err != nil {
		done()
		return nil, nil, nil, err
	}
	return rs, ctx, done, nil
}

// opener serves fs opens from the chunk cache, each volume through its own
// source with the retry policy around it.
type opener struct {
	cache *chunkcache.Cache
	vols  map[string]*resolved
	read  map[string]fetch.RangeReader
}

func newOpener(cache *chunkcache.Cache, rs []*resolved, policy fetch.RetryPolicy) *opener {
	o := &opener{cache: cache, vols: map[string]*resolved{}, read: map[string]fetch.RangeReader{}}
	for _, r := range rs {
		o.vols[r.entry.VolumeFolder] = r
		o.read[r.entry.VolumeFolder] = fetch.Retrying(r.src, policy)
	}
	return o
}

func (o *opener) Open(vol string, f fetch.File) (wfs.Content, error) {
	r, ok := o.vols[vol]
	if !ok {
		return nil, fmt.Errorf("unknown volume %q", vol)
	}
	return o.cache.Object(r.origin, f, o.read[vol])
}

// objects opens the cache object of every file of every volume (no I/O
// beyond the cache dir), for the prefetcher and for status.
func (o *opener) objects() ([]*chunkcache.Object, error) {
	var out []*chunkcache.Object
	for vol, r := range o.vols {
		for _, f := range r.manifest.Files {
			obj, err := o.cache.Object(r.origin, f, o.read[vol])
			if err != nil {
				return nil, err
			}
			out = append(out, obj)
		}
	}
	return out, nil
}

func volumesOf(rs []*resolved) []wfs.Volume {
	vs := make([]wfs.Volume, 0, len(rs))
	for _, r := range rs {
		vs = append(vs, wfs.Volume{Name: r.entry.VolumeFolder, Manifest: r.manifest})
	}
	return vs
}

func logWarnings(log *slog.Logger, entries []config.Entry) {
	for _, w := range config.Warnings(entries) {
		log.Warn(w)
	}
}

// humanBytes is n in binary units (KiB, MiB, ...), for messages.
func humanBytes(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

func volumeOnly(entries []config.Entry) ([]config.Entry, error) {
	var legacy []string
	var out []config.Entry
	for _, e := range entries {
		if e.UseVolume {
			out = append(out, e)
		} else {
			legacy = append(legacy, e.RepoID)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no entry has use_volume: true (%s): those are baked into the Hugging Face cache with `weightfs fetch`, not mounted", strings.Join(legacy, ", "))
	}
	return out, nil
}
