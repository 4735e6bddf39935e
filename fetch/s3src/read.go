package s3src

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/weightfs/weightfs/fetch"
)

// ReadRange fills p with bytes [off, off+len(p)) of f, with one ranged
// GetObject sent If-Match the listed ETag: an object replaced since the
// listing fails with fetch.ErrChanged (permanent) instead of mixing
// versions. Stores that ignore If-Match are caught by comparing the answer's
// ETag too. It does not retry.
func (s *Source) ReadRange(ctx context.Context, f fetch.File, off int64, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if err := s.b.CheckRead(f, off, len(p), f.Version, "ETag"); err != nil {
		return err
	}
	end := off + int64(len(p))
	c, err := s.getClient(ctx, f.Extra[ExtraRegion])
	if err != nil {
		return err
	}
	last := end - 1
	key := s.b.Prefix + f.Path
	oi := opInfo{op: fmt.Sprintf("GetObject %s bytes=%d-%d", s.b.URL(key), off, last), what: s.b.Where(f.Path), read: true}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{
		Bucket:  aws.String(s.b.Name),
		Key:     aws.String(key),
		Range:   aws.String(fmt.Sprintf("bytes=%d-%d", off, last)),
		IfMatch: aws.String(f.Version),
	})
	if err != nil {
		return s.classify(err, oi)
	}
	defer out.Body.Close()
	if got := aws.ToString(out.ETag); got != "" && normETag(got) != normETag(f.Version) {
		return fetch.Permanent(newErr([]error{fetch.ErrChanged}, nil,
			"%s: the object changed since it was listed (ETag %s, listed %s); list the entry again", oi.what, got, f.Version))
	}
	if err := checkRange(out, f, off, int64(len(p))); err != nil {
		return fmt.Errorf("%s: %w", oi.what, err)
	}
	if _, err := io.ReadFull(out.Body, p); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: reading the body: %w", oi.what, ctx.Err())
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return newErr([]error{ErrBadResponse, err}, nil, "%s: reading the body of bytes %d-%d: %v", oi.what, off, last, err)
	}
	return nil
}

// checkRange holds the answer to the request: Content-Range must be exactly
// the asked range of an object of the listed size, and the length must match.
// A store that ignored Range is accepted only when the range was the whole
// object. A different total size means the object changed (permanent); any
// other mismatch is a confused answer, worth another attempt.
func checkRange(out *s3.GetObjectOutput, f fetch.File, off, n int64) error {
	if out.ContentLength != nil && *out.ContentLength != n {
		return newErr([]error{ErrBadResponse}, nil, "asked for %d bytes, the answer has %d", n, *out.ContentLength)
	}
	cr := aws.ToString(out.ContentRange)
	if cr == "" {
		if off == 0 && n == f.Size {
			return nil
		}
		return newErr([]error{ErrBadResponse}, nil, "the answer has no Content-Range for bytes %d-%d", off, off+n-1)
	}
	start, last, total, ok := fetch.ParseContentRange(cr)
	if !ok {
		return newErr([]error{ErrBadResponse}, nil, "unreadable Content-Range %q", cr)
	}
	if total != f.Size {
		return fetch.Permanent(newErr([]error{fetch.ErrChanged}, nil,
			"the object is %d bytes now, %d when listed: it changed since listing; list the entry again", total, f.Size))
	}
	if start != off || last != off+n-1 {
		return newErr([]error{ErrBadResponse}, nil, "asked for bytes %d-%d, got Content-Range %q", off, off+n-1, cr)
	}
	return nil
}

// normETag compares ETags the way S3 does: quotes and a weak prefix aside.
func normETag(e string) string {
	return strings.ToLower(strings.Trim(strings.TrimPrefix(strings.TrimSpace(e), "W/"), `"`))
}
