package chunkcache

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string // a piece of the error, when one is expected
	}{
		{in: "0", want: 0},
		{in: "4096", want: 4096},
		{in: "  4096  ", want: 4096},
		{in: "12B", want: 12},
		{in: "1KB", want: 1000},
		{in: "1kb", want: 1000},
		{in: "3MB", want: 3e6},
		{in: "2GB", want: 2e9},
		{in: "1TB", want: 1e12},
		{in: "1KiB", want: 1024},
		{in: "8MiB", want: 8 << 20},
		{in: "200GiB", want: 200 << 30},
		{in: "200 GiB", want: 200 << 30},
		{in: "200gib", want: 200 << 30},
		{in: "2TiB", want: 2 << 40},
		{in: "1.5GiB", want: 3 << 29},
		{in: "1.5 TB", want: 1.5e12},
		{in: "0.5KiB", want: 512},
		{in: "1.0001KB", want: 1000}, // rounded down to whole bytes
		{in: "8388607TiB", want: 8388607 << 40},
		{in: "9223372036854775807", want: 9223372036854775807},
		{in: "", err: "empty"},
		{in: "   ", err: "empty"},
		{in: "-1", err: "negative"},
		{in: "-5GiB", err: "negative"},
		{in: "GiB", err: "not a number"},
		{in: "abc", err: "not a number"},
		{in: "10XB", err: "unknown unit"},
		{in: "10 gigs", err: "unknown unit"},
		{in: "10GiBs", err: "unknown unit"},
		{in: "1e9", err: "unknown unit"},
		{in: "0x10", err: "unknown unit"},
		{in: "1.2.3GB", err: "not a number"},
		{in: ".5GB", err: "not a number"},
		{in: "5.GB", err: "not a number"},
		{in: "1.5", err: "whole"},
		{in: "9223372036854775808", err: "too large"},
		{in: "8388608TiB", err: "too large"},
		{in: "99999999999999999999999TB", err: "too large"},
	} {
		got, err := ParseSize(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseSize(%q) = %d, %v; want an error about %q", tc.in, got, err, tc.err)
			} else if !strings.Contains(err.Error(), `"`+tc.in+`"`) {
				t.Errorf("ParseSize(%q): error %q does not quote the input", tc.in, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 512: "512 B", 1024: "1 KiB", 3 << 29: "1.5 GiB", 200 << 30: "200 GiB", 1<<20 + 1<<18: "1.25 MiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
