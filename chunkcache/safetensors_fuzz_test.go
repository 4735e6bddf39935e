package chunkcache

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/weightfs/weightfs/fetch"
)

// stFile is a safetensors file's start: the 8-byte length n, then hdr.
func stFile(n uint64, hdr string) []byte {
	b := binary.LittleEndian.AppendUint64(nil, n)
	return append(b, hdr...)
}

// A safetensors header comes from the origin, so its length prefix and its
// offsets are untrusted numbers: the prefetcher allocates the header from
// the one and turns the others into chunk indexes.
//
// Seeds that fail before this change: a header of [0, 2^62] in a small file
// was accepted, and tensorOrder then queued 2^62/chunk jobs (out of memory);
// reversed and negative offsets were accepted too.
func FuzzSafetensorsHeader(f *testing.F) {
	ok := `{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`
	f.Add(stFile(uint64(len(ok)), ok), int64(8+len(ok)+12))
	f.Add(stFile(1<<63, ok), int64(1<<40))                  // 2^63 is negative as an int64
	f.Add(stFile(math.MaxUint64, ok), int64(math.MaxInt64)) // -1 as an int64
	f.Add(stFile(1<<60, ok), int64(1<<62))                  // over maxHeader
	f.Add(stFile(uint64(len(ok)), ok), int64(-1))           // negative file size
	f.Add(stFile(uint64(len(ok)), ok), int64(math.MinInt64))
	f.Add(stFile(0, ""), int64(8))
	f.Add([]byte{1, 2, 3}, int64(3))
	for _, h := range []string{
		`{"a":{"data_offsets":[0,4611686018427387904]}}`, // 2^62: a chunk loop of 2^62/cs
		`{"a":{"data_offsets":[0,9223372036854775807]}}`, // 2^63-1: base+b overflows
		`{"a":{"data_offsets":[-1,4]}}`,
		`{"a":{"data_offsets":[8,4]}}`,
		`{"a":{"data_offsets":[0]}}`,
		`{"a":{"data_offsets":"x"},"b":[1,2]}`,
		`{"../../etc/passwd":{"data_offsets":[0,1]},"a\u0000b":{"data_offsets":[1,2]},"n\nl\u001b[2J":{"data_offsets":[2,3]}}`,
		`{"a":{"data_offsets":[0,1]},"a/b":{"data_offsets":[1,2]}}`,
		`[]`, `null`, `{`, `{"a":{"data_offsets":[0,1]}} trailing`,
	} {
		f.Add(stFile(uint64(len(h)), h), int64(8+len(h)+16))
	}
	f.Fuzz(func(t *testing.T, file []byte, size int64) {
		const path = "model.safetensors"
		if len(file) >= 8 {
			var b [8]byte
			copy(b[:], file)
			n, err := parseHeaderLen(path, b, size)
			if err == nil && (n <= 0 || n > maxHeader || n > size-8 || size < 8) {
				t.Fatalf("header length %d accepted for a file of %d bytes", n, size)
			}
			if err != nil && !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the file: %v", err)
			}
		}
		hdr := file
		if len(file) >= 8 {
			hdr = file[8:]
		}
		spans, err := parseSpans(path, hdr, size)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(hdr, &m) != nil {
			t.Fatalf("accepted a header that is not a JSON object: %q", hdr)
		}
		base := 8 + int64(len(hdr))
		seen := map[string]bool{}
		for _, s := range spans {
			if s.Begin < base || s.Begin > s.End || s.End > size {
				t.Fatalf("span %q [%d, %d) is outside data [%d, %d)", s.Name, s.Begin, s.End, base, size)
			}
			if _, listed := m[s.Name]; !listed || s.Name == "__metadata__" || seen[s.Name] {
				t.Fatalf("span %q is not a tensor of the header (or is repeated)", s.Name)
			}
			seen[s.Name] = true
		}
	})
}

// The index names the shards; weightfs only trusts it for ordering, but a
// shard name that is not a clean relative path must not be taken as one.
//
// The seeds with "..", "/abs" and "" shards fail before this change: the
// inline decoder in hasIndex accepted any weight_map.
func FuzzSafetensorsIndex(f *testing.F) {
	f.Add([]byte(`{"metadata":{"total_size":12},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{"a":"../model.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{"a":"/etc/passwd"}}`))
	f.Add([]byte(`{"weight_map":{"a":""}}`))
	f.Add([]byte(`{"weight_map":{"a":"x\u0000y"}}`))
	f.Add([]byte(`{"weight_map":{"a\n\u001b[2J":"a/b.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{}}`))
	f.Add([]byte(`{"weight_map":{"a":1}}`))
	f.Add([]byte(`{"metadata":{"total_size":9223372036854775807}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		const path = "model.safetensors.index.json"
		wm, err := parseIndex(path, b)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(wm) == 0 {
			t.Fatal("accepted an index without a weight_map")
		}
		for name, shard := range wm {
			if !fetch.ValidPath(shard) {
				t.Fatalf("tensor %q maps to shard %q, not a clean relative path", name, shard)
			}
		}
		var ref struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(b, &ref); err != nil || !reflect.DeepEqual(ref.WeightMap, wm) {
			t.Fatalf("weight_map %q differs from encoding/json's %q (%v)", wm, ref.WeightMap, err)
		}
	})
}
