package fetch

import (
	"math"
	"strings"
	"testing"
)

// A listing decoded into a manifest, however hostile, goes through
// CheckManifest before anything is sized from it: whatever it keeps must
// be servable as a tree, and every file it drops must be named once.
func FuzzCheckManifest(f *testing.F) {
	f.Add("config.json\nunet/model.safetensors", int64(10), int64(1<<30))
	f.Add("a\na/b", int64(0), int64(5))
	f.Add("a/b\na", int64(5), int64(0))
	f.Add("a\na", int64(1), int64(2))
	f.Add("../x\n/abs", int64(1), int64(1))
	f.Add("big\nok", int64(1<<60), int64(1))
	f.Add("max\nneg", int64(math.MaxInt64), int64(-1))
	f.Add("we\x1bird\nnew\x00line", int64(1), int64(1))
	f.Add(strings.Repeat("n", 300)+"\nx/y/z\nx/y", int64(1), int64(2))
	f.Fuzz(func(t *testing.T, names string, size0, size1 int64) {
		var m Manifest
		for i, p := range strings.Split(names, "\n") {
			size := size0
			if i%2 == 1 {
				size = size1
			}
			m.Files = append(m.Files, File{Path: p, Size: size})
		}
		in := len(m.Files)
		errs := CheckManifest(&m)
		if len(m.Files)+len(errs) != in {
			t.Fatalf("%d kept + %d refused != %d listed", len(m.Files), len(errs), in)
		}
		seen := map[string]bool{}
		for _, f := range m.Files {
			if !ValidPath(f.Path) || f.Size < 0 || f.Size > MaxFileSize || seen[f.Path] {
				t.Fatalf("kept %q (size %d)", f.Path, f.Size)
			}
			seen[f.Path] = true
		}
		for _, f := range m.Files {
			for dir := f.Path; strings.Contains(dir, "/"); {
				dir = dir[:strings.LastIndexByte(dir, '/')]
				if seen[dir] {
					t.Fatalf("kept both the file %q and %q under it", dir, f.Path)
				}
			}
		}
		var total int64
		for _, f := range m.Files {
			total = AddSizes(total, f.Size)
		}
		if m.TotalSize() != total || total < 0 {
			t.Fatalf("TotalSize %d, want %d", m.TotalSize(), total)
		}
		for _, err := range errs {
			if strings.ContainsFunc(err.Error(), func(r rune) bool { return r < ' ' || r == 0x7f }) {
				t.Fatalf("error prints a control character raw: %q", err)
			}
		}
	})
}
