package faultproxy

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// plan is what one request will suffer, drawn when it arrives.
type plan struct {
	kind      Kind    // "" (none), or one of the kinds; Down/AlwaysFail/Status5xx answer before the origin
	failReset bool    // AlwaysFail: reset (true) or 503
	pos       float64 // where in the body a body fault lands, as a fraction of its length
	mask      byte    // Flip: the XOR mask, nonzero
	stallFor  time.Duration
	persist   bool
	persistAt int64 // object offset of the Persistent byte
}

func (p *Proxy) plan(r *http.Request, content bool) plan {
	m := Match(r)
	p.mu.Lock()
	defer p.mu.Unlock()
	var pl plan
	if p.down {
		pl.kind = Down
		return pl
	}
	if content {
		if _, ok := matchAny(p.alwaysFail, m); ok {
			pl.kind, pl.failReset = AlwaysFail, p.rng.IntN(2) == 0
			return pl
		}
		pl.persistAt, pl.persist = matchAny(p.persistent, m)
	}
	rates := p.listing
	if content {
		rates = p.content
	}
	u := p.rng.Float64()
	pl.pos = p.rng.Float64()
	pl.mask = byte(1 + p.rng.IntN(255))
	pl.stallFor = rates.StallFor
	for _, c := range []struct {
		k Kind
		p float64
	}{{Reset, rates.Reset}, {Status5xx, rates.Status5xx}, {Truncate, rates.Truncate}, {Stall, rates.Stall}, {Flip, rates.Flip}} {
		if u < c.p {
			pl.kind = c.k
			break
		}
		u -= c.p
	}
	return pl
}

// Wrap puts the proxy in front of h. Wrap one handler per listener (the
// Hub's and the CDN's both, for the Hub emulator); they share settings and
// counters.
func (p *Proxy) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		content := p.opts.Content(r)
		if content {
			p.contentReqs.Add(1)
		}
		pl := p.plan(r, content)
		switch {
		case pl.kind == Down, pl.kind == AlwaysFail && pl.failReset:
			p.count(pl.kind, r)
			resetConn(w)
			return
		case pl.kind == AlwaysFail, pl.kind == Status5xx:
			p.count(pl.kind, r)
			unavailable(w)
			return
		case pl.kind == "" && !pl.persist && !content:
			h.ServeHTTP(w, r)
			return
		}
		fw := &faultWriter{ResponseWriter: w, p: p, r: r, pl: pl, content: content}
		defer func() {
			if !fw.aborted {
				return
			}
			// A handler that stops on our write error may abort the
			// response itself (httputil.ReverseProxy does): ours is the
			// reset that was asked for.
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				panic(v)
			}
			resetConn(w)
		}()
		h.ServeHTTP(fw, r)
	})
}

// Forward returns a reverse proxy to target with the faults in front, for an
// origin that runs as its own server.
func (p *Proxy) Forward(target *url.URL) http.Handler {
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = nil
	return p.Wrap(rp)
}

// unavailable answers 503 with a small plain body. Each client reads the
// status; none needs an origin-specific error document to retry.
func unavailable(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", "38")
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write([]byte("503 Service Unavailable (faultproxy)\r\n"))
}

// resetConn sends what the response has written so far, then resets the
// TCP connection (RST, by SO_LINGER 0), as a broken network does. Without
// a hijackable connection it aborts the response instead.
func resetConn(w http.ResponseWriter) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	buf.Flush()
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}
