package chunkcache

import (
	"fmt"
	"math"
	"math/big"
	"strings"
)

// ParseSize reads a size in human units, as --cache-size takes it: a
// number with an optional unit, B, decimal KB MB GB TB (powers of 1000) or
// binary KiB MiB GiB TiB (powers of 1024), case-insensitive, with optional
// space between, e.g. "200GiB", "1.5 TB", "4096". A plain number is bytes;
// a fraction is allowed with a unit and rounded down to whole bytes.
// Negative sizes, unknown units, garbage and sizes past what an int64
// holds are refused with an error that quotes the input.
func ParseSize(s string) (int64, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("size %q: empty; want a number with an optional unit, e.g. 200GiB", s)
	}
	i := 0
	for i < len(in) && (in[i] >= '0' && in[i] <= '9' || in[i] == '.') {
		i++
	}
	num, unit := in[:i], strings.TrimSpace(in[i:])
	if num == "" {
		if strings.HasPrefix(in, "-") {
			return 0, fmt.Errorf("size %q: negative; a size is at least 0", s)
		}
		return 0, fmt.Errorf("size %q: not a number; want e.g. 200GiB, 1.5TB or 4096 (bytes)", s)
	}
	mult, ok := sizeUnits[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q; use B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)", s, unit)
	}
	if strings.Count(num, ".") > 1 || num == "." || strings.HasPrefix(num, ".") || strings.HasSuffix(num, ".") {
		return 0, fmt.Errorf("size %q: %q is not a number", s, num)
	}
	if strings.Contains(num, ".") && unit == "" {
		return 0, fmt.Errorf("size %q: a plain number is bytes and must be whole; add a unit for a fraction (e.g. 1.5GiB)", s)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("size %q: %q is not a number", s, num)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	q := new(big.Int).Quo(r.Num(), r.Denom()) // rounds towards zero: whole bytes
	if !q.IsInt64() || q.Int64() > math.MaxInt64 {
		return 0, fmt.Errorf("size %q: too large; at most %d bytes (8 EiB)", s, int64(math.MaxInt64))
	}
	return q.Int64(), nil
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// FormatSize writes n in binary units, for messages: "200 GiB", "1.5 MiB",
// "512 B".
func FormatSize(n int64) string {
	const units = "KMGTPE"
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for (v >= 1024 || v <= -1024) && i < len(units)-1 {
		v /= 1024
		i++
	}
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.2f", v), "0"), ".0") + " " + string(units[i]) + "iB"
}
