package main

import "testing"

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{"0", 0, false},
		{"1048576", 1 << 20, false},
		{"512MiB", 512 << 20, false},
		{"2GiB", 2 << 30, false},
		{"50MB/s", 50e6, false},
		{"1.25GB", 1.25e9, false},
		{"64 kib", 64 << 10, false},
		{"10b", 10, false},
		{"fast", 0, true},
		{"-1MB", 0, true},
	}
	for _, tc := range tests {
		got, err := parseBytes(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d (error %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}
