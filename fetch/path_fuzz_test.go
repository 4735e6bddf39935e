package fetch

import (
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

var hostileNames = []string{"a", "a/b", "..", "a/../b", "../../etc/passwd", "/abs", "a//b", "a/", "./a", ".", "",
	"x\x00y", "new\nline", "esc\x1b[2J", "del\x7f", "c1\u0085", "bidi\u202e", "bad\xffutf8", `quo"te`, `back\slash`,
	strings.Repeat("x", 256), strings.Repeat("x", 255) + "/y"}

// ValidPath is the one gate between a listed name and a path under the
// mountpoint: what it accepts must be a clean relative path that cannot
// leave the volume folder, and the names it accepts must print safely.
func FuzzValidPath(f *testing.F) {
	for _, p := range hostileNames {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		ok := ValidPath(p)
		clean := p != "" && path.Clean(p) == p && !path.IsAbs(p) && p != "." && p != ".." &&
			!strings.HasPrefix(p, "../") && !strings.ContainsRune(p, 0)
		if ok != clean {
			t.Fatalf("ValidPath(%q) = %v, but as a clean relative path it is %v", p, ok, clean)
		}
		if ok {
			const vol = "/mnt/vol"
			if j := filepath.Join(vol, p); !strings.HasPrefix(j, vol+"/") || j[len(vol)+1:] != p {
				t.Fatalf("%q joined under %s is %q", p, vol, j)
			}
			if !ValidPath(p+"/"+p) || ValidPath(p+"/") || ValidPath("/"+p) || ValidPath(p+"/..") {
				t.Fatalf("ValidPath(%q) is not closed under joining", p)
			}
		}
		if reason := pathProblem(p); (reason == "") && !ok {
			t.Fatalf("pathProblem(%q) accepts what ValidPath refuses", p)
		}
		q := QuoteName(p)
		if hasUnprintable(q) {
			t.Fatalf("QuoteName(%q) = %q still holds a control character or invalid UTF-8", p, q)
		}
		if q != p {
			if u, err := strconv.Unquote(q); err != nil || u != p {
				t.Fatalf("QuoteName(%q) = %q does not unquote to the name (%q, %v)", p, q, u, err)
			}
		}
		if e := EscapeControl(p); hasUnprintable(strings.NewReplacer("\n", "", "\t", "").Replace(e)) {
			t.Fatalf("EscapeControl(%q) = %q still holds a control character or invalid UTF-8", p, e)
		}
	})
}

func hasUnprintable(s string) bool {
	return !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !strconv.IsPrint(r) })
}
