// Package objstore holds what the object-store origins (s3src, gcssrc)
// share: a model_cache entry's bucket and prefix and the messages that name
// them, the client built once on first use, and the bookkeeping and
// failures of a paginated listing. It knows no store's SDK: each origin
// keeps its own requests, error codes and checksums.
package objstore

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
)

// Bucket is an entry's place in a store. Fields are set by New and not
// changed after.
type Bucket struct {
	Entry  config.Entry
	Name   string // the bucket
	Prefix string // "" or ending in '/'
	Scheme string // "s3" or "gs", for URLs in messages
	Log    *slog.Logger
	Retry  fetch.RetryPolicy // listing and metadata requests
}

// New returns the Bucket of e: its prefix made a folder, log (nil:
// discard) tagged with the repo, and retries logged as service's.
func New(e config.Entry, scheme, service string, log *slog.Logger, retry fetch.RetryPolicy) Bucket {
	b := Bucket{Entry: e, Name: e.Bucket(), Prefix: e.Prefix(), Scheme: scheme, Log: log, Retry: retry}
	if b.Prefix != "" && !strings.HasSuffix(b.Prefix, "/") {
		// A prefix names a folder: "models/llama" must not also serve
		// "models/llama2/...".
		b.Prefix += "/"
	}
	if b.Log == nil {
		b.Log = slog.New(slog.DiscardHandler)
	}
	b.Log = b.Log.With("repo", e.RepoID)
	if b.Retry.OnRetry == nil {
		b.Retry.OnRetry = func(err error) { b.Log.Warn(service+" request failed, retrying", "err", err) }
	}
	return b
}

// URL is the store URL of a key, e.g. "s3://bkt/p/a/b.bin".
func (b *Bucket) URL(key string) string { return b.Scheme + "://" + b.Name + "/" + key }

// Where names an object for messages:
// `model_cache[0] (s3://bkt/p): object "a/b.bin" at s3://bkt/p/a/b.bin`.
func (b *Bucket) Where(path string) string {
	return fmt.Sprintf("%s: object %q at %s", b.Entry.Name(), path, b.URL(b.Prefix+path))
}

// CheckRead refuses, permanently, a read that the listed file cannot hold
// or that no listed version pins (version is "" when none was recorded).
// what names the version for the hint, e.g. "ETag".
func (b *Bucket) CheckRead(f fetch.File, off int64, n int, version, what string) error {
	end := off + int64(n)
	if off < 0 || end > f.Size || end < off {
		return fetch.Permanent(fmt.Errorf("%s: range [%d, %d) is outside the object's %d bytes", b.Where(f.Path), off, end, f.Size))
	}
	if version == "" {
		return fetch.Permanent(fmt.Errorf("%s: no %s recorded, so the read cannot be pinned; list the entry again", b.Where(f.Path), what))
	}
	return nil
}

// Or is v, or def when v is empty: an option's default, for hints.
func Or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// OrGetenv is getenv, or os.Getenv when nil.
func OrGetenv(getenv func(string) string) func(string) string {
	if getenv == nil {
		return os.Getenv
	}
	return getenv
}

// Lazy is a client built on first use. A failed build is not remembered,
// so a transient failure is retried by the next caller; callers waiting for
// another's build still honour their own ctx. The zero value is ready.
type Lazy[T any] struct {
	once  sync.Once
	init  chan struct{} // a one-slot semaphore around build
	ready atomic.Pointer[T]
}

// Load is the client, or nil before it is built.
func (l *Lazy[T]) Load() *T { return l.ready.Load() }

// Get returns the client, building it with build unless it exists; name
// is the entry, for a ctx error.
func (l *Lazy[T]) Get(ctx context.Context, name string, build func(context.Context) (*T, error)) (*T, error) {
	if c := l.ready.Load(); c != nil {
		return c, nil
	}
	l.once.Do(func() { l.init = make(chan struct{}, 1) })
	select {
	case l.init <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", name, ctx.Err())
	}
	defer func() { <-l.init }()
	if c := l.ready.Load(); c != nil {
		return c, nil
	}
	c, err := build(ctx)
	if err != nil {
		return nil, err
	}
	l.ready.Store(c)
	return c, nil
}
