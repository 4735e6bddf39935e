// Package faultproxy owns a fault-injecting http.Handler middleware for the
// origins the tests run (the Hub emulator's Hub and CDN listeners, gofakes3,
// fake-gcs-server, or any URL through Forward). On content responses (the
// bytes of an object: Hub resolve and CDN bodies, S3 GetObject, GCS media
// downloads) it flips a byte, resets the connection mid-body, answers 5xx,
// truncates the body under correct headers, or stalls, each with a
// probability set at run time and drawn from a seeded generator. Switches
// make one object always fail, the whole origin go down, or one object carry
// the same wrong byte every time (persistent corruption).
//
// Listings and metadata pass untouched unless SetListingRates asks
// otherwise. It never imports weightfs packages: it is part of the origin,
// not a client, so what it sends is what a misbehaving network would.
package faultproxy

import (
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kind names an injected fault, as counted in Stats.Faults.
type Kind string

const (
	Flip       Kind = "flip"        // one byte of the body XORed with a random nonzero mask
	Reset      Kind = "reset"       // the TCP connection reset (RST) partway through the body
	Status5xx  Kind = "5xx"         // 503 before the origin is asked
	Truncate   Kind = "truncate"    // the body ends early; headers (Content-Length) unchanged
	Stall      Kind = "stall"       // the body stops partway for Rates.StallFor (or until the client gives up)
	AlwaysFail Kind = "always-fail" // a request AlwaysFail matched: reset or 503, alternating at random
	Down       Kind = "down"        // a request while SetDown(true): connection reset before any byte
	Persistent Kind = "persistent"  // the byte at the Persistent offset served wrong (same wrong value every time)
)

// Rates are per-response probabilities in [0, 1]. The kinds are exclusive:
// one response carries at most one of them, so their sum should be at most
// 1 (beyond 1 the later kinds in the list below get less than asked).
type Rates struct {
	Reset     float64
	Status5xx float64
	Truncate  float64
	Stall     float64
	Flip      float64
	// StallFor is how long a stall lasts; 0 means until the client hangs up
	// (or the server closes).
	StallFor time.Duration
}

// Options configures a Proxy. Zero values pick the defaults noted.
type Options struct {
	Seed uint64 // seeds every random draw (default 0, still deterministic per request order)
	// Content tells content requests (object bytes) from the rest
	// (default AnyContent).
	Content func(*http.Request) bool
	Logf    func(format string, args ...any) // optional: one line per injected fault
}

// Stats is a snapshot of the counters.
type Stats struct {
	Requests        int64          // every request seen, content or not
	ContentRequests int64          // requests Options.Content called content
	ContentBytes    int64          // body bytes written in content responses
	Faults          map[Kind]int64 // faults actually injected (a flip past the body's end is not counted)
}

// Proxy injects faults in front of handlers. All methods are safe for
// concurrent use, and every setting may change mid-test.
type Proxy struct {
	opts Options

	mu         sync.Mutex
	rng        *rand.Rand                // GUARDED_BY(mu)
	content    Rates                     // GUARDED_BY(mu)
	listing    Rates                     // GUARDED_BY(mu)
	down       bool                      // GUARDED_BY(mu)
	alwaysFail map[string]bool           // GUARDED_BY(mu); path substrings
	persistent map[string]int64          // GUARDED_BY(mu); path substring -> object offset
	faults     map[Kind]int64            // GUARDED_BY(mu)
	onFault    func(Kind, *http.Request) // GUARDED_BY(mu)

	requests     atomic.Int64
	contentReqs  atomic.Int64
	contentBytes atomic.Int64
}

// New returns a Proxy that injects nothing until told to.
func New(o Options) *Proxy {
	if o.Content == nil {
		o.Content = AnyContent
	}
	return &Proxy{
		opts:       o,
		rng:        rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15)),
		alwaysFail: map[string]bool{},
		persistent: map[string]int64{},
		faults:     map[Kind]int64{},
	}
}

