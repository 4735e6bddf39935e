package modelgen

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// MaxHeaderLen is the header size cap of the Rust safetensors library.
const MaxHeaderLen = 100_000_000

var dtypeSizes = map[string]int{
	"F64": 8, "I64": 8, "U64": 8,
	"F32": 4, "I32": 4, "U32": 4,
	"F16": 2, "BF16": 2, "I16": 2, "U16": 2,
	"I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}

// DTypeSize returns the bytes per element of a safetensors dtype.
func DTypeSize(dtype string) (int, bool) {
	n, ok := dtypeSizes[dtype]
	return n, ok
}

// TensorInfo is one tensor of a safetensors header.
type TensorInfo struct {
	DType string
	Shape []int64
	Begin int64 // data_offsets[0], relative to the data buffer
	End   int64 // data_offsets[1], exclusive
}

// Header is a parsed safetensors header.
type Header struct {
	Len       uint64            // N, the JSON length including padding
	DataStart int64             // 8 + N: file offset of the data buffer
	Metadata  map[string]string // __metadata__ (may be nil)
	Tensors   map[string]TensorInfo
}

// DataLen is the size of the data buffer (the largest end offset).
func (h Header) DataLen() int64 {
	var n int64
	for _, t := range h.Tensors {
		n = max(n, t.End)
	}
	return n
}

// Order returns the tensor names in file order (by data offset).
func (h Header) Order() []string {
	names := make([]string, 0, len(h.Tensors))
	for n := range h.Tensors {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := h.Tensors[names[i]], h.Tensors[names[j]]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		return a.End < b.End
	})
	return names
}

// ParseHeader reads and validates a safetensors header the way the Rust
// library does: N within the cap, JSON object, known dtypes, each tensor's
// byte length matching its shape, and offsets that tile the data buffer from
// 0 with no hole and no overlap.
func ParseHeader(r io.ReaderAt) (Header, error) {
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return Header{}, fmt.Errorf("safetensors: read header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n == 0 || n > MaxHeaderLen {
		return Header{}, fmt.Errorf("safetensors: header length %d out of range (1..%d)", n, MaxHeaderLen)
	}
	js := make([]byte, n)
	if _, err := r.ReadAt(js, 8); err != nil {
		return Header{}, fmt.Errorf("safetensors: read %d-byte header: %w", n, err)
	}
	if js[0] != '{' {
		return Header{}, errors.New("safetensors: header does not start with '{'")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(js, &raw); err != nil {
		return Header{}, fmt.Errorf("safetensors: header JSON: %w", err)
	}
	h := Header{Len: n, DataStart: 8 + int64(n), Tensors: make(map[string]TensorInfo, len(raw))}
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &h.Metadata); err != nil {
				return Header{}, fmt.Errorf("safetensors: __metadata__ must map strings to strings: %w", err)
			}
			continue
		}
		var t struct {
			DType   string  `json:"dtype"`
			Shape   []int64 `json:"shape"`
			Offsets []int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(msg, &t); err != nil {
			return Header{}, fmt.Errorf("safetensors: tensor %q: %w", name, err)
		}
		es, ok := DTypeSize(t.DType)
		if !ok {
			return Header{}, fmt.Errorf("safetensors: tensor %q: unknown dtype %q", name, t.DType)
		}
		if len(t.Offsets) != 2 || t.Offsets[0] < 0 || t.Offsets[1] < t.Offsets[0] {
			return Header{}, fmt.Errorf("safetensors: tensor %q: bad data_offsets %v", name, t.Offsets)
		}
		numel := int64(1)
		for _, d := range t.Shape {
			if d < 0 {
				return Header{}, fmt.Errorf("safetensors: tensor %q: negative dimension in %v", name, t.Shape)
			}
			numel *= d
		}
		if got := t.Offsets[1] - t.Offsets[0]; got != numel*int64(es) {
			return Header{}, fmt.Errorf("safetensors: tensor %q: %d bytes for shape %v of %s", name, got, t.Shape, t.DType)
		}
		h.Tensors[name] = TensorInfo{DType: t.DType, Shape: t.Shape, Begin: t.Offsets[0], End: t.Offsets[1]}
	}
	var pos int64
	for _, name := range h.Order() {
		t := h.Tensors[name]
		if t.Begin != pos {
			return Header{}, fmt.Errorf("safetensors: tensor %q starts at %d, want %d (hole or overlap)", name, t.Begin, pos)
		}
		pos = t.End
	}
	return h, nil
}

// tensorSpec is a tensor to write.
type tensorSpec struct {
	Name  string
	DType string
	Shape []int64
}

