package objstore

import (
	"strings"
	"testing"
)

// An object name becomes a file path under the prefix exactly when it
// lies under the prefix, is not the prefix itself and is not a folder
// placeholder; the path is the rest of the name. (These assertions stood
// in both s3src's and gcssrc's listing fuzz targets before the two shared
// RelPath.)
func FuzzRelPath(f *testing.F) {
	for _, name := range []string{"p/..", "p/a/../b", "p/../../etc/passwd", "p//a", "p/a/", "p/", "p/./a",
		"p/x\x00y", "p/new\nline", "p/esc\x1b[2J", "q/outside", "p/" + strings.Repeat("x", 256), "p/config.json"} {
		f.Add("p/", name)
	}
	f.Add("models/llama", "models/llama2/x.bin")
	f.Add("", "a/b")
	f.Fuzz(func(t *testing.T, prefix, name string) {
		rel, isFile := RelPath(prefix, name)
		if !isFile {
			if strings.HasPrefix(name, prefix) && name != prefix && !strings.HasSuffix(name, "/") {
				t.Fatalf("name %q under prefix %q taken for a folder", name, prefix)
			}
			return
		}
		if prefix+rel != name || rel == "" || strings.HasSuffix(rel, "/") {
			t.Fatalf("name %q under prefix %q became path %q", name, prefix, rel)
		}
	})
}
