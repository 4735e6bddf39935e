package fs

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weightfs/weightfs/fetch"
)

// panicky is a Content, and an Opener of it, whose next calls panic while
// panics > 0.
type panicky struct {
	fakeContent
	openPanics, readPanics int
}

func (p *panicky) Open(string, fetch.File) (Content, error) {
	if p.openPanics > 0 {
		p.openPanics--
		var m map[string]int
		m["boom"]++ // a nil map write: a real runtime panic, not a panic(string)
	}
	return p, nil
}

func (p *panicky) ReadRef(ctx context.Context, dest []byte, off int64) ([]byte, *io.SectionReader, func(), error) {
	if p.readPanics > 0 {
		p.readPanics--
		panic("bug in ReadRef")
	}
	return p.fakeContent.ReadRef(ctx, dest, off)
}

func panickyNode(p *panicky, logs *bytes.Buffer) *fileNode {
	return &fileNode{vol: "v", file: fetch.File{Path: "unet/model.safetensors", Size: int64(len(p.data))},
		mtime: time.Unix(1700000000, 0), opener: p,
		cfg: &config{log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), readTimeout: time.Second}}
}

// Fails before this change: the panic went up into go-fuse (which answered
// EIO, logging at debug only), and a panic in Open inside Read left the
// node's mutex held, so the next request on the file hung forever.
func TestHandlerPanicIsEIOLoggedOnceAndTheNextRequestWorks(t *testing.T) {
	var logs bytes.Buffer
	p := &panicky{fakeContent: fakeContent{data: []byte("0123456789")}, openPanics: 2, readPanics: 2}
	n := panickyNode(p, &logs)
	var reads []syscall.Errno
	n.cfg.onRead = func(_ time.Duration, err error) {
		e, _ := err.(syscall.Errno)
		reads = append(reads, e)
	}

	// Read opens the content under the node's lock: a panic there must
	// release it. Twice, to see the second logged at debug only.
	for i := 0; i < 2; i++ {
		if _, errno := n.Read(context.Background(), &handle{node: n}, make([]byte, 4), 0); errno != syscall.EIO {
			t.Fatalf("read %d with a panicking open: errno %v, want EIO", i, errno)
		}
	}
	// Now open works; then ReadRef panics twice; then all is well.
	for i := 0; i < 2; i++ {
		if _, errno := n.Read(context.Background(), &handle{node: n}, make([]byte, 4), 0); errno != syscall.EIO {
			t.Fatalf("read with a panicking ReadRef: errno %v, want EIO", errno)
		}
	}
	done := make(chan syscall.Errno)
	var got []byte
	go func() {
		res, errno := n.Read(context.Background(), &handle{node: n}, make([]byte, 4), 3)
		if errno == 0 {
			got, _ = res.Bytes(nil)
		}
		done <- errno
	}()
	select {
	case errno := <-done:
		if errno != 0 || string(got) != "3456" {
			t.Fatalf("read after the panics: errno %v, bytes %q; want 3456", errno, got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read after a panic hangs: the node's lock was left held")
	}
	if want := []syscall.Errno{syscall.EIO, syscall.EIO, syscall.EIO, syscall.EIO, 0}; !equalErrnos(reads, want) {
		t.Errorf("OnRead saw %v, want %v (a recovered panic is a failed read)", reads, want)
	}

	out := logs.String()
	for _, want := range []string{
		`level=ERROR msg="bug: a FUSE request panicked; answering EIO, the mount stays up (please report this line)" op=read volume=v file=unet/model.safetensors panic="assignment to entry in nil map" at="github.com/weightfs/weightfs/fs.(*panicky).Open (fs/recover_test.go:`,
		`panic="bug in ReadRef" at="github.com/weightfs/weightfs/fs.(*panicky).ReadRef (fs/recover_test.go:`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks\n%s\ngot:\n%s", want, out)
		}
	}
	// One ERROR line per file and operation, however often it panics.
	if n := strings.Count(out, "level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines, want 1 (the first panic of read on this file):\n%s", n, out)
	}
	if strings.Contains(out, "goroutine ") {
		t.Errorf("a stack trace in the log:\n%s", out)
	}

	// Open recovers too, and releases the lock it holds.
	p.openPanics = 1
	n.content = nil
	if _, _, errno := n.Open(context.Background(), syscall.O_RDONLY); errno != syscall.EIO {
		t.Fatalf("open with a panicking opener: errno %v, want EIO", errno)
	}
	if _, _, errno := n.Open(context.Background(), syscall.O_RDONLY); errno != 0 {
		t.Fatalf("open after a panic: errno %v", errno)
	}
}

func equalErrnos(a, b []syscall.Errno) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A panic in the function a lent buffer is returned by runs after the
// reply, outside any handler: it must not end the process.
func TestLentBufferDonePanicIsRecovered(t *testing.T) {
	var logs bytes.Buffer
	r := &dataResult{data: []byte("x"), done: func() { panic("double return") },
		cfg: &config{log: slog.New(slog.NewTextHandler(&logs, nil))}, vol: "v", path: "f"}
	r.Done()
	if !strings.Contains(logs.String(), `op="read done" volume=v file=f panic="double return"`) {
		t.Fatalf("log: %s", logs.String())
	}
}

// Fails before this change: a regular file as mountpoint was mounted over,
// leaving a mount no reader could use.
func TestMountpointThatIsAFileIsRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := prepareMountpoint(p, slog.New(slog.NewTextHandler(io.Discard, nil)))
	want := "mountpoint " + p + " is a regular file, not a directory: pass a directory as --mountpoint"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v\nwant it to contain %q", err, want)
	}
	if b, _ := os.ReadFile(p); string(b) != "x" {
		t.Fatal("the file was changed")
	}
}

// go-fuse's own handlers (Lookup, Readdir) panic into PanicHandler: EIO and
// one ERROR line, where go-fuse alone logs a stack at debug level.
func TestPanicHandlerAnswersEIOAndLogsOnce(t *testing.T) {
	var logs bytes.Buffer
	c := &config{log: slog.New(slog.NewTextHandler(&logs, nil))}
	for i := 0; i < 3; i++ {
		if st := c.panicHandler("lookup bug"); st != fuse.EIO {
			t.Fatalf("status %v, want EIO", st)
		}
	}
	if n := strings.Count(logs.String(), `level=ERROR msg="bug: a FUSE request panicked; answering EIO, the mount stays up (please report this line)" op=fuse`); n != 1 {
		t.Fatalf("%d ERROR lines, want 1:\n%s", n, logs.String())
	}
}
