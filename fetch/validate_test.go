package fetch

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func paths(fs []File) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Path)
	}
	return strings.Join(out, ",")
}

// Fails before this change: CheckManifest did not exist, and a listing with
// any of these entries reached chunkcache (2^63-1: panic makeslice; 2^60:
// out of memory) or the tree ("a" beside "a/b": a/b invisible).
func TestCheckManifestRefusesImpossibleEntriesAndKeepsTheRest(t *testing.T) {
	sum := func(v string) Checksum { return Checksum{Algo: AlgoSHA256, Value: v} }
	for _, tc := range []struct {
		name  string
		files []File
		keep  string
		errs  []string // substrings, one per refused entry, in order
	}{
		{"clean", []File{{Path: "config.json", Size: 10}, {Path: "unet/model.safetensors", Size: MaxFileSize}}, "config.json,unet/model.safetensors", nil},
		{"huge sizes",
			[]File{{Path: "ok.json", Size: 3}, {Path: "big", Size: 1 << 60}, {Path: "max", Size: math.MaxInt64}, {Path: "neg", Size: -1}},
			"ok.json",
			[]string{`"big": listed size 1152921504606846976 is impossible`, `"max": listed size 9223372036854775807 is impossible`, `"neg": listed size -1 is impossible`}},
		{"bad paths",
			[]File{{Path: "../etc/passwd"}, {Path: "/abs"}, {Path: "a//b"}, {Path: ""}, {Path: "x\x00y"}, {Path: strings.Repeat("n", 256)}, {Path: "fine", Size: 1}},
			"fine",
			[]string{`"../etc/passwd": ".." segment`, `"/abs": absolute path`, `"a//b": empty path segment`, `"": empty path`, `"x\x00y": NUL byte`, "a path segment of 256 bytes"}},
		{"duplicates",
			[]File{{Path: "a", Size: 1, Checksum: sum("11")}, {Path: "a", Size: 1, Checksum: sum("11")}, {Path: "a", Size: 2, Checksum: sum("22")}},
			"a",
			[]string{`"a": listed twice with the same size`, `"a": listed twice with different contents (size 2, checksum sha256:22, against 1, sha256:11)`}},
		{"file beside a directory",
			[]File{{Path: "a", Size: 0}, {Path: "a/b", Size: 5}, {Path: "a/c/d", Size: 6}, {Path: "a/c", Size: 1}, {Path: "z", Size: 1}},
			"a/b,a/c/d,z",
			[]string{`"a": the listing also has files under it (such as "a/b")`, `"a/c": the listing also has files under it (such as "a/c/d")`}},
		{"refused file makes no directory",
			// "a/b" is refused for its size, so "a" is no directory and stays.
			[]File{{Path: "a", Size: 1}, {Path: "a/b", Size: -5}},
			"a",
			[]string{`"a/b": listed size -5`}},
		{"names with control characters are fine", []File{{Path: "we\nird\x1b[2J", Size: 1}}, "we\nird\x1b[2J", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Manifest{Files: tc.files}
			errs := CheckManifest(m)
			if got := paths(m.Files); got != tc.keep {
				t.Errorf("kept %q, want %q", got, tc.keep)
			}
			if len(errs) != len(tc.errs) {
				t.Fatalf("%d errors, want %d: %v", len(errs), len(tc.errs), errs)
			}
			for i, err := range errs {
				if !strings.Contains(err.Error(), tc.errs[i]) {
					t.Errorf("error %d = %q\nwant it to contain %q", i, err, tc.errs[i])
				}
				var ee *EntryError
				if !errors.As(err, &ee) {
					t.Errorf("error %d is not an *EntryError: %#v", i, err)
				}
				if strings.ContainsAny(err.Error(), "\n\x1b\x00") {
					t.Errorf("error %d holds a raw control character: %q", i, err)
				}
			}
		})
	}
}

// Fails before this change: the sum wrapped, and `ls` printed a negative
// total for a listing holding a size of 2^63-1.
func TestTotalSizeSaturates(t *testing.T) {
	m := &Manifest{Files: []File{{Size: math.MaxInt64}, {Size: 10}, {Size: -3}}}
	if got := m.TotalSize(); got != math.MaxInt64 {
		t.Fatalf("TotalSize = %d, want %d", got, int64(math.MaxInt64))
	}
	if got := AddSizes(1, 2); got != 3 {
		t.Fatalf("AddSizes(1, 2) = %d", got)
	}
}

func TestQuoteNameAndEscapeControl(t *testing.T) {
	for _, tc := range []struct{ in, name, msg string }{
		{"config.json", "config.json", "config.json"},
		{"unet/diffusion pytorch.safetensors", "unet/diffusion pytorch.safetensors", "unet/diffusion pytorch.safetensors"},
		{"模型/权重.bin", "模型/权重.bin", "模型/权重.bin"},
		{"", `""`, ""},
		{"a\nb", `"a\nb"`, "a\nb"},
		{"\x1b[2Jgone", `"\x1b[2Jgone"`, `\x1b[2Jgone`},
		{"del\x7f", `"del\x7f"`, `del\x7f`},
		{"c1\u0085\u009b", `"c1\u0085\u009b"`, `c1\u0085\u009b`},
		{"bad\xffutf8", `"bad\xffutf8"`, `bad\xffutf8`},
		{"rtl\u202egpj.exe", `"rtl\u202egpj.exe"`, `rtl\u202egpj.exe`},
		{`has"quote`, `"has\"quote"`, `has"quote`},
		{`back\slash`, `"back\\slash"`, `back\slash`},
		{"tab\there", `"tab\there"`, "tab\there"},
	} {
		if got := QuoteName(tc.in); got != tc.name {
			t.Errorf("QuoteName(%q) = %s, want %s", tc.in, got, tc.name)
		}
		if got := EscapeControl(tc.in); got != tc.msg {
			t.Errorf("EscapeControl(%q) = %s, want %s", tc.in, got, tc.msg)
		}
	}
}
