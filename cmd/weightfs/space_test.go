package main

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/weightfs/weightfs/chunkcache"
	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/internal/diskspace"
)

// Fails before this change: mount never looked at the cache dir's free
// space, so a model bigger than the disk was prefetched until writes failed.
func TestStoreFitsRefusesAModelBiggerThanTheDisk(t *testing.T) {
	dir := t.TempDir()
	free, _, ok := diskspace.Free(dir)
	if !ok {
		t.Skip("free space unknown on this platform")
	}
	for _, tc := range []struct {
		name     string
		size     int64 // of the one file
		reserved bool
		fits     bool
	}{
		{"small", 1 << 20, false, true},
		{"bigger than the disk", free + 1<<30, false, false},
		{"bigger, but reserved at open (--direct-io)", free + 1<<30, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache, err := chunkcache.Open(chunkcache.Options{Dir: t.TempDir(), MemoryBytes: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer cache.Close()
			obj, err := cache.Object("hf:acme/m", fetch.File{Path: "model.safetensors", Size: tc.size}, nopSource{})
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			got := storeFits(cache, []*chunkcache.Object{obj}, tc.reserved, slog.New(slog.NewTextHandler(&logs, nil)))
			if got != tc.fits {
				t.Fatalf("storeFits = %v, want %v; log:\n%s", got, tc.fits, logs.String())
			}
			if tc.fits {
				if logs.Len() != 0 {
					t.Errorf("logged although it fits:\n%s", logs.String())
				}
				return
			}
			out := logs.String()
			for _, want := range []string{
				`level=ERROR msg="the model does not fit in the cache dir: not caching and not prefetching; every read is fetched from the origin"`,
				"cache_dir=" + cache.Dir(), `needed="` + humanBytes(tc.size) + `"`, "free=",
				"--cache-dir on a bigger disk",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks %q:\n%s", want, out)
				}
			}
			if n := strings.Count(logs.String(), "\n"); n != 1 {
				t.Errorf("%d log lines, want 1", n)
			}
			if st := obj.Stats(); !strings.Contains(st.Error, "not caching: the cache dir") {
				t.Errorf("status error %q does not say the store is off", st.Error)
			}
		})
	}
}
