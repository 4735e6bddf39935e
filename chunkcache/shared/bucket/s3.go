package bucket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/objstore"
	"github.com/weightfs/weightfs/fetch/s3src"
)

// S3 is the shared store in an S3 bucket (or an S3-compatible store) under
// a prefix. Put with ifAbsent is a PutObject with If-None-Match: *, which
// S3 (since 2024) and gofakes3 answer with exactly one winner; a store
// that ignores the header costs a duplicate origin fetch now and then,
// never a wrong byte (chunks carry their digest).
//
// The client is built on first use, under that request's ctx (the region
// may have to be asked of the bucket): a store that is down when weightfs
// starts is only a store that fails, and the mount comes up.
type S3 struct {
	p      place
	opts   s3src.Options
	client objstore.Lazy[s3.Client]
}

var _ shared.Blobs = (*S3)(nil)

// NewS3 returns the store in bucket under prefix, with o's credentials,
// region and endpoint (see s3src.NewClient; s3src.EnvOptions reads them
// from the environment). Nothing is contacted yet.
func NewS3(bucket, prefix string, o s3src.Options) (*S3, error) {
	p, err := newPlace("s3", bucket, prefix)
	if err != nil {
		return nil, fmt.Errorf("--shared-cache s3://%s/%s: %w", bucket, prefix, err)
	}
	if o.PageSize <= 0 || o.PageSize > pageSize {
		o.PageSize = pageSize
	}
	return &S3{p: p, opts: o}, nil
}

// String is s3://bucket/prefix; never a credential or the endpoint's userinfo.
func (s *S3) String() string        { return s.p.String() }
func (s *S3) ExclusiveCreate() bool { return true }

// Free is -1: a bucket does not say. Quota errors on Put report ErrFull.
func (s *S3) Free(ctx context.Context) (int64, error) { return -1, ctx.Err() }

// Secrets are the credential values the store's client may hold, for
// redaction (fetch.SecretHolder).
func (s *S3) Secrets() []string { return s.opts.Secrets() }

func (s *S3) c(ctx context.Context) (*s3.Client, error) {
	return s.client.Get(ctx, "--shared-cache "+s.p.String(), func(ctx context.Context) (*s3.Client, error) {
		return s3src.NewClient(ctx, "--shared-cache "+s.p.String(), s.p.bucket, s.opts)
	})
}

func (s *S3) Open(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	c, err := s.c(ctx)
	if err != nil {
		return nil, 0, err
	}
	out, err := c.GetObject(streaming(ctx), &s3.GetObjectInput{Bucket: aws.String(s.p.bucket), Key: aws.String(s.p.key(name))}, guarded)
	if err != nil {
		return nil, 0, s.classify("GET", name, err)
	}
	if out.ContentLength == nil || *out.ContentLength < 0 {
		out.Body.Close()
		return nil, 0, fmt.Errorf("GET %s: the store sent no usable Content-Length", s.p.url(name))
	}
	size := *out.ContentLength
	return newBody(out.Body, size), size, nil
}

func (s *S3) Put(ctx context.Context, name string, data [][]byte, ifAbsent bool) error {
	c, err := s.c(ctx)
	if err != nil {
		return err
	}
	b := newSlices(data)
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.p.bucket),
		Key:           aws.String(s.p.key(name)),
		Body:          b,
		ContentLength: aws.Int64(b.size),
		ContentType:   aws.String("application/octet-stream"),
	}
	if ifAbsent {
		in.IfNoneMatch = aws.String("*")
	}
	if _, err := c.PutObject(ctx, in, guarded); err != nil {
		return s.classify("PUT", name, err)
	}
	return nil
}

func (s *S3) Delete(ctx context.Context, name string) error {
	c, err := s.c(ctx)
	if err != nil {
		return err
	}
	_, err = c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.p.bucket), Key: aws.String(s.p.key(name))}, guarded)
	if err = s.classify("DELETE", name, err); errors.Is(err, shared.ErrNotFound) {
		return nil
	}
	return err
}

func (s *S3) List(ctx context.Context, prefix string, fn func(shared.BlobInfo) error) error {
	c, err := s.c(ctx)
	if err != nil {
		return err
	}
	in := &s3.ListObjectsV2Input{Bucket: aws.String(s.p.bucket), Prefix: aws.String(s.p.key(prefix)), MaxKeys: aws.Int32(s.opts.PageSize)}
	lctx := withBudget(ctx, maxPages)
	for {
		out, err := c.ListObjectsV2(lctx, in, guarded)
		if err != nil {
			return s.classify("LIST", prefix, err)
		}
		for _, o := range out.Contents {
			name, ok := s.p.name(aws.ToString(o.Key))
			if !ok || len(name) < len(prefix) || name[:len(prefix)] != prefix {
				continue // not what was asked for
			}
			if err := fn(shared.BlobInfo{Name: name, Size: max(aws.ToInt64(o.Size), 0), ModTime: modTime(o.LastModified)}); err != nil {
				return err
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		next := aws.ToString(out.NextContinuationToken)
		if next == "" || next == aws.ToString(in.ContinuationToken) {
			return fmt.Errorf("LIST %s: the store said there is more but gave no new continuation token", s.p.url(prefix))
		}
		in.ContinuationToken = aws.String(next)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// guarded bounds what one S3 operation reads of the store's answers (see
// guard.go).
func guarded(o *s3.Options) {
	if o.HTTPClient != nil {
		o.HTTPClient = guardClient{base: o.HTTPClient}
	}
}

// classify maps an SDK error to the shared.Blobs kinds, keeping the
// request, the object's URL and the store's own words (which hold no
// credential: requests are header-signed; they are redacted anyway).
func (s *S3) classify(op, name string, err error) error {
	if err == nil {
		return nil
	}
	where := op + " " + s.p.url(name)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s: %w", where, context.DeadlineExceeded)
		}
		return fmt.Errorf("%s: %w", where, context.Canceled)
	}
	msg := config.Redact(err.Error(), s.Secrets()...)
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.Response == nil {
		return fmt.Errorf("%s: %s", where, msg)
	}
	status := re.HTTPStatusCode()
	code := ""
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	kind := func(k error) error { return fmt.Errorf("%s: %w (HTTP %d %s): %s", where, k, status, code, msg) }
	switch {
	case code == "NoSuchBucket":
		return fmt.Errorf("%s: bucket %q does not exist (HTTP %d): %s", where, s.p.bucket, status, msg)
	case code == "NoSuchKey" || status == http.StatusNotFound && op != "PUT" && op != "LIST":
		return kind(shared.ErrNotFound)
	case op == "PUT" && (status == http.StatusPreconditionFailed || code == "PreconditionFailed" ||
		code == "ConditionalRequestConflict"):
		return kind(shared.ErrExists)
	case status == http.StatusInsufficientStorage || code == "EntityTooLarge" || code == "QuotaExceeded" ||
		code == "XMinioStorageFull" || code == "InsufficientStorage":
		return kind(shared.ErrFull)
	case op == "PUT" && (status == http.StatusForbidden || code == "AccessDenied"):
		return kind(shared.ErrReadOnly)
	}
	return fmt.Errorf("%s: HTTP %d %s: %s", where, status, code, msg)
}
