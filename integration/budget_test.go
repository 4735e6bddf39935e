package integration

import (
	"path/filepath"
	"testing"

	"github.com/weightfs/weightfs/chunkcache/store"
	"github.com/weightfs/weightfs/integration/hubemu"
)

// cacheBytesOnDisk is what the cache dir's data files hold on disk
// (allocated blocks, so punched holes do not count).
func cacheBytesOnDisk(t *testing.T, dir string) int64 {
	t.Helper()
	n, err := store.DiskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCacheSizeHoldsUnderModelTwiceItsSize: with --cache-size half the
// model, reading the whole model through the mount (twice) gets every byte
// right, and the cache dir never holds more than the budget and a few
// chunks in flight.
func TestCacheSizeHoldsUnderModelTwiceItsSize(t *testing.T) {
	hub := newHub(t, hubemu.Options{})
	origin := llmRepo(t, hub, 64<<20, 4)
	cache := t.TempDir()
	const budget = 32 << 20
	m := mustMount(t, hub, mountOpts{config: llmConfig, cacheDir: cache, args: []string{"--cache-size", "32MiB", "--chunk-mb", "2"}})
	want := treeSums(t, origin)
	peak := int64(0)
	for pass := 0; pass < 2; pass++ {
		for rel, sum := range want {
			if got := treeSums(t, filepath.Dir(m.path("llm", rel)))[filepath.Base(rel)]; got != sum {
				t.Errorf("pass %d: %s: sha256 %s, want %s", pass, rel, got, sum)
			}
			peak = max(peak, cacheBytesOnDisk(t, cache))
		}
	}
	t.Logf("model %d MiB, budget %d MiB, peak on disk %.1f MiB", 64, budget>>20, float64(peak)/(1<<20))
	if slack := int64(4 * 2 << 20); peak > budget+slack {
		t.Errorf("the cache dir held %d bytes, over the %d-byte budget (+%d slack)", peak, budget, slack)
	}
}
