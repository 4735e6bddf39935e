package hf

import (
	"regexp"
	"strconv"
	"testing"
)

// Content-Range decides whether a 206 body is the asked bytes of the file.
// The parser must take exactly "bytes a-b/total" in digits with a <= b < total.
func FuzzHubContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 10-19/5000", "bytes 0-0/1", "bytes 007-8/9",
		"bytes 0-9223372036854775806/9223372036854775807", "bytes 0-9223372036854775807/9223372036854775808",
		"bytes 5-4/10", "bytes 0-9/9", "bytes -1-9/10", "bytes +1-9/10", "bytes 0-9/*", "bytes 0-9/-10",
		"bytes  0-9/10", "bytes 0-9/10 ", "Bytes 0-9/10", "bytes 0--9/10", "bytes 1152921504606846976-1152921504606846977/1152921504606846978",
		"bytes 0-9/10\x00", "bytes 0-9/1\n0", ""} {
		f.Add(s)
	}
	strict := regexp.MustCompile(`^bytes ([0-9]+)-([0-9]+)/([0-9]+)$`)
	f.Fuzz(func(t *testing.T, v string) {
		a, b, total, ok := parseContentRange(v)
		m := strict.FindStringSubmatch(v)
		want := false
		var wa, wb, wt int64
		if m != nil {
			var e1, e2, e3 error
			wa, e1 = strconv.ParseInt(m[1], 10, 64)
			wb, e2 = strconv.ParseInt(m[2], 10, 64)
			wt, e3 = strconv.ParseInt(m[3], 10, 64)
			want = e1 == nil && e2 == nil && e3 == nil && wa <= wb && wb < wt
		}
		if ok != want || (ok && (a != wa || b != wb || total != wt)) {
			t.Fatalf("parseContentRange(%q) = %d, %d, %d, %v; want %d, %d, %d, %v", v, a, b, total, ok, wa, wb, wt, want)
		}
	})
}
