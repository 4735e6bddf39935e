package chunkcache

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weightfs/weightfs/fetch"
)

// healOptions: chunks of 1 MiB in 256 KiB ranges, so a chunk holds four
// blocks that are compared separately; quick retries.
func healOptions(strict bool) Options {
	return Options{ChunkSize: 1 << 20, RangeSize: 256 << 10, FetchTimeout: 5 * time.Second, ReadaheadMax: -1,
		StrictVerify: strict, RetryMax: 200 * time.Millisecond}
}

// A fifth of the origin's responses carry a flipped byte. Every file must
// end verified and right, with no restart, and with --strict-verify no
// reader sees a wrong byte. Fails before this change: the refetch after the
// first mismatch drew corruption too, and the file was failed for good
// ("failed verification twice").
func TestRandomCorruptionHeals(t *testing.T) {
	for _, strict := range []bool{false, true} {
		name := map[bool]string{false: "stream then verify", true: "strict"}[strict]
		t.Run(name, func(t *testing.T) {
			src := newFakeSource()
			src.flipRate = 0.2
			c := openTestCache(t, healOptions(strict))
			var objs []*Object
			var files []fetch.File
			for i, n := range []int{6<<20 + 12345, 3 << 20, 300 << 10} {
				f := src.add("model-0000"+string(rune('1'+i))+".safetensors", n, uint64(i+10))
				files = append(files, f)
				objs = append(objs, testObject(t, c, f, src))
			}
			for i, o := range objs {
				p := make([]byte, files[i].Size)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				n, err := o.ReadAt(ctx, p, 0)
				cancel()
				if err != nil || n != len(p) {
					t.Fatalf("%s: read %d bytes, err %v", files[i].Path, n, err)
				}
				if strict && !bytes.Equal(p, src.content(files[i].Path)) {
					t.Fatalf("%s: a strict reader was served wrong bytes", files[i].Path)
				}
			}
			for i, o := range objs {
				waitFor(t, files[i].Path+" verified", func() bool { return o.Done() || o.Failed() })
				if !o.Done() {
					t.Fatalf("%s ended %+v", files[i].Path, o.Stats())
				}
				p := make([]byte, files[i].Size)
				if _, err := o.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, src.content(files[i].Path)) {
					t.Fatalf("%s after healing: err %v, bytes right %v", files[i].Path, err, bytes.Equal(p, src.content(files[i].Path)))
				}
				if strict && o.Stats().ServedBad {
					t.Errorf("%s: served_bad under --strict-verify", files[i].Path)
				}
			}
		})
	}
}

// A file whose bytes were served and then failed verification is named:
// served_bad in its stats and one ServedBad event. Fails before this change:
// nothing told readers that what they loaded was wrong.
func TestServedThenFailedIsReported(t *testing.T) {
	src := newFakeSource()
	f := src.add("w.safetensors", 2<<20, 5)
	src.corrupt[f.Path] = 1 // the first range only: healing then succeeds
	ev := &recEvents{}
	o := healOptions(false)
	o.Events = ev
	c := openTestCache(t, o)
	obj := testObject(t, c, f, src)
	p := make([]byte, f.Size)
	if _, err := obj.ReadAt(context.Background(), p, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "verified", obj.Done)
	if st := obj.Stats(); !st.ServedBad {
		t.Fatalf("stats %+v: want served_bad", st)
	}
	if got := ev.servedBad(); len(got) != 1 || got[0] != f.Path {
		t.Fatalf("ServedBad events %v, want [%s]", got, f.Path)
	}
	if _, err := obj.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, src.content(f.Path)) {
		t.Fatal("bytes wrong after healing")
	}
}

// An outage longer than the fetch's own retries: the chunks that failed are
// retried in the background, and once the origin is back the file
// completes with nobody reading. Fails before this change: the failed
// chunk was never fetched again and the file stayed "filling" for good.
func TestFailedChunksRetriedUntilOriginHeals(t *testing.T) {
	src := newFakeSource()
	f := src.add("w.safetensors", 3<<20, 6)
	c := openTestCache(t, healOptions(false))
	o := testObject(t, c, f, src)
	src.mu.Lock()
	src.down = true
	src.mu.Unlock()
	for i := 0; i < o.NumChunks(); i++ {
		if err := o.Ensure(context.Background(), i); err == nil {
			t.Fatal("fetch during the outage succeeded")
		}
	}
	if st := o.Stats(); st.Failures == 0 || st.Error == "" {
		t.Fatalf("stats during the outage %+v: want failures and an error", st)
	}
	time.Sleep(300 * time.Millisecond) // a few retries fail too
	src.mu.Lock()
	src.down = false
	src.mu.Unlock()
	waitFor(t, "the file to complete after the outage", o.Done)
	if st := o.Stats(); st.Failures != 0 || st.Error != "" {
		t.Fatalf("stats after healing %+v: want no failures, no error", st)
	}
}

