package fetch

import (
	"regexp"
	"strconv"
	"testing"
)

// Content-Range decides whether a 206 body is the asked bytes of the file,
// for every origin that reads one (hf, s3src). Whatever the header, the
// parser takes exactly "bytes a-b/total" in ASCII digits with a <= b <
// total, and gives those numbers. Seeds from the two copies it replaced:
// "bytes 0-9/-10" (once taken for "*"), "bytes +1-9/10" and "bytes 0-9/5"
// were accepted by s3src's.
func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 10-19/5000", "bytes 0-0/1", "bytes 007-8/9",
		"bytes 0-9223372036854775806/9223372036854775807", "bytes 0-9223372036854775807/9223372036854775808",
		"bytes 5-4/10", "bytes 0-9/9", "bytes 0-9/5", "bytes -1-9/10", "bytes +1-9/10", "bytes 0-9/*", "bytes 0-9/**",
		"bytes 0-9/-10", "bytes 0-9/+10", " bytes 0-0/1 ", "bytes  0-9/10", "bytes 0-9/10 ", "Bytes 0-9/10",
		"bytes 0--9/10", "bytes 1152921504606846976-1152921504606846977/1152921504606846978",
		"bytes 1152921504606846976-1152921504606846977/*", "bytes 0-9/10\x00", "bytes 0-9/1\n0", ""} {
		f.Add(s)
	}
	strict := regexp.MustCompile(`^bytes ([0-9]+)-([0-9]+)/([0-9]+)$`)
	f.Fuzz(func(t *testing.T, v string) {
		start, last, total, ok := ParseContentRange(v)
		want := false
		var ws, wl, wt int64
		if m := strict.FindStringSubmatch(v); m != nil {
			var e1, e2, e3 error
			ws, e1 = strconv.ParseInt(m[1], 10, 64)
			wl, e2 = strconv.ParseInt(m[2], 10, 64)
			wt, e3 = strconv.ParseInt(m[3], 10, 64)
			want = e1 == nil && e2 == nil && e3 == nil && ws <= wl && wl < wt
		}
		if ok != want || (ok && (start != ws || last != wl || total != wt)) {
			t.Fatalf("ParseContentRange(%q) = %d, %d, %d, %v; want %d, %d, %d, %v", v, start, last, total, ok, ws, wl, wt, want)
		}
	})
}
