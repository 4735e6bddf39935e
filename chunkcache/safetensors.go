package chunkcache

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/weightfs/weightfs/fetch"
)

// maxHeader mirrors the safetensors library's cap on the JSON header.
const maxHeader = 100_000_000

// tensorSpan is where one tensor's bytes lie in its file.
type tensorSpan struct {
	Name       string
	Begin, End int64 // absolute file offsets, [Begin, End)
}

// headerLen reads the 8-byte header length prefix of a safetensors file.
func headerLen(ctx context.Context, o *Object) (int64, error) {
	var b [8]byte
	if _, err := o.readInternal(ctx, b[:], 0); err != nil {
		return 0, err
	}
	return parseHeaderLen(o.file.Path, b, o.file.Size)
}

// parseHeaderLen checks the little-endian header length prefix of a
// safetensors file of size bytes before anything is allocated from it: a
// hostile or broken file can claim 2^63 bytes, which as an int64 is negative.
func parseHeaderLen(path string, b [8]byte, size int64) (int64, error) {
	u := binary.LittleEndian.Uint64(b[:])
	if size < 8 || u == 0 || u > maxHeader || int64(u) > size-8 {
		return 0, fmt.Errorf("%s: not a safetensors file (header length %d, file size %d)", path, u, size)
	}
	return int64(u), nil
}

// readSpans parses a safetensors header into tensor spans.
func readSpans(ctx context.Context, o *Object) ([]tensorSpan, error) {
	n, err := headerLen(ctx, o)
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, n)
	if _, err := o.readInternal(ctx, hdr, 8); err != nil {
		return nil, err
	}
	return parseSpans(o.file.Path, hdr, o.file.Size)
}

// parseSpans turns the JSON header hdr of a safetensors file of size bytes
// into tensor spans. A tensor whose entry is not an object with two integer
// data_offsets is skipped (the prefetch order only needs the rest); one
// whose offsets are reversed or lie outside the file's data fails the whole
// header, since every chunk index is computed from them and the file cannot
// be what it claims.
func parseSpans(path string, hdr []byte, size int64) ([]tensorSpan, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &m); err != nil {
		return nil, fmt.Errorf("%s: safetensors header: %w", path, err)
	}
	base := 8 + int64(len(hdr)) // where the data begins
	if base > size {
		return nil, fmt.Errorf("%s: safetensors header of %d bytes does not fit the file's %d", path, len(hdr), size)
	}
	spans := make([]tensorSpan, 0, len(m))
	for name, raw := range m {
		if name == "__metadata__" {
			continue
		}
		var t struct {
			Offsets [2]int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &t); err != nil {
			continue
		}
		a, b := t.Offsets[0], t.Offsets[1]
		// b <= size-base keeps base+b from overflowing.
		if a < 0 || a > b || b > size-base {
			return nil, fmt.Errorf("%s: safetensors tensor %q: data_offsets [%d, %d] are not within the file's %d data bytes",
				path, name, a, b, size-base)
		}
		spans = append(spans, tensorSpan{Name: name, Begin: base + a, End: base + b})
	}
	return spans, nil
}

// parseIndex reads a model.safetensors.index.json: its weight_map, tensor
// name to shard file (relative to the index's folder). An index without
// one, or naming a shard that is not a clean relative path, is refused.
func parseIndex(path string, b []byte) (map[string]string, error) {
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: safetensors index: %w", path, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: safetensors index has no weight_map", path)
	}
	for name, shard := range idx.WeightMap {
		if !fetch.ValidPath(shard) {
			return nil, fmt.Errorf("%s: safetensors index maps tensor %q to %q, not a file path", path, name, shard)
		}
	}
	return idx.WeightMap, nil
}

// naturalLess orders names the way transformers materialises them:
// digit runs compare as numbers, so layers.2 comes before layers.10.
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := isDigit(a[0]), isDigit(b[0])
		if da && db {
			ra, rb := digitRun(a), digitRun(b)
			na, nb := strings.TrimLeft(a[:ra], "0"), strings.TrimLeft(b[:rb], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[ra:], b[rb:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digitRun(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// sortSpansNatural sorts spans by tensor name in natural order.
func sortSpansNatural(spans []tensorSpan) {
	sort.SliceStable(spans, func(i, j int) bool { return naturalLess(spans[i].Name, spans[j].Name) })
}