// Sizes from a listing are untrusted: impossible ones are refused with an
// error naming the file, never sized against. Fails before this change:
// 2^60 ran out of memory and 2^63-1 panicked in makeslice.
func TestImpossibleSizesRefused(t *testing.T) {
	c := openTestCache(t, healOptions(false))
	for _, size := range []int64{-1, 1 << 60, 1<<63 - 1, MaxFileSize + 1} {
		_, err := c.Object("test", fetch.File{Path: "huge.bin", Size: size}, newFakeSource())
		if err == nil || !strings.Contains(err.Error(), "huge.bin") || !strings.Contains(err.Error(), "impossible") {
			t.Errorf("size %d: err = %v, want a refusal naming the file", size, err)
		}
	}
}

// The cache holds gated weights: no other local user may read them.
// Fails before this change: dirs were 0755 and files 0644.
func TestCacheIsPrivate(t *testing.T) {
	old := umask(0o022)
	defer umask(old)
	src := newFakeSource()
	f := src.add("w.safetensors", 2<<20, 7)
	dir := t.TempDir() // made 0755 below: narrowed, as it holds only the cache
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	o := healOptions(false)
	o.Dir = dir
	c := openTestCache(t, o)
	obj := testObject(t, c, f, src)
	if _, err := obj.ReadAt(context.Background(), make([]byte, f.Size), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "verified", obj.Done)
	if err := c.SaveManifest("k", &fetch.Manifest{}); err != nil {
		t.Fatal(err)
	}
	n := 0
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		n++
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if n < 6 {
		t.Fatalf("walked %d entries; the test saw nothing", n)
	}
}

// A cache that may not store (its disk cannot hold the model) still serves
// right bytes, says why in the status, and a strict read fails at once
// rather than wait for a verification that cannot come.
func TestDisabledStoreStreams(t *testing.T) {
	for _, strict := range []bool{false, true} {
		src := newFakeSource()
		f := src.add("w.safetensors", 2<<20, 8)
		c := openTestCache(t, healOptions(strict))
		c.DisableStore(errors.New("cache dir has 1 GiB free, the model needs 2 GiB"))
		o := testObject(t, c, f, src)
		p := make([]byte, f.Size)
		_, err := o.ReadAt(context.Background(), p, 0)
		if strict {
			if err == nil || !strings.Contains(err.Error(), "needs 2 GiB") {
				t.Fatalf("strict read: err %v, want the reason", err)
			}
			continue
		}
		if err != nil || !bytes.Equal(p, src.content(f.Path)) {
			t.Fatalf("read: err %v", err)
		}
		if st := o.Stats(); st.CachedBytes != 0 || !strings.Contains(st.Error, "needs 2 GiB") {
			t.Fatalf("stats %+v: want nothing cached and the reason", st)
		}
	}
}

// A strict reader of a file whose origin fails fast waits out its deadline
// without spinning: the failed chunks are the retrier's, on its backoff.
// Fails before this change: each failed fill woke the reader, which filled
// again at once (thousands of origin requests a second).
func TestStrictReaderOnAFailingOriginDoesNotSpin(t *testing.T) {
	src := newFakeSource()
	f := src.add("w.safetensors", 4<<20, 9)
	src.mu.Lock()
	src.down = true
	src.mu.Unlock()
	opts := healOptions(true)
	opts.RetryMax = time.Minute // the default: the first retry comes after 0.5-1 s
	c := openTestCache(t, opts)
	o := testObject(t, c, f, src)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := o.ReadAt(ctx, make([]byte, 100), 0); err == nil {
		t.Fatal("a strict read of a file that cannot be fetched succeeded")
	}
	// 4 chunks of 4 ranges, tried once by the fill and at most once more
	// by the retrier within the second.
	if n := src.reads.Load(); n > 2*16 {
		t.Fatalf("%d origin reads in 1 s for 16 ranges: the strict reader spins", n)
	}
}