func (t tensorSpec) bytes() int64 {
	n := int64(dtypeSizes[t.DType])
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// layoutTensors orders tensors as the Rust writer does (dtype alignment
// descending, then name in plain string order), assigns contiguous offsets
// and encodes the header, space-padded so that 8+N is a multiple of 8.
func layoutTensors(ts []tensorSpec) ([]byte, Header) {
	ts = append([]tensorSpec(nil), ts...)
	sort.SliceStable(ts, func(i, j int) bool {
		ai, aj := dtypeSizes[ts[i].DType], dtypeSizes[ts[j].DType]
		if ai != aj {
			return ai > aj
		}
		return ts[i].Name < ts[j].Name
	})
	h := Header{Metadata: map[string]string{"format": "pt"}, Tensors: make(map[string]TensorInfo, len(ts))}
	var b strings.Builder
	// __metadata__ first, then tensors in file order, as the Rust writer does.
	b.WriteString(`{"__metadata__":{"format":"pt"}`)
	var pos int64
	for _, t := range ts {
		name, _ := json.Marshal(t.Name)
		b.WriteString(",")
		b.Write(name)
		b.WriteString(`:{"dtype":"` + t.DType + `","shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(strconv.FormatInt(d, 10))
		}
		end := pos + t.bytes()
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, pos, end)
		h.Tensors[t.Name] = TensorInfo{DType: t.DType, Shape: t.Shape, Begin: pos, End: end}
		pos = end
	}
	b.WriteString("}")
	for b.Len()%8 != 0 {
		b.WriteString(" ")
	}
	h.Len = uint64(b.Len())
	h.DataStart = 8 + int64(h.Len)
	out := make([]byte, 8, 8+b.Len())
	binary.LittleEndian.PutUint64(out, h.Len)
	return append(out, b.String()...), h
}

// segSize is the unit of parallel generation; each segment has its own
// ChaCha8 stream, so content does not depend on the number of workers.
const segSize = 16 << 20

// writeSafetensors writes a safetensors file whose tensor bytes are
// pseudo-random but deterministic in (seed, key), generated in parallel.
func writeSafetensors(path, key string, seed uint64, ts []tensorSpec) (Header, error) {
	hdr, h := layoutTensors(ts)
	f, err := os.Create(path)
	if err != nil {
		return Header{}, err
	}
	defer f.Close()
	if _, err := f.Write(hdr); err != nil {
		return Header{}, err
	}
	dataLen := h.DataLen()
	if err := f.Truncate(h.DataStart + dataLen); err != nil {
		return Header{}, err
	}
	order := h.Order()
	kh := fnv.New64a()
	kh.Write([]byte(key))
	fileKey := kh.Sum64()

	nseg := (dataLen + segSize - 1) / segSize
	segs := make(chan int64)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, segSize)
			for i := range segs {
				lo := i * segSize
				b := buf[:min(segSize, dataLen-lo)]
				fillSegment(b, seed, fileKey, uint64(i))
				tameFloats(b, lo, h, order)
				if _, err := f.WriteAt(b, h.DataStart+lo); err != nil {
					once.Do(func() { firstErr = err })
				}
			}
		}()
	}
	for i := int64(0); i < nseg; i++ {
		segs <- i
	}
	close(segs)
	wg.Wait()
	if firstErr != nil {
		return Header{}, firstErr
	}
	return h, f.Close()
}

func fillSegment(b []byte, seed, fileKey, seg uint64) {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[0:], seed)
	binary.LittleEndian.PutUint64(s[8:], fileKey)
	binary.LittleEndian.PutUint64(s[16:], seg)
	copy(s[24:], "modelgen")
	rand.NewChaCha8(s).Read(b)
}

// tameFloats clears the top exponent bit of every float element in the
// segment so all values are finite with |x| < 2: random bits would otherwise
// hold NaN and Inf, which a loader that touches the numbers would choke on.
// F16, BF16 and F32 all keep that bit at 0x40 of their most significant
// byte. Elements never straddle segments: segSize is a multiple of 8 and
// every tensor starts at a multiple of its element size.
func tameFloats(b []byte, lo int64, h Header, order []string) {
	hi := lo + int64(len(b))
	for _, name := range order {
		t := h.Tensors[name]
		if t.End <= lo || t.Begin >= hi {
			continue
		}
		es := int64(dtypeSizes[t.DType])
		if t.DType != "F16" && t.DType != "BF16" && t.DType != "F32" && t.DType != "F64" {
			continue
		}
		from, to := max(t.Begin, lo)-lo, min(t.End, hi)-lo
		for i := from + es - 1; i < to; i += es {
			b[i] &= 0xBF
		}
	}
}

// SHA256File is the hex sha256 of the file at p: what the Hub lists as a
// large file's oid, and what the tests, the demo and the bench check every
// byte read through a mount against.
func SHA256File(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
