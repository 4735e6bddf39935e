// Package objstoretest holds checks the object-store origins' tests share.
// Only tests import it.
package objstoretest

import (
	"strings"
	"testing"

	"github.com/weightfs/weightfs/fetch"
)

// CheckListed runs fl and a neighbour (a sibling path, "" for none)
// through fetch.CheckManifest and checks that what is kept can be served:
// a size the cache can hold, a clean path, no path that is both a file and
// a directory, and every file either kept or refused.
func CheckListed(t testing.TB, fl fetch.File, neighbour string) {
	t.Helper()
	m := &fetch.Manifest{Files: []fetch.File{fl}}
	if neighbour != "" {
		m.Files = append(m.Files, fetch.File{Path: neighbour, Size: 1})
	}
	listed := len(m.Files)
	errs := fetch.CheckManifest(m)
	if len(errs)+len(m.Files) != listed {
		t.Fatalf("%d listed, %d kept, %d refused", listed, len(m.Files), len(errs))
	}
	for _, k := range m.Files {
		if k.Size < 0 || k.Size > fetch.MaxFileSize || !fetch.ValidPath(k.Path) {
			t.Fatalf("kept impossible file %q of %d bytes", k.Path, k.Size)
		}
		for _, o := range m.Files {
			if strings.HasPrefix(o.Path, k.Path+"/") {
				t.Fatalf("kept %q as a file and as the directory of %q", k.Path, o.Path)
			}
		}
	}
}
