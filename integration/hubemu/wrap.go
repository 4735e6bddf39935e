package hubemu

import (
	"net/http"
)

// Throttle puts the CDN throttle of o in front of any handler, so another
// origin (an S3 emulator, say) can be paced exactly like the Hub's CDN in a
// benchmark: every request waits o.TTFB before its handler runs, each
// response body is paced at o.PerConnBytesPerSec, and all bodies through the
// returned handler share one o.AggregateBytesPerSec bucket (separate from
// any Server's). Zero rates are unlimited; other fields of o are ignored.
//
// Unlike the Hub emulator, which delays only content responses, the TTFB here
// applies to every request, as an object store's first-byte latency does.
func Throttle(h http.Handler, o Options) http.Handler {
	var agg *bucket
	if o.AggregateBytesPerSec > 0 {
		agg = newBucket(o.AggregateBytesPerSec)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !sleepCtx(r.Context(), o.TTFB) {
			return
		}
		p := &pacer{agg: agg}
		if o.PerConnBytesPerSec > 0 {
			p.conn = newBucket(o.PerConnBytesPerSec)
		}
		defer p.stop()
		if !p.limited() {
			h.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(&pacedWriter{ResponseWriter: w, r: r, p: p,
			chunk: p.chunkSize(o.PerConnBytesPerSec, o.AggregateBytesPerSec)}, r)
	})
}

// pacedWriter splits body writes into chunks and waits for each chunk's
// tokens before passing it on. It deliberately has no ReadFrom, so io.Copy
// into it goes through Write (and the pacing) instead of sendfile.
type pacedWriter struct {
	http.ResponseWriter
	r     *http.Request
	p     *pacer
	chunk int
}

func (w *pacedWriter) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		m := min(len(b), w.chunk)
		if err := w.p.wait(w.r.Context(), m); err != nil {
			return n, err
		}
		k, err := w.ResponseWriter.Write(b[:m])
		n += k
		if err != nil {
			return n, err
		}
		b = b[m:]
	}
	return n, nil
}

// Unwrap lets http.ResponseController reach Flush through this wrapper.
func (w *pacedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
