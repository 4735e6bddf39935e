package fs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weightfs/weightfs/fetch"
)

// fakeContent serves bytes (from memory, or as a section of file when set),
// or fails, or blocks until ctx ends.
type fakeContent struct {
	data    []byte
	file    *os.File      // holds data, when the content answers with sections
	lent    *atomic.Int32 // when set, data is lent; counts the returns
	err     error
	block   bool
	backing string
}

func (c *fakeContent) ReadRef(ctx context.Context, dest []byte, off int64) ([]byte, *io.SectionReader, func(), error) {
	if c.block {
		<-ctx.Done()
		return nil, nil, nil, ctx.Err()
	}
	if c.err != nil {
		return nil, nil, nil, c.err
	}
	if off >= int64(len(c.data)) {
		return dest[:0], nil, nil, nil
	}
	n := min(len(dest), len(c.data)-int(off))
	if c.file != nil {
		return nil, io.NewSectionReader(c.file, off, int64(n)), nil, nil
	}
	if c.lent != nil {
		return c.data[off : int(off)+n], nil, func() { c.lent.Add(1) }, nil
	}
	return dest[:copy(dest, c.data[off:])], nil, nil, nil
}

// inFile makes c answer with sections of a temporary file.
func inFile(t *testing.T, c *fakeContent) *fakeContent {
	f, err := os.CreateTemp(t.TempDir(), "content")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(c.data); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	c.file = f
	return c
}

func (c *fakeContent) BackingPath() (string, bool) { return c.backing, c.backing != "" }

type fakeOpener struct{ c *fakeContent }

func (o fakeOpener) Open(string, fetch.File) (Content, error) { return o.c, nil }

func testNode(c *fakeContent, timeout time.Duration) *fileNode {
	return &fileNode{vol: "v", file: fetch.File{Path: "a/b.bin", Size: int64(len(c.data))},
		mtime: time.Unix(1700000000, 0), opener: fakeOpener{c},
		cfg: &config{log: slog.New(slog.NewTextHandler(io.Discard, nil)), readTimeout: timeout}}
}

func TestOpenRefusesWrites(t *testing.T) {
	n := testNode(&fakeContent{data: []byte("x")}, time.Second)
	for _, tc := range []struct {
		name  string
		flags uint32
		want  syscall.Errno
	}{
		{"read only", syscall.O_RDONLY, 0},
		{"write only", syscall.O_WRONLY, syscall.EROFS},
		{"read write", syscall.O_RDWR, syscall.EROFS},
		{"truncate", syscall.O_RDONLY | syscall.O_TRUNC, syscall.EROFS},
		{"append", syscall.O_WRONLY | syscall.O_APPEND, syscall.EROFS},
	} {
		_, flags, errno := n.Open(context.Background(), tc.flags)
		if errno != tc.want {
			t.Errorf("%s: errno %v, want %v", tc.name, errno, tc.want)
		}
		if errno == 0 && flags&fuse.FOPEN_KEEP_CACHE == 0 {
			t.Errorf("%s: immutable files must keep the page cache", tc.name)
		}
	}
	if errno := n.Setattr(context.Background(), nil, nil, nil); errno != syscall.EROFS {
		t.Errorf("setattr: %v", errno)
	}
}

func TestGetattrReportsManifestSizeAndReadOnlyMode(t *testing.T) {
	n := testNode(&fakeContent{data: make([]byte, 12345)}, time.Second)
	var out fuse.AttrOut
	n.Getattr(context.Background(), nil, &out)
	if out.Size != 12345 || out.Mode != syscall.S_IFREG|0o444 || out.Mtime != 1700000000 {
		t.Fatalf("attr = size %d mode %o mtime %d", out.Size, out.Mode, out.Mtime)
	}
}

func TestReadServesBytesOrEIOWithinTimeout(t *testing.T) {
	data := []byte("0123456789")
	for _, tc := range []struct {
		name    string
		c       *fakeContent
		off     int64
		n       int
		want    []byte
		errno   syscall.Errno
		atLeast time.Duration
	}{
		{"middle", &fakeContent{data: data}, 3, 4, []byte("3456"), 0, 0},
		{"short at end", &fakeContent{data: data}, 8, 4, []byte("89"), 0, 0},
		{"file section", inFile(t, &fakeContent{data: data}), 3, 4, []byte("3456"), 0, 0},
		{"lent buffer", &fakeContent{data: data, lent: new(atomic.Int32)}, 3, 4, []byte("3456"), 0, 0},
		{"file section at end", inFile(t, &fakeContent{data: data}), 8, 4, []byte("89"), 0, 0},
		{"origin error", &fakeContent{data: data, err: errors.New("boom")}, 0, 4, nil, syscall.EIO, 0},
		{"stalled origin", &fakeContent{data: data, block: true}, 0, 4, nil, syscall.EIO, 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := testNode(tc.c, 50*time.Millisecond)
			start := time.Now()
			res, errno := n.Read(context.Background(), &handle{node: n}, make([]byte, tc.n), tc.off)
			if errno != tc.errno {
				t.Fatalf("errno %v, want %v", errno, tc.errno)
			}
			if d := time.Since(start); d < tc.atLeast || d > 2*time.Second {
				t.Fatalf("read took %s", d)
			}
			if errno == 0 {
				b, _ := res.Bytes(make([]byte, tc.n))
				if !bytes.Equal(b, tc.want) {
					t.Fatalf("bytes %q, want %q", b, tc.want)
				}
				if _, sliced := res.(interface {
					Slices() ([][]byte, fuse.Status)
				}); tc.c.file == nil && !sliced {
					t.Error("bytes in memory are not offered as slices: go-fuse would try to splice them first")
				}
				res.Done() // what go-fuse does once the reply is out
			}
			if tc.c.lent != nil && tc.c.lent.Load() != 1 {
				t.Fatalf("lent buffer returned %d times, want once", tc.c.lent.Load())
			}
		})
	}
}

func TestPassthroughOnlyWithoutCachedHandles(t *testing.T) {
	c := &fakeContent{data: []byte("abc")}
	n := testNode(c, time.Second)
	n.cfg.passthrough = true
	h1, _, _ := n.Open(context.Background(), syscall.O_RDONLY) // not complete yet: daemon-served
	if h1.(*handle).backing != nil {
		t.Fatal("passthrough before the file is complete")
	}
	c.backing = "/dev/null" // now complete and verified
	h2, _, _ := n.Open(context.Background(), syscall.O_RDONLY)
	if h2.(*handle).backing != nil {
		t.Fatal("passthrough while a daemon-served handle is open (the kernel refuses to mix I/O modes)")
	}
	h1.(*handle).Release(context.Background())
	h2.(*handle).Release(context.Background())
	h3, _, _ := n.Open(context.Background(), syscall.O_RDONLY)
	if h3.(*handle).backing == nil {
		t.Fatal("no passthrough for a verified file with no other handles")
	}
	h3.(*handle).Release(context.Background())
}
