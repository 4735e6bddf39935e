package chunkcache

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
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
	n := int64(binary.LittleEndian.Uint64(b[:]))
	if n <= 0 || n > maxHeader || 8+n > o.file.Size {
		return 0, fmt.Errorf("%s: not a safetensors file (header length %d)", o.file.Path, n)
	}
	return n, nil
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
	var m map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &m); err != nil {
		return nil, fmt.Errorf("%s: safetensors header: %w", o.file.Path, err)
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
		spans = append(spans, tensorSpan{Name: name, Begin: 8 + n + t.Offsets[0], End: 8 + n + t.Offsets[1]})
	}
	return spans, nil
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
