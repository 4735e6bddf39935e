package objstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
)

func bucket(repo string, allow []string) Bucket {
	return New(config.Entry{Index: 1, RepoID: repo, Kind: config.KindS3, AllowPatterns: allow}, "s3", "S3", nil, fetch.RetryPolicy{})
}

func TestBucketNamesAndPrefix(t *testing.T) {
	for _, c := range []struct{ repo, prefix, where string }{
		{"s3://bkt/models/llama", "models/llama/", `model_cache[1] (s3://bkt/models/llama): object "a/b.bin" at s3://bkt/models/llama/a/b.bin`},
		{"s3://bkt/models/llama/", "models/llama/", `model_cache[1] (s3://bkt/models/llama/): object "a/b.bin" at s3://bkt/models/llama/a/b.bin`},
		{"s3://bkt", "", `model_cache[1] (s3://bkt): object "a/b.bin" at s3://bkt/a/b.bin`},
	} {
		b := bucket(c.repo, nil)
		if b.Prefix != c.prefix || b.Name != "bkt" {
			t.Errorf("%s: bucket %q prefix %q", c.repo, b.Name, b.Prefix)
		}
		if got := b.Where("a/b.bin"); got != c.where {
			t.Errorf("Where = %q, want %q", got, c.where)
		}
	}
}

func TestCheckRead(t *testing.T) {
	b := bucket("s3://bkt/p", nil)
	f := fetch.File{Path: "w.bin", Size: 100, Version: "v"}
	for _, c := range []struct {
		off     int64
		n       int
		version string
		want    string // "" for no error
	}{
		{0, 100, "v", ""},
		{90, 10, "v", ""},
		{95, 10, "v", "range [95, 105) is outside the object's 100 bytes"},
		{-1, 10, "v", "range [-1, 9) is outside"},
		{9223372036854775800, 100, "v", "is outside the object's 100 bytes"}, // off+n wraps
		{0, 10, "", "no ETag recorded, so the read cannot be pinned; list the entry again"},
	} {
		err := b.CheckRead(f, c.off, c.n, c.version, "ETag")
		if c.want == "" {
			if err != nil {
				t.Errorf("[%d,+%d): %v", c.off, c.n, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || !fetch.IsPermanent(err) ||
			!strings.HasPrefix(err.Error(), `model_cache[1] (s3://bkt/p): object "w.bin" at s3://bkt/p/w.bin`) {
			t.Errorf("[%d,+%d) %q: err = %v, want a permanent error with %q", c.off, c.n, c.version, err, c.want)
		}
	}
}

// The listing keeps files the patterns select under the prefix, skips
// folder markers and unusable names, refuses one broken object alone, and
// says which of the two "nothing" cases it met.
func TestListing(t *testing.T) {
	b := bucket("s3://bkt/p", []string{"*.bin"})
	l := b.NewListing("keys")
	if l.Where() != "listing s3://bkt/p/ for model_cache[1] (s3://bkt/p)" {
		t.Fatalf("Where = %q", l.Where())
	}
	file := func(rel string) (fetch.File, error) {
		if rel == "broken.bin" {
			return fetch.File{}, errors.New("no size")
		}
		return fetch.File{Path: rel, Size: 1}, nil
	}
	for _, c := range []struct {
		name string
		kept bool
	}{
		{"p/", false}, {"p/dir/", false}, {"q/other.bin", false}, {"p/../x.bin", false}, {"p//a.bin", false},
		{"p/z.bin", true}, {"p/a/y.bin", true}, {"p/config.json", false}, {"p/broken.bin", false},
	} {
		if got := l.Add(c.name, file); got != c.kept {
			t.Errorf("Add(%q) = %v, want %v", c.name, got, c.kept)
		}
	}
	files, err := l.Done()
	if err != nil || len(files) != 2 || files[0].Path != "a/y.bin" || files[1].Path != "z.bin" {
		t.Fatalf("Done = %v, %v", files, err)
	}

	none := b.NewListing("keys")
	none.Add("p/config.json", file)
	_, err = none.Done()
	if !errors.Is(err, fetch.ErrNoMatchingFiles) || !fetch.IsPermanent(err) ||
		err.Error() != `model_cache[1] (s3://bkt/p): no object matches allow_patterns ["*.bin"] and ignore_patterns [] under bucket "bkt" prefix "p/" (1 objects there)` {
		t.Errorf("nothing selected: %v", err)
	}
	_, err = b.NewListing("keys").Done()
	if !errors.Is(err, fetch.ErrNoMatchingFiles) ||
		err.Error() != `model_cache[1] (s3://bkt/p): no objects at all under bucket "bkt" prefix "p/", so nothing for allow_patterns ["*.bin"] / ignore_patterns []: check repo_id` {
		t.Errorf("nothing there: %v", err)
	}

	pages := b.NewListing("keys")
	for i := 0; i < maxPages; i++ {
		if err := pages.Page(); err != nil {
			t.Fatalf("page %d: %v", i, err)
		}
	}
	if err := pages.Page(); err == nil || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), "more than 10000 pages; narrow the prefix") {
		t.Errorf("page past the cap: %v", err)
	}
}

// Concurrent first callers build once; a failed build is not remembered;
// a caller waiting on another's slow build gives up with its own ctx.
func TestLazy(t *testing.T) {
	var l Lazy[int]
	var builds atomic.Int32
	fail := errors.New("transient")
	if _, err := l.Get(t.Context(), "e", func(context.Context) (*int, error) { builds.Add(1); return nil, fail }); !errors.Is(err, fail) {
		t.Fatalf("failed build: %v", err)
	}
	release := make(chan struct{})
	build := func(context.Context) (*int, error) {
		builds.Add(1)
		<-release
		v := 7
		return &v, nil
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := l.Get(t.Context(), "e", build); err != nil || *v != 7 {
				t.Errorf("Get = %v, %v", v, err)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond) // let one start building, the others wait
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if _, err := l.Get(ctx, "model_cache[0]", build); !errors.Is(err, context.DeadlineExceeded) ||
		!strings.HasPrefix(err.Error(), "model_cache[0]: ") {
		t.Errorf("waiter with a short ctx: %v", err)
	}
	close(release)
	wg.Wait()
	if n := builds.Load(); n != 2 || l.Load() == nil || *l.Load() != 7 {
		t.Errorf("builds = %d (want the failed one and one more), Load = %v", n, l.Load())
	}
}
