// Package fetchtest holds the inputs and checks that the origins' tests
// share. Only tests import it.
package fetchtest

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

// AddContentRangeSeeds seeds a fuzz target of one string, a Content-Range,
// with ContentRangeSeeds.
func AddContentRangeSeeds(f *testing.F) {
	for _, s := range ContentRangeSeeds {
		f.Add(s)
	}
}

// ContentRangeSeeds are Content-Range values for a read of bytes 10-19 of
// a 5000-byte file: the exact answer, the same in leading zeros, and near
// misses a confused or hostile server sends (another size, "*", signs,
// spaces, case, NUL, a range off by one). Fuzz targets of the readers
// start from them.
var ContentRangeSeeds = []string{"bytes 10-19/5000", "bytes 010-19/05000", "bytes 10-19/5001", "bytes 10-19/*",
	"bytes 10-19/**", "bytes 10-20/5000", "bytes 9-19/5000", "bytes 0-4999/5000", "bytes +10-19/5000",
	"bytes 10-19/-5000", " bytes 10-19/5000", "bytes 10-19/5000 ", "Bytes 10-19/5000", "bytes 10-19/5000\x00",
	"bytes 10-19/9223372036854775808", ""}
