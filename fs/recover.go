package fs

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// A panic in one FUSE request must not take the mount down: every reader
// of every file would get "transport endpoint is not connected" until the
// daemon is restarted. go-fuse recovers what escapes a handler, but only
// logs it with a stack at debug level, and the panicking handler may have
// left a lock held. So each handler of ours recovers itself, after its own
// deferred unlocks have run, answers EIO, and says which file and where,
// once; PanicHandler catches the rest (go-fuse's own Lookup and Readdir).

// panicLog remembers which panics were already logged at ERROR, so a bug
// hit by every page fault of a loader logs one line, not thousands.
type panicLog struct {
	mu   sync.Mutex
	seen map[string]int // GUARDED_BY(mu); "op file" -> panics since start
}

// maxPanicKeys bounds the memory a panic storm across many files can use;
// beyond it every panic is logged at debug only.
const maxPanicKeys = 1024

// first counts one panic under key and reports whether it is the first.
func (p *panicLog) first(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = map[string]int{}
	}
	n, ok := p.seen[key]
	if !ok && len(p.seen) >= maxPanicKeys {
		return false
	}
	p.seen[key] = n + 1
	return !ok
}

// recovered must be deferred directly by a handler: it turns a panic into
// EIO in *errno and logs it. vol and path may be "" for the root.
func (c *config) recovered(op, vol, path string, errno *syscall.Errno) {
	r := recover()
	if r == nil {
		return
	}
	if errno != nil {
		*errno = syscall.EIO
	}
	c.logPanic(op, vol, path, r)
}

func (c *config) logPanic(op, vol, path string, r any) {
	msg := "bug: a FUSE request panicked; answering EIO, the mount stays up (please report this line)"
	attrs := []any{"op", op, "volume", vol, "file", path, "panic", fmt.Sprint(r), "at", panicSite()}
	if c.panics.first(op + " " + vol + "/" + path) {
		c.log.Error(msg, attrs...)
		return
	}
	c.log.Debug(msg, attrs...)
}

// panicHandler is go-fuse's last resort (fuse.MountOptions.PanicHandler),
// for panics outside our handlers, where no file is known.
func (c *config) panicHandler(r any) fuse.Status {
	c.logPanic("fuse", "", "", r)
	return fuse.EIO
}

// panicSite is the function and line that panicked: the first frame below
// the runtime's panic machinery, when called from a deferred recover.
func panicSite() string {
	pcs := make([]uintptr, 32)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
	inPanic := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			inPanic = true
		case inPanic && !strings.HasPrefix(f.Function, "runtime."):
			return fmt.Sprintf("%s (%s:%d)", f.Function, trimPath(f.File), f.Line)
		}
		if !more {
			return "unknown"
		}
	}
}

// trimPath keeps the last two elements of a source path: enough to find
// the line, without the build machine's directories.
func trimPath(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		if j := strings.LastIndexByte(p[:i], '/'); j >= 0 {
			return p[j+1:]
		}
	}
	return p
}
