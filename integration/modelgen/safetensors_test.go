package modelgen

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestLayoutOrder checks the Rust writer's order: alignment descending, then
// plain string order (layers.10 before layers.2), and the header padding.
func TestLayoutOrder(t *testing.T) {
	ts := []tensorSpec{
		{"layers.2.w", "F16", []int64{3, 5}},
		{"layers.10.w", "F16", []int64{2}},
		{"mask", "BOOL", []int64{3}},
		{"layers.1.scale", "F32", []int64{1}},
		{"b", "BF16", []int64{1}},
		{"idx", "I64", []int64{2}},
		{"empty", "F32", []int64{0, 4}},
	}
	hdr, h := layoutTensors(ts)
	want := []string{"idx", "empty", "layers.1.scale", "b", "layers.10.w", "layers.2.w", "mask"}
	if got := h.Order(); !reflect.DeepEqual(got, want) {
		// "empty" has zero bytes, so it shares its offset with the next
		// tensor; Order breaks the tie by end offset, which keeps it first.
		t.Fatalf("order %v, want %v", got, want)
	}
	n := binary.LittleEndian.Uint64(hdr)
	if int(n) != len(hdr)-8 || len(hdr)%8 != 0 {
		t.Fatalf("N=%d, %d header bytes: 8+N must be the length and a multiple of 8", n, len(hdr))
	}
	js := string(hdr[8:])
	if !strings.HasPrefix(js, `{"__metadata__":{"format":"pt"},"idx":`) {
		t.Fatalf("header starts %q", js[:40])
	}
	if strings.TrimRight(js, " ") != strings.TrimSpace(js) || !strings.HasSuffix(strings.TrimRight(js, " "), "}") {
		t.Fatalf("padding must be trailing spaces after the JSON: %q", js)
	}
	// Offsets in file order, from 0, without holes.
	wantOff := [][2]int64{{0, 16}, {16, 16}, {16, 20}, {20, 22}, {22, 26}, {26, 56}, {56, 59}}
	for i, name := range want {
		ti := h.Tensors[name]
		if [2]int64{ti.Begin, ti.End} != wantOff[i] {
			t.Errorf("%s: offsets [%d,%d), want %v", name, ti.Begin, ti.End, wantOff[i])
		}
	}
}

func TestWriteParseRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ts := []tensorSpec{
		{"model.layers.10.mlp.up_proj.weight", "F16", []int64{64, 32}},
		{"model.layers.2.mlp.up_proj.weight", "F16", []int64{64, 32}},
		{"model.norm.weight", "F16", []int64{32}},
		{"scale", "F32", []int64{8}},
	}
	p := filepath.Join(dir, "x.safetensors")
	written, err := writeSafetensors(p, "x", 9, ts)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parsed, err := ParseHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(parsed, written) {
		t.Fatalf("parsed %+v\nwritten %+v", parsed, written)
	}
	if parsed.Metadata["format"] != "pt" {
		t.Fatalf("metadata %v", parsed.Metadata)
	}
	st, _ := f.Stat()
	if st.Size() != parsed.DataStart+parsed.DataLen() {
		t.Fatalf("file is %d bytes, header says %d", st.Size(), parsed.DataStart+parsed.DataLen())
	}
	if parsed.DataStart%8 != 0 {
		t.Fatalf("data starts at %d, not 8-aligned", parsed.DataStart)
	}
	// Floats are finite: no F16 element has an all-ones exponent.
	data := make([]byte, parsed.DataLen())
	f.ReadAt(data, parsed.DataStart)
	for _, name := range parsed.Order() {
		ti := parsed.Tensors[name]
		if ti.DType != "F16" {
			continue
		}
		for i := ti.Begin; i < ti.End; i += 2 {
			if v := binary.LittleEndian.Uint16(data[i:]); v&0x7C00 == 0x7C00 {
				t.Fatalf("%s: element %d is Inf/NaN (%#04x)", name, (i-ti.Begin)/2, v)
			}
		}
	}
	// Same seed and key: same bytes. Another seed: other bytes.
	again, other := filepath.Join(dir, "y"), filepath.Join(dir, "z")
	writeSafetensors(again, "x", 9, ts)
	writeSafetensors(other, "x", 10, ts)
	a, _ := os.ReadFile(p)
	b, _ := os.ReadFile(again)
	c, _ := os.ReadFile(other)
	if !bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Fatalf("determinism: same seed equal %v, other seed equal %v", bytes.Equal(a, b), bytes.Equal(a, c))
	}
}

func TestParseHeaderRejects(t *testing.T) {
	build := func(js string) []byte {
		b := make([]byte, 8, 8+len(js))
		binary.LittleEndian.PutUint64(b, uint64(len(js)))
		return append(b, js...)
	}
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"huge N", binary.LittleEndian.AppendUint64(nil, MaxHeaderLen+1), "out of range"},
		{"short", build(`{"a":`)[:10], "read"},
		{"not an object", build(` {"a":1}`), "start with"},
		{"bad json", build(`{"a":`), "JSON"},
		{"unknown dtype", build(`{"a":{"dtype":"F17","shape":[1],"data_offsets":[0,2]}}`), "unknown dtype"},
		{"size mismatch", build(`{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,2]}}`), "bytes for shape"},
		{"hole", build(`{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},"b":{"dtype":"F16","shape":[1],"data_offsets":[4,6]}}`), "hole"},
		{"overlap", build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F16","shape":[1],"data_offsets":[2,4]}}`), "hole or overlap"},
		{"not from zero", build(`{"a":{"dtype":"F16","shape":[1],"data_offsets":[2,4]}}`), "want 0"},
		{"bad metadata", build(`{"__metadata__":{"x":1}}`), "__metadata__"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseHeader(bytes.NewReader(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}