// SetRates sets the fault probabilities of content responses.
func (p *Proxy) SetRates(r Rates) {
	p.mu.Lock()
	p.content = r
	p.mu.Unlock()
}

// Rates returns the content fault probabilities in force.
func (p *Proxy) Rates() Rates {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.content
}

// SetFlipRate changes only the flipped-byte probability of content responses.
func (p *Proxy) SetFlipRate(f float64) {
	p.mu.Lock()
	p.content.Flip = f
	p.mu.Unlock()
}

// SetListingRates sets fault probabilities for every request that is not
// content (listings, metadata, resolves of the Hub API); zero by default.
func (p *Proxy) SetListingRates(r Rates) {
	p.mu.Lock()
	p.listing = r
	p.mu.Unlock()
}

// AlwaysFail makes every content request whose path (see Match) contains
// substr fail, by a reset or a 503, until Lift(substr).
func (p *Proxy) AlwaysFail(substr string) {
	p.mu.Lock()
	p.alwaysFail[substr] = true
	p.mu.Unlock()
}

// Persistent corrupts the byte at object offset off of every content
// response for an object whose path contains substr and whose body covers
// off: the same wrong value each time (XOR 0x5a), until Lift(substr).
func (p *Proxy) Persistent(substr string, off int64) {
	p.mu.Lock()
	p.persistent[substr] = off
	p.mu.Unlock()
}

// Lift removes AlwaysFail and Persistent for substr.
func (p *Proxy) Lift(substr string) {
	p.mu.Lock()
	delete(p.alwaysFail, substr)
	delete(p.persistent, substr)
	p.mu.Unlock()
}

// SetDown makes every request, content or not, fail by a connection reset
// before any byte is sent (true), or lets them through again (false).
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

// OnFault registers f to be called (outside any lock) for every fault
// injected; nil removes it.
func (p *Proxy) OnFault(f func(Kind, *http.Request)) {
	p.mu.Lock()
	p.onFault = f
	p.mu.Unlock()
}

// Clear lifts every switch and zeroes every rate; counters are kept.
func (p *Proxy) Clear() {
	p.mu.Lock()
	p.content, p.listing, p.down = Rates{}, Rates{}, false
	p.alwaysFail = map[string]bool{}
	p.persistent = map[string]int64{}
	p.mu.Unlock()
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	f := make(map[Kind]int64, len(p.faults))
	for k, v := range p.faults {
		f[k] = v
	}
	p.mu.Unlock()
	return Stats{Requests: p.requests.Load(), ContentRequests: p.contentReqs.Load(),
		ContentBytes: p.contentBytes.Load(), Faults: f}
}

// ResetStats zeroes the counters.
func (p *Proxy) ResetStats() {
	p.mu.Lock()
	p.faults = map[Kind]int64{}
	p.mu.Unlock()
	p.requests.Store(0)
	p.contentReqs.Store(0)
	p.contentBytes.Store(0)
}

// Match is the text AlwaysFail and Persistent substrings are matched
// against: the decoded path, then "?" and the decoded query. It names the
// object on every origin: S3 "/bucket/key", GCS
// "/download/storage/v1/b/bucket/o/key?alt=media", the Hub
// "/acme/llm/resolve/main/path" and its CDN "...?file=path&repo=acme/llm".
func Match(r *http.Request) string {
	q, err := url.QueryUnescape(r.URL.RawQuery)
	if err != nil {
		q = r.URL.RawQuery
	}
	return r.URL.Path + "?" + q
}

func matchAny[V any](m map[string]V, s string) (V, bool) {
	for k, v := range m {
		if strings.Contains(s, k) {
			return v, true
		}
	}
	var zero V
	return zero, false
}

func (p *Proxy) count(k Kind, r *http.Request) {
	p.mu.Lock()
	p.faults[k]++
	f := p.onFault
	p.mu.Unlock()
	if p.opts.Logf != nil {
		p.opts.Logf("faultproxy: %s on %s %s %q", k, r.Method, r.URL.RequestURI(), r.Header.Get("Range"))
	}
	if f != nil {
		f(k, r)
	}
}
