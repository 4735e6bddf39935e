package fetch

import (
	"strconv"
	"strings"
)

// ParseContentRange reads the Content-Range of a satisfied range request,
// exactly "bytes start-last/total": decimal digits only, start <= last <
// total. Anything else (a sign or a space inside, a "*" length, a range
// the total does not hold, a number past int64) describes no answer to the
// request, and ok is false: a caller that took it would place bytes at the
// wrong offset, or miss that the object changed size. net/http has already
// trimmed the header's surrounding white space.
func ParseContentRange(v string) (start, last, total int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	start, ok1 := parseDigits(a)
	last, ok2 := parseDigits(b)
	total, ok3 := parseDigits(tot)
	if !ok1 || !ok2 || !ok3 || start > last || last >= total {
		return 0, 0, 0, false
	}
	return start, last, total, true
}

// parseDigits is strconv.ParseInt without the signs it would let through
// a header.
func parseDigits(s string) (int64, bool) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
