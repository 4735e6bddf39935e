package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestWriteReplacesWholeWithItsMode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(string, []byte, fs.FileMode) error
	}{{"Write", Write}, {"WriteNoSync", WriteNoSync}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "verified.json")
			for i, mode := range []fs.FileMode{0o644, 0o600, 0o640} {
				want := []byte(fmt.Sprintf(`{"version":%d}`, i))
				if err := tc.write(p, want, mode); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(p)
				if err != nil || string(got) != string(want) {
					t.Fatalf("content %q (%v), want %q", got, err, want)
				}
				if fi, _ := os.Stat(p); fi.Mode().Perm() != mode {
					t.Fatalf("mode %o, want %o", fi.Mode().Perm(), mode)
				}
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Fatalf("temporaries left behind: %v", ents)
			}
		})
	}
}

// Concurrent writers of one path each use their own temporary file, so
// the result is one writer's content whole (a shared "path.tmp" let two
// writers interleave bytes or rename each other's half-written file).
func TestConcurrentWritersNeverMix(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x")
	contents := map[string]bool{}
	var wg sync.WaitGroup
	for i := range 16 {
		b := make([]byte, 64<<10)
		for j := range b {
			b[j] = byte('a' + i)
		}
		contents[string(b)] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := WriteNoSync(p, b, 0o644); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, _ := os.ReadFile(p)
	if !contents[string(got)] {
		t.Fatalf("content is a mix of writers (%d bytes)", len(got))
	}
}

func TestWriteFailsInAMissingFolderAndLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := Write(filepath.Join(dir, "no", "such", "f"), []byte("x"), 0o644); err == nil {
		t.Fatal("want an error")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}
