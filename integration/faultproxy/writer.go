package faultproxy

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// errInjected stops the origin's handler once its body has been cut.
var errInjected = errors.New("faultproxy: response cut by an injected fault")

// unknownLength is the span body faults land in when a response does not
// declare its length (chunked): its first 64 KiB.
const unknownLength = 64 << 10

// faultWriter applies a plan's body faults to one response. It has no
// ReadFrom on purpose: every body byte goes through Write, so none escapes
// by sendfile, and it never changes the caller's buffer (an in-memory origin
// may hand over its own backing array).
type faultWriter struct {
	http.ResponseWriter
	p       *Proxy
	r       *http.Request
	pl      plan
	content bool

	wroteHeader bool
	active      bool  // the response has a body the plan applies to
	off         int64 // body bytes written so far
	cutAt       int64 // body offset of a Reset/Truncate/Stall; -1 none
	flipAt      int64 // body offset of a Flip; -1 none
	persistAt   int64 // body offset of the Persistent byte; -1 none
	cut         bool  // the body was cut (Reset, Truncate): drop the rest
	aborted     bool  // reset the connection once the handler returns
}

func (w *faultWriter) WriteHeader(code int) {
	if w.wroteHeader {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wroteHeader = true
	w.cutAt, w.flipAt, w.persistAt = -1, -1, -1
	if (code == http.StatusOK || code == http.StatusPartialContent) && w.r.Method != http.MethodHead {
		h := w.Header()
		n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64)
		if err != nil || n < 0 {
			n = -1
		}
		span := n
		if span < 0 {
			span = unknownLength
		}
		if span > 0 {
			w.active = true
			at := min(int64(w.pl.pos*float64(span)), span-1)
			switch w.pl.kind {
			case Reset, Truncate, Stall:
				w.cutAt = at
			case Flip:
				w.flipAt = at
			}
			if w.pl.persist {
				start := int64(0)
				if code == http.StatusPartialContent {
					start = contentRangeStart(h.Get("Content-Range"))
				}
				if rel := w.pl.persistAt - start; start >= 0 && rel >= 0 && (n < 0 || rel < n) {
					w.persistAt = rel
				}
				if w.flipAt == w.persistAt {
					w.flipAt = -1 // both on one byte: the persistent value wins
				}
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *faultWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.cut {
		return 0, errInjected
	}
	if !w.active {
		return w.pass(b)
	}
	done := 0
	for len(b) > 0 {
		end := w.off + int64(len(b))
		next, ev := end, Kind("")
		for _, e := range []struct {
			at int64
			k  Kind
		}{{w.cutAt, w.pl.kind}, {w.flipAt, Flip}, {w.persistAt, Persistent}} {
			if e.at >= w.off && e.at < next {
				next, ev = e.at, e.k
			}
		}
		k, err := w.pass(b[:next-w.off])
		done += k
		if err != nil {
			return done, err
		}
		b = b[k:]
		if ev == "" {
			break
		}
		switch ev {
		case Reset, Truncate:
			w.cutAt = -1
			w.cut, w.aborted = true, ev == Reset
			w.p.count(ev, w.r)
			http.NewResponseController(w.ResponseWriter).Flush()
			return done, errInjected
		case Stall:
			w.cutAt = -1
			w.p.count(Stall, w.r)
			http.NewResponseController(w.ResponseWriter).Flush()
			if !w.stall() {
				w.cut = true
				return done, errInjected
			}
			continue
		case Flip, Persistent:
			mask := w.pl.mask
			if ev == Persistent {
				mask, w.persistAt = 0x5a, -1
			} else {
				w.flipAt = -1
			}
			k, err := w.pass([]byte{b[0] ^ mask})
			done += k
			if err != nil {
				return done, err
			}
			w.p.count(ev, w.r)
			b = b[1:]
		}
	}
	return done, nil
}

// pass writes b through, counting content bytes and the body offset.
func (w *faultWriter) pass(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	k, err := w.ResponseWriter.Write(b)
	w.off += int64(k)
	if w.content {
		w.p.contentBytes.Add(int64(k))
	}
	return k, err
}

// stall waits StallFor, or until the client hangs up; it reports whether
// the client is still there.
func (w *faultWriter) stall() bool {
	ctx := w.r.Context()
	if w.pl.stallFor <= 0 {
		<-ctx.Done()
		return false
	}
	t := time.NewTimer(w.pl.stallFor)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Flush lets handlers that assert http.Flusher flush through this wrapper.
var _ http.Flusher = (*faultWriter)(nil) // probed by http.ResponseController

func (w *faultWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the connection through this
// wrapper.
func (w *faultWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// contentRangeStart parses "bytes START-END/SIZE"; -1 if it cannot.
func contentRangeStart(v string) int64 {
	s, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return -1
	}
	s, _, ok = strings.Cut(s, "-")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return -1
	}
	return n
}
