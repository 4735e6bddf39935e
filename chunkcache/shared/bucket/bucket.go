// Package bucket is the shared chunk cache (chunkcache/shared) on a bucket
// in the region: S3 or an S3-compatible store, and Google Cloud Storage.
// Each implements shared.Blobs with the store's own conditional write (S3
// If-None-Match: *, GCS ifGenerationMatch=0), so a lease has exactly one
// winner. Open parses a --shared-cache value into the store it names.
//
// Clients and credentials are those of the origins (fetch/s3src,
// fetch/gcssrc): the AWS chain, AWS_REGION and AWS_ENDPOINT_URL; ADC and
// STORAGE_EMULATOR_HOST. Every request runs under its caller's ctx, with
// the SDKs' own retries off (the tier falls back to the origin instead).
package bucket

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// maxPages bounds the requests of one List: ten million objects at a full
// page, while still ending a store that pages forever. A variable for
// tests.
var maxPages int64 = 10000

// pageSize is the most objects one list page holds on S3 and GCS alike.
const pageSize = 1000

// place is a bucket and the prefix under which the store's names live.
type place struct {
	scheme string // "s3" or "gs"
	bucket string
	prefix string // "" or without leading or trailing '/'
}

// key is the object name of a store name: prefix + "/" + name.
func (p place) key(name string) string {
	if p.prefix == "" {
		return name
	}
	return p.prefix + "/" + name
}

// name is the store name of a listed object key; false when the key is
// not under the prefix (a store must not hand us others).
func (p place) name(key string) (string, bool) {
	if p.prefix == "" {
		return key, key != ""
	}
	n, ok := strings.CutPrefix(key, p.prefix+"/")
	return n, ok && n != ""
}

func (p place) String() string {
	if p.prefix == "" {
		return p.scheme + "://" + p.bucket
	}
	return p.scheme + "://" + p.bucket + "/" + p.prefix
}

func (p place) url(name string) string { return p.scheme + "://" + p.bucket + "/" + p.key(name) }

// newPlace validates a bucket and prefix: a bucket of 1-255 letters,
// digits, '.', '-' or '_' (not "." or ".."), and a prefix of non-empty
// '/'-separated segments, none "." or "..", without control characters.
// Slashes around the prefix are dropped.
func newPlace(scheme, bucket, prefix string) (place, error) {
	if bucket == "" {
		return place{}, errors.New("no bucket")
	}
	if len(bucket) > 255 || bucket == "." || bucket == ".." {
		return place{}, fmt.Errorf("bucket %q is not a bucket name", bucket)
	}
	for _, c := range bucket {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return place{}, fmt.Errorf("bucket %q is not a bucket name (letters, digits, '.', '-', '_')", bucket)
		}
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if len(prefix) > 512 {
		return place{}, errors.New("prefix is longer than 512 bytes")
	}
	if prefix != "" {
		for _, seg := range strings.Split(prefix, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return place{}, fmt.Errorf("prefix %q has an empty, '.' or '..' segment", prefix)
			}
		}
		for _, c := range prefix {
			if c < 0x20 || c == 0x7f || c == '\\' {
				return place{}, fmt.Errorf("prefix %q holds a control character or a backslash", prefix)
			}
		}
	}
	return place{scheme: scheme, bucket: bucket, prefix: prefix}, nil
}

// slices reads the concatenation of data without copying it, and seeks
// (the S3 SDK rewinds a body it has hashed for the signature).
type slices struct {
	data [][]byte
	size int64
	off  int64
}

func newSlices(data [][]byte) *slices {
	s := &slices{data: data}
	for _, b := range data {
		s.size += int64(len(b))
	}
	return s
}

func (s *slices) Len() int { return int(s.size - s.off) }

func (s *slices) Read(p []byte) (int, error) {
	if s.off >= s.size {
		return 0, io.EOF
	}
	n := 0
	pos := int64(0)
	for _, b := range s.data {
		end := pos + int64(len(b))
		if s.off < end && n < len(p) {
			c := copy(p[n:], b[s.off-pos:])
			n += c
			s.off += int64(c)
		}
		pos = end
		if n == len(p) {
			break
		}
	}
	return n, nil
}

func (s *slices) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = s.off + offset
	case io.SeekEnd:
		abs = s.size + offset
	default:
		return 0, errors.New("bucket: bad whence")
	}
	if abs < 0 {
		return 0, errors.New("bucket: seek before the start")
	}
	s.off = abs
	return abs, nil
}

// body bounds what is read of an object to the size it was opened with.
type body struct {
	io.Reader
	c io.Closer
}

func (b body) Close() error { return b.c.Close() }

func newBody(rc io.ReadCloser, size int64) io.ReadCloser {
	return body{Reader: io.LimitReader(rc, size), c: rc}
}

// modTime is a listed object's time; one the store did not give counts as
// now, so GC keeps what it cannot date rather than remove it.
func modTime(t *time.Time) time.Time {
	if t == nil || t.IsZero() {
		return time.Now()
	}
	return *t
}
