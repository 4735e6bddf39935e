package bucket

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
)

// What a store sends is read within bounds, whoever runs it: the SDKs
// decode a listing page or an error document whole, so a hostile or
// broken server could otherwise make us allocate what it likes, or page
// forever.
const (
	// maxDocument bounds a response the SDK decodes whole: a list page of
	// 1000 keys is well under 2 MiB.
	maxDocument = 16 << 20
	// maxErrorDocument bounds an error answer to an object read.
	maxErrorDocument = 1 << 20
)

// streamKey marks the ctx of an object read: its 2xx body is the object,
// handed to the caller bounded by the size it declared (net/http holds a
// body to its Content-Length; newBody to the size).
type streamKey struct{}

func streaming(ctx context.Context) context.Context { return context.WithValue(ctx, streamKey{}, true) }

// budgetKey carries the request budget of one List: pages are requests,
// and a store that answers "there is more" forever is cut off.
type budgetKey struct{}

type budget struct{ left atomic.Int64 }

func withBudget(ctx context.Context, n int64) context.Context {
	b := &budget{}
	b.left.Store(n)
	return context.WithValue(ctx, budgetKey{}, b)
}

var errTooManyPages = errors.New("the store kept answering that there are more pages, past any bound")

// before charges a request to its List's budget.
func before(r *http.Request) error {
	if b, ok := r.Context().Value(budgetKey{}).(*budget); ok && b.left.Add(-1) < 0 {
		return errTooManyPages
	}
	return nil
}

// bound caps the body of a response as its request allows.
func bound(r *http.Request, resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	limit := int64(maxDocument)
	if r.Context().Value(streamKey{}) != nil {
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return
		}
		limit = maxErrorDocument
	}
	resp.Body = &capped{rc: resp.Body, left: limit}
}

// capped fails a body that goes past its limit, rather than cut it short
// (a truncated document could decode as a smaller valid one).
type capped struct {
	rc   io.ReadCloser
	left int64
}

var errTooLarge = errors.New("the store's answer is larger than any it should send")

func (c *capped) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// One byte more says whether the body really goes on.
		var b [1]byte
		if n, _ := c.rc.Read(b[:]); n > 0 {
			return 0, errTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *capped) Close() error { return c.rc.Close() }

// guardTransport bounds GCS responses (it sits under authentication).
type guardTransport struct{ base http.RoundTripper }

func (g guardTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := before(r); err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	resp, err := g.base.RoundTrip(r)
	bound(r, resp)
	return resp, err
}

// doer is what the S3 SDK sends requests with.
type doer interface {
	Do(*http.Request) (*http.Response, error)
}

// guardClient bounds S3 responses; it wraps the client of S3 operations
// only (per-operation options), not the credential providers'.
type guardClient struct{ base doer }

func (g guardClient) Do(r *http.Request) (*http.Response, error) {
	if err := before(r); err != nil {
		return nil, err
	}
	resp, err := g.base.Do(r)
	bound(r, resp)
	return resp, err
}
