package main

import (
	"sort"
	"testing"
	"time"
)

func TestNaturalOrder(t *testing.T) {
	names := []string{
		"model.layers.10.mlp.down_proj.weight",
		"model.norm.weight",
		"model.layers.2.self_attn.q_proj.weight",
		"lm_head.weight",
		"model.layers.2.mlp.down_proj.weight",
		"model.layers.1.input_layernorm.weight",
		"model.embed_tokens.weight",
	}
	want := []string{
		"lm_head.weight",
		"model.embed_tokens.weight",
		"model.layers.1.input_layernorm.weight",
		"model.layers.2.mlp.down_proj.weight",
		"model.layers.2.self_attn.q_proj.weight",
		"model.layers.10.mlp.down_proj.weight",
		"model.norm.weight",
	}
	sort.Slice(names, func(i, j int) bool { return naturalCompare(names[i], names[j]) < 0 })
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("natural order:\n got %q\nwant %q", names, want)
		}
	}
}

func TestMedianAndSpread(t *testing.T) {
	s := time.Second
	tests := []struct {
		name string
		runs []cell
		want time.Duration
		err  bool
	}{
		{"odd", []cell{{d: 3 * s}, {d: 1 * s}, {d: 2 * s}}, 2 * s, false},
		{"an error is skipped", []cell{{d: 3 * s}, {err: errTest}, {d: 1 * s}}, 3 * s, false},
		{"all failed", []cell{{err: errTest}}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := median(tc.runs)
			if (m.err != nil) != tc.err || m.d != tc.want {
				t.Fatalf("median = %v (err %v), want %v (err %v)", m.d, m.err, tc.want, tc.err)
			}
		})
	}
	if got := spread([]cell{{d: 1500 * time.Millisecond}, {err: errTest}, {d: 20 * time.Millisecond}}); got != "1.50 s, error, 20 ms" {
		t.Errorf("spread = %q", got)
	}
}

func TestParseSizesAndMountEscapes(t *testing.T) {
	got, err := parseSizes(" 2048,1024,,1024")
	if err != nil || len(got) != 2 || got[0] != 1024 || got[1] != 2048 {
		t.Errorf("parseSizes = %v, %v; want [1024 2048]", got, err)
	}
	if _, err := parseSizes("1G"); err == nil {
		t.Error("parseSizes(1G): want an error")
	}
	if got := unescapeMount(`/tmp/a\040b`); got != "/tmp/a b" {
		t.Errorf("unescapeMount = %q", got)
	}
}

var errTest = errTestType{}

type errTestType struct{}

func (errTestType) Error() string { return "test error" }

func TestPrefetchOff(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--workers", "8"}, false},
		{[]string{"--prefetch=false"}, true},
		{[]string{"-prefetch=0"}, true},
		{[]string{"--prefetch=true"}, false},
		{[]string{"--prefetch"}, false},
		{[]string{"--progress-every=1s", "--prefetch=F"}, true},
	} {
		if got := prefetchOff(tc.args); got != tc.want {
			t.Errorf("prefetchOff(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
