package fs

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weightfs/weightfs/chunkcache"
	"github.com/weightfs/weightfs/fetch"
)

// The daemon's Content can be pinned: a rename must not silently let a
// bounded cache evict files the kernel reads by passthrough.
var _ Pinner = (*chunkcache.Object)(nil)

// pinContent is fakeContent that counts pins, and lends its file sections
// (done counts their returns).
type pinContent struct {
	*fakeContent
	pins     atomic.Int32
	sections atomic.Int32 // sections handed out and not yet returned
}

func (c *pinContent) Pin()   { c.pins.Add(1) }
func (c *pinContent) Unpin() { c.pins.Add(-1) }

func (c *pinContent) ReadRef(ctx context.Context, dest []byte, off int64) ([]byte, *io.SectionReader, func(), error) {
	data, sec, done, err := c.fakeContent.ReadRef(ctx, dest, off)
	if sec != nil {
		c.sections.Add(1)
		done = func() { c.sections.Add(-1) }
	}
	return data, sec, done, err
}

type pinOpener struct{ c *pinContent }

func (o pinOpener) Open(string, fetch.File) (Content, error) { return o.c, nil }

// A file handed to the kernel for passthrough is pinned from before its
// backing path is asked for until its handle is released; a file that gets
// no passthrough is left unpinned.
func TestPassthroughPinsTheFile(t *testing.T) {
	c := &pinContent{fakeContent: &fakeContent{data: []byte("abc")}}
	n := testNode(c.fakeContent, time.Second)
	n.opener = pinOpener{c}
	n.cfg.passthrough = true
	h1, _, _ := n.Open(context.Background(), syscall.O_RDONLY) // not complete: no passthrough
	if h1.(*handle).backing != nil || c.pins.Load() != 0 {
		t.Fatalf("no passthrough yet, but backing %v, pins %d", h1.(*handle).backing != nil, c.pins.Load())
	}
	h1.(*handle).Release(context.Background())
	c.backing = "/dev/null"
	h2, _, _ := n.Open(context.Background(), syscall.O_RDONLY)
	if h2.(*handle).backing == nil || c.pins.Load() != 1 {
		t.Fatalf("passthrough: backing %v, pins %d; want pinned once", h2.(*handle).backing != nil, c.pins.Load())
	}
	h2.(*handle).Release(context.Background())
	if c.pins.Load() != 0 {
		t.Fatalf("pins %d after release", c.pins.Load())
	}
	c.backing = "/nonexistent/backing" // cannot be opened: no passthrough, no pin left
	h3, _, _ := n.Open(context.Background(), syscall.O_RDONLY)
	if h3.(*handle).backing != nil || c.pins.Load() != 0 {
		t.Fatalf("failed passthrough: backing %v, pins %d", h3.(*handle).backing != nil, c.pins.Load())
	}
	h3.(*handle).Release(context.Background())
}

// A section of a cache file handed to the kernel to splice is held until
// go-fuse is through with the reply (Done), then returned, whichever way
// go-fuse sends it: spliced (Seekable) or read into a buffer (Bytes).
func TestSplicedSectionsAreReturnedAfterTheReply(t *testing.T) {
	data := []byte("0123456789")
	c := &pinContent{fakeContent: inFile(t, &fakeContent{data: data})}
	n := testNode(c.fakeContent, time.Second)
	n.opener = pinOpener{c}
	res, errno := n.Read(context.Background(), &handle{node: n}, make([]byte, 4), 3)
	if errno != 0 {
		t.Fatal(errno)
	}
	sk, ok := res.(interface {
		Seekable() (uintptr, int64, int)
	})
	if !ok {
		t.Fatal("a file section is not offered for splicing")
	}
	if fd, off, sz := sk.Seekable(); fd != c.file.Fd() || off != 3 || sz != 4 {
		t.Fatalf("splice %d at %d of fd %d", sz, off, fd)
	}
	if c.sections.Load() != 1 {
		t.Fatal("the section was returned before the reply went out")
	}
	if b, st := res.Bytes(make([]byte, 4)); st != fuse.OK || !bytes.Equal(b, []byte("3456")) {
		t.Fatalf("Bytes = %q, %v", b, st)
	}
	res.Done()
	if c.sections.Load() != 0 {
		t.Fatal("the section was not returned after the reply")
	}
}
