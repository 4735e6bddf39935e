package soak

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	lat := func(ms ...int64) LoadStats {
		var s LoadStats
		for _, m := range ms {
			s.LatNs = append(s.LatNs, m*int64(time.Millisecond))
		}
		return s
	}
	cases := []struct {
		name string
		s    LoadStats
		q    float64
		want time.Duration
	}{
		{"empty", lat(), 0.5, 0},
		{"one", lat(7), 0.99, 7 * time.Millisecond},
		{"median of unsorted", lat(5, 1, 3, 2, 4), 0.5, 3 * time.Millisecond},
		{"p99 of 100 is the 99th", lat(seq(100)...), 0.99, 99 * time.Millisecond},
		{"max", lat(9, 100, 3), 1, 100 * time.Millisecond},
	}
	for _, tc := range cases {
		if got := tc.s.Quantile(tc.q); got != tc.want {
			t.Errorf("%s: Quantile(%v) = %s, want %s", tc.name, tc.q, got, tc.want)
		}
	}
}

func seq(n int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i) + 1
	}
	return out
}

func TestDiffBytes(t *testing.T) {
	cases := []struct {
		got, want string
		n         int64
	}{
		{"", "", 0},
		{"abcd", "abcd", 0},
		{"abXd", "abcd", 1},
		{"XXXX", "abcd", 4},
	}
	for _, tc := range cases {
		if n := diffBytes([]byte(tc.got), []byte(tc.want)); n != tc.n {
			t.Errorf("diffBytes(%q, %q) = %d, want %d", tc.got, tc.want, n, tc.n)
		}
	}
}

// Read sizes stay in [1, max] and cover both ends: header peeks and full
// megabyte reads.
func TestReadLenRange(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const maxLen = 1 << 20
	small, large := 0, 0
	for i := 0; i < 10000; i++ {
		n := readLen(rng, maxLen)
		if n < 1 || n > maxLen {
			t.Fatalf("readLen = %d, want 1..%d", n, maxLen)
		}
		if n <= 100 {
			small++
		}
		if n >= maxLen/2 {
			large++
		}
	}
	if small < 2000 || large < 200 {
		t.Errorf("%d reads of <= 100 B and %d of >= 512 KiB in 10000; want a log-uniform spread", small, large)
	}
}

func TestMergeKeepsWrongFilesOnce(t *testing.T) {
	var c collector
	c.merge(&LoadStats{Ops: 2, WrongBytes: 1, WrongFiles: []string{"a"}, LatNs: []int64{1}})
	c.merge(&LoadStats{Ops: 3, WrongBytes: 2, WrongFiles: []string{"a", "b"}, LatNs: []int64{2, 3}, LastError: "boom"})
	s := c.result()
	if s.Ops != 5 || s.WrongBytes != 3 || len(s.LatNs) != 3 || s.LastError != "boom" || strings.Join(s.WrongFiles, ",") != "a,b" {
		t.Errorf("merged %+v", s)
	}
}

func TestFlaggedMatchesVolumePrefix(t *testing.T) {
	bad := map[string]bool{"llama/model-00001-of-00004.safetensors": true}
	cases := map[string]bool{
		"model-00001-of-00004.safetensors": true,
		"model-00002-of-00004.safetensors": false,
		"1-of-00004.safetensors":           false,
	}
	for rel, want := range cases {
		if got := flagged(bad, rel); got != want {
			t.Errorf("flagged(%q) = %v, want %v", rel, got, want)
		}
	}
}

func TestMarkdownNamesFailuresAndUnrunWait(t *testing.T) {
	r := &Report{Modes: []ModeReport{{Mode: "strict-verify", Files: 10, Wait: waitResult{Code: -1},
		Readers:  LoadStats{Ops: 3, Bytes: 3 << 20, WrongOps: 1, WrongBytes: 2, LatNs: []int64{int64(time.Millisecond)}},
		Failures: []string{"2 wrong bytes reached readers"}}}}
	md := r.Markdown()
	for _, want := range []string{
		"| strict-verify | pread | 3 | 3 | 1 | 2 | 0 | 0 | 1.0 ms | 1.0 ms | 1.0 ms |",
		"| not run | 0/10 | 0/10 | 1 |",
		"- strict-verify: 2 wrong bytes reached readers",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
