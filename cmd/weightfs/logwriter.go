package main

import (
	"fmt"
	"io"
	"sync/atomic"
)

// asyncWriter decouples logging from the log's reader. A FUSE daemon must
// never block serving a read because its stderr pipe is full: the process
// draining that pipe may itself be stuck in a page fault on this very mount
// (a container runtime's log shim, or a test harness), which would deadlock
// both. Lines are queued and written by one goroutine; when the queue is full
// they are dropped and counted, and the count is reported once there is room.
type asyncWriter struct {
	out     io.Writer
	lines   chan []byte
	dropped atomic.Int64
}

func newAsyncWriter(out io.Writer, depth int) *asyncWriter {
	w := &asyncWriter{out: out, lines: make(chan []byte, depth)}
	go w.drain()
	return w
}

func (w *asyncWriter) Write(p []byte) (int, error) {
	select {
	case w.lines <- append([]byte(nil), p...):
	default:
		w.dropped.Add(1)
	}
	return len(p), nil
}

func (w *asyncWriter) drain() {
	for line := range w.lines {
		if n := w.dropped.Swap(0); n > 0 {
			fmt.Fprintf(w.out, "level=WARN msg=\"log lines dropped: stderr was not being read\" count=%d\n", n)
		}
		w.out.Write(line)
	}
}

// flush waits briefly for queued lines to be written (at exit).
func (w *asyncWriter) flush() {
	for i := 0; i < 100 && len(w.lines) > 0; i++ {
		sleepMillis(10)
	}
}
