package bucket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"

	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/gcssrc"
	"github.com/weightfs/weightfs/fetch/objstore"
)

// GCS is the shared store in a Google Cloud Storage bucket under a
// prefix. Put with ifAbsent is an upload with ifGenerationMatch=0, which
// GCS answers with exactly one winner. Uploads are single requests
// (ChunkSize 0): a chunk is a few MiB, and a reader never sees part of one.
//
// The client is built on first use, under that request's ctx (ADC may
// probe the metadata server).
type GCS struct {
	p      place
	opts   gcssrc.Options
	client objstore.Lazy[storage.Client]
}

var _ shared.Blobs = (*GCS)(nil)

// NewGCS returns the store in bucket under prefix, with o's credentials
// and emulator (see gcssrc.NewClient; gcssrc.EnvOptions reads them from
// the environment). It asks for the read-write scope. Nothing is
// contacted yet.
func NewGCS(bucket, prefix string, o gcssrc.Options) (*GCS, error) {
	p, err := newPlace("gs", bucket, prefix)
	if err != nil {
		return nil, fmt.Errorf("--shared-cache gs://%s/%s: %w", bucket, prefix, err)
	}
	o.ReadWrite = true
	if o.Transport == nil {
		o.Transport = gcssrc.NewTransport()
	}
	o.Transport = guardTransport{base: o.Transport}
	if o.PageSize <= 0 || o.PageSize > pageSize {
		o.PageSize = pageSize
	}
	return &GCS{p: p, opts: o}, nil
}

// String is gs://bucket/prefix, never a credential.
func (g *GCS) String() string        { return g.p.String() }
func (g *GCS) ExclusiveCreate() bool { return true }

// Free is -1: a bucket does not say. Quota errors on Put report ErrFull.
func (g *GCS) Free(ctx context.Context) (int64, error) { return -1, ctx.Err() }

// Secrets are the service account key's secret parts, for redaction
// (fetch.SecretHolder); none with ADC.
func (g *GCS) Secrets() []string { return g.opts.Secrets() }

func (g *GCS) bkt(ctx context.Context) (*storage.BucketHandle, error) {
	what := "--shared-cache " + g.p.String()
	c, err := g.client.Get(ctx, what, func(ctx context.Context) (*storage.Client, error) {
		return gcssrc.NewClient(ctx, what, g.p.bucket, g.opts)
	})
	if err != nil {
		return nil, err
	}
	return c.Bucket(g.p.bucket), nil
}

func (g *GCS) obj(ctx context.Context, name string) (*storage.ObjectHandle, error) {
	b, err := g.bkt(ctx)
	if err != nil {
		return nil, err
	}
	return b.Object(g.p.key(name)), nil
}

func (g *GCS) Open(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	o, err := g.obj(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	// Objects are written without Content-Encoding, so no transcoding
	// makes the body differ from the size.
	r, err := o.NewReader(streaming(ctx))
	if err != nil {
		return nil, 0, g.classify("GET", name, err)
	}
	size := r.Attrs.Size
	if size < 0 {
		r.Close()
		return nil, 0, fmt.Errorf("GET %s: the store sent no usable size", g.p.url(name))
	}
	return newBody(r, size), size, nil
}

func (g *GCS) Put(ctx context.Context, name string, data [][]byte, ifAbsent bool) error {
	o, err := g.obj(ctx, name)
	if err != nil {
		return err
	}
	if ifAbsent {
		o = o.If(storage.Conditions{DoesNotExist: true})
	}
	// The writer's own ctx ends with the call, so an upload abandoned
	// halfway is cancelled, never finished later.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := o.NewWriter(wctx)
	w.ChunkSize = 0 // one request; nothing is buffered
	w.ContentType = "application/octet-stream"
	for _, b := range data {
		if _, err = w.Write(b); err != nil {
			break
		}
	}
	if err != nil {
		cancel()
		_ = w.Close()
		return g.classify("PUT", name, err)
	}
	return g.classify("PUT", name, w.Close())
}

func (g *GCS) Delete(ctx context.Context, name string) error {
	o, err := g.obj(ctx, name)
	if err != nil {
		return err
	}
	if err = g.classify("DELETE", name, o.Delete(ctx)); errors.Is(err, shared.ErrNotFound) {
		return nil
	}
	return err
}

func (g *GCS) List(ctx context.Context, prefix string, fn func(shared.BlobInfo) error) error {
	b, err := g.bkt(ctx)
	if err != nil {
		return err
	}
	q := &storage.Query{Prefix: g.p.key(prefix)}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Updated"}); err != nil {
		return err
	}
	objs := b.Objects(withBudget(ctx, maxPages), q)
	objs.PageInfo().MaxSize = g.opts.PageSize
	for {
		a, err := objs.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return g.classify("LIST", prefix, err)
		}
		name, ok := g.p.name(a.Name)
		if !ok || len(name) < len(prefix) || name[:len(prefix)] != prefix {
			continue
		}
		t := a.Updated
		if err := fn(shared.BlobInfo{Name: name, Size: max(a.Size, 0), ModTime: modTime(&t)}); err != nil {
			return err
		}
	}
}

// classify maps a storage error to the shared.Blobs kinds, keeping the
// request, the object's URL and the store's own words (redacted against
// the key).
func (g *GCS) classify(op, name string, err error) error {
	if err == nil {
		return nil
	}
	where := op + " " + g.p.url(name)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", where, context.DeadlineExceeded)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", where, context.Canceled)
	}
	msg := config.Redact(err.Error(), g.Secrets()...)
	if errors.Is(err, storage.ErrBucketNotExist) {
		return fmt.Errorf("%s: bucket %q does not exist: %s", where, g.p.bucket, msg)
	}
	if errors.Is(err, storage.ErrObjectNotExist) {
		return fmt.Errorf("%s: %w: %s", where, shared.ErrNotFound, msg)
	}
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		return fmt.Errorf("%s: %s", where, msg)
	}
	reason := ""
	if len(ge.Errors) > 0 {
		reason = ge.Errors[0].Reason
	}
	kind := func(k error) error { return fmt.Errorf("%s: %w (HTTP %d %s): %s", where, k, ge.Code, reason, msg) }
	switch {
	case ge.Code == http.StatusNotFound && op != "PUT" && op != "LIST":
		return kind(shared.ErrNotFound)
	case op == "PUT" && (ge.Code == http.StatusPreconditionFailed || reason == "conditionNotMet"):
		return kind(shared.ErrExists)
	case ge.Code == http.StatusInsufficientStorage || ge.Code == http.StatusRequestEntityTooLarge ||
		reason == "quotaExceeded" || reason == "storageQuotaExceeded":
		return kind(shared.ErrFull)
	case op == "PUT" && (ge.Code == http.StatusForbidden || ge.Code == http.StatusUnauthorized):
		return kind(shared.ErrReadOnly)
	}
	return fmt.Errorf("%s: HTTP %d %s: %s", where, ge.Code, reason, msg)
}
