// Package hubemu owns an in-process emulator of the Hugging Face Hub HTTP API
// and its LFS CDN, for tests, demos and benchmarks. It serves the endpoints a
// client may rely on (revision, tree, resolve, pre-signed CDN URLs) with the
// Hub's documented status codes and X-Error-Code headers, and adds what tests
// need: counters, fault injection, rate limiting and CDN-like throttling.
//
// It must stay faithful to what the real Hub promises and must not invent
// conveniences a client could come to depend on. One consequence that
// surprises: as on the Hub, an LFS file's oid (tree) and blobId (revision)
// are the git blob sha1 of its LFS pointer, not of its content; the content
// hash of an LFS file is its sha256 (lfs.oid, lfs.sha256, X-Linked-Etag).
// Non-LFS files are identified by the git blob sha1 of their content (oid,
// blobId, ETag). It never imports weightfs
// packages: it is the origin, not a client.
package hubemu

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Server. Zero values pick the defaults noted.
type Options struct {
	Token     string        // the token accepted for gated/private repos ("Bearer <Token>"); "" accepts none
	PageSize  int           // tree entries per page (default 50); more entries -> Link rel="next"
	CDNURLTTL time.Duration // lifetime of a signed CDN URL (default 1h); expired -> 403

	// Throttling like a real CDN, on content body bytes (resolve and CDN
	// bodies). Zero means unlimited.
	PerConnBytesPerSec   int64         // per response stream
	AggregateBytesPerSec int64         // one token bucket shared by all responses
	TTFB                 time.Duration // delay before the headers of each content response

	HubAddr string // listen address of the Hub (default "127.0.0.1:0")
	CDNAddr string // listen address of the CDN (default "127.0.0.1:0"); URLs name it "localhost"

	// CDNOnHub serves the signed URLs on the Hub's own host and port, as a
	// mirror or proxy set with HF_ENDPOINT does (default false: the CDN is
	// another host, as on huggingface.co). The CDN then accepts the
	// Authorization header, since a client rightly sends it to the Hub host.
	CDNOnHub bool
	// ExpiredStatus answers a signed URL past its expiry or cut off by
	// ExpireCDNURLs (default 403, as S3 and CloudFront answer; some CDNs
	// answer 410 Gone). A bad signature (after Rekey) is always 403.
	ExpiredStatus int

	Logf func(format string, args ...any) // optional: one line per request

	// Wrap, if set, is put in front of each listener's handler (the Hub's
	// and the CDN's), outside everything else: a test's fault-injecting
	// proxy, say. It must tell content requests from API calls itself.
	Wrap func(http.Handler) http.Handler
}

// Server is a running emulator: a Hub listener and a CDN listener. All
// methods are safe for concurrent use.
type Server struct {
	opts    Options
	hubURL  string
	cdnBase string // "http://localhost:PORT"
	hub     *http.Server
	cdn     *http.Server
	secret  atomic.Pointer[[]byte] // signs CDN URLs; Rekey replaces it
	hashes  hashCache

	mu     sync.RWMutex
	repos  map[string]*repo       // GUARDED_BY(mu)
	faults map[faultKey]*faultRun // GUARDED_BY(mu)

	contentReqs atomic.Int64
	apiReqs     atomic.Int64
	bytesServed atomic.Int64
	rateLimit   atomic.Int64 // requests still to answer 429
	cdnSeq      atomic.Int64 // sequence number of the last CDN URL issued
	cdnCutoff   atomic.Int64 // CDN URLs with seq <= cutoff are expired
	outage      atomic.Bool  // every request answers 503 (SetUnavailable)
	stallAPI    atomic.Int64 // API requests still to stall (StallListingNext)
	stallFor    atomic.Int64 // how long each of them stalls, ns

	aggregate *bucket // nil when unlimited
}

// Fault injects misbehaviour into the content responses for one file.
type Fault struct {
	Corrupt      bool          // flip bytes in every served body (content no longer matches its hash)
	CorruptTimes int           // if > 0, corrupt only the first N bodies served (implies Corrupt)
	FailNext     int           // the next N content requests for the file answer 500
	Stall        time.Duration // after headers, sleep this long before the body (a mid-stream stall)
}

type faultKey struct{ repo, path string }

// faultRun is a Fault with its counters being used up.
type faultRun struct {
	Fault
	corruptLeft int
}

// New starts both listeners and returns once they accept connections.
func New(opts Options) (*Server, error) {
	if opts.PageSize <= 0 {
		opts.PageSize = 50
	}
	if opts.CDNURLTTL <= 0 {
		opts.CDNURLTTL = time.Hour
	}
	if opts.HubAddr == "" {
		opts.HubAddr = "127.0.0.1:0"
	}
	if opts.CDNAddr == "" {
		opts.CDNAddr = "127.0.0.1:0"
	}
	if opts.ExpiredStatus == 0 {
		opts.ExpiredStatus = http.StatusForbidden
	}
	s := &Server{
		opts:   opts,
		repos:  map[string]*repo{},
		faults: map[faultKey]*faultRun{},
	}
	s.Rekey()
	if opts.AggregateBytesPerSec > 0 {
		s.aggregate = newBucket(opts.AggregateBytesPerSec)
	}
	hubLn, err := net.Listen("tcp", opts.HubAddr)
	if err != nil {
		return nil, fmt.Errorf("hubemu: hub listener: %w", err)
	}
	cdnLn, err := net.Listen("tcp", opts.CDNAddr)
	if err != nil {
		hubLn.Close()
		return nil, fmt.Errorf("hubemu: cdn listener: %w", err)
	}
	s.hubURL = "http://" + hubLn.Addr().String()
	// A different host name than the Hub's, so a client that keeps the
	// Authorization header across the redirect is caught by the CDN's 400.
	s.cdnBase = "http://localhost:" + strconv.Itoa(cdnLn.Addr().(*net.TCPAddr).Port)
	if opts.CDNOnHub {
		s.cdnBase = s.hubURL
	}
	hubH, cdnH := s.wrap("hub", s.serveHub), s.wrap("cdn", s.serveCDN)
	if opts.Wrap != nil {
		hubH, cdnH = opts.Wrap(hubH), opts.Wrap(cdnH)
	}
	s.hub = &http.Server{Handler: hubH, ReadHeaderTimeout: 10 * time.Second}
	s.cdn = &http.Server{Handler: cdnH, ReadHeaderTimeout: 10 * time.Second}
	go s.hub.Serve(hubLn)
	go s.cdn.Serve(cdnLn)
	return s, nil
}

// URL is the Hub endpoint, to use as HF_ENDPOINT.
func (s *Server) URL() string { return s.hubURL }

// CDNURL is the base of the CDN's URLs ("http://localhost:PORT"; the Hub's
// URL with CDNOnHub).
func (s *Server) CDNURL() string { return s.cdnBase }

// Close stops both listeners and drops open connections; handlers in flight
// see their request context cancelled.
func (s *Server) Close() {
	s.hub.Close()
	s.cdn.Close()
}

// AddRepo hashes the repo's files and starts serving it, replacing any repo
// of the same ID. Hashing streams each file once (sha256 for LFS files, git
// blob sha1 for the rest), in parallel across files.
func (s *Server) AddRepo(r Repo) error {
	rp, err := loadRepo(r, &s.hashes)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.repos[r.ID] = rp
	s.mu.Unlock()
	return nil
}

// RepoCommit returns the commit a branch, tag or commit of a repo resolves to.
func (s *Server) RepoCommit(id, rev string) (string, bool) {
	rp := s.repo(id)
	if rp == nil {
		return "", false
	}
	return rp.resolveRev(rev)
}

func (s *Server) repo(id string) *repo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.repos[id]
}

// ContentRequests counts GET/HEAD requests to /{repo}/resolve/... and to the
// CDN, whatever their answer.
func (s *Server) ContentRequests() int64 { return s.contentReqs.Load() }

// APIRequests counts requests to /api/..., whatever their answer.
func (s *Server) APIRequests() int64 { return s.apiReqs.Load() }

// BytesServed counts file content bytes written in resolve and CDN bodies.
func (s *Server) BytesServed() int64 { return s.bytesServed.Load() }

// ResetCounters zeroes ContentRequests, APIRequests and BytesServed.
func (s *Server) ResetCounters() {
	s.contentReqs.Store(0)
	s.apiReqs.Store(0)
	s.bytesServed.Store(0)
}

// SetFault replaces the fault for one file of a repo (path as in the repo).
func (s *Server) SetFault(repo, path string, f Fault) {
	run := &faultRun{Fault: f, corruptLeft: f.CorruptTimes}
	s.mu.Lock()
	s.faults[faultKey{repo, path}] = run
	s.mu.Unlock()
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults = map[faultKey]*faultRun{}
	s.mu.Unlock()
}

// RateLimitNext makes the next n requests of any kind, on either listener,
// answer 429 with Retry-After: 1.
func (s *Server) RateLimitNext(n int) { s.rateLimit.Store(int64(n)) }

// ExpireCDNURLs makes every CDN URL issued so far answer 403, as an expired
// pre-signed URL does.
func (s *Server) ExpireCDNURLs() { s.cdnCutoff.Store(s.cdnSeq.Load()) }

// takeFailure consumes one content request's worth of the file's fault: whether
// to fail it with 500.
func (s *Server) takeFailure(repo, path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	fr := s.faults[faultKey{repo, path}]
	if fr == nil || fr.FailNext <= 0 {
		return false
	}
	fr.FailNext--
	return true
}

// bodyFault reports how to serve one body of the file: corrupted or not, and
// the stall before it. It consumes one CorruptTimes.
func (s *Server) bodyFault(repo, path string) (corrupt bool, stall time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fr := s.faults[faultKey{repo, path}]
	if fr == nil {
		return false, 0
	}
	switch {
	case fr.CorruptTimes > 0:
		if fr.corruptLeft > 0 {
			fr.corruptLeft--
			corrupt = true
		}
	case fr.Corrupt:
		corrupt = true
	}
	return corrupt, fr.Stall
}

// takeRateLimit consumes one pending 429.
func (s *Server) takeRateLimit() bool {
	for {
		n := s.rateLimit.Load()
		if n <= 0 {
			return false
		}
		if s.rateLimit.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// statusWriter remembers the status for the request log.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush and the connection's
// ReadFrom (sendfile) through this wrapper.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wrap applies the cross-cutting behaviour of both listeners: pending 429s
// and the request log.
func (s *Server) wrap(name string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		start := time.Now()
		if s.outage.Load() {
			s.countRequest(name, r)
			writeError(sw, http.StatusServiceUnavailable, "", "Service Unavailable (injected outage)")
		} else if s.takeRateLimit() {
			s.countRequest(name, r)
			sw.Header().Set("Retry-After", "1")
			writeError(sw, http.StatusTooManyRequests, "", "You are rate limited, retry later")
		} else {
			h(sw, r)
		}
		if s.opts.Logf != nil {
			s.opts.Logf("hubemu %s: %s %s %q -> %d (%s)", name, r.Method, r.URL.RequestURI(), r.Header.Get("Range"), sw.code, time.Since(start).Round(time.Microsecond))
		}
	})
}

// countRequest counts a request that is answered before routing (a 429).
func (s *Server) countRequest(listener string, r *http.Request) {
	switch {
	case listener == "cdn":
		s.contentReqs.Add(1)
	case len(r.URL.Path) >= 5 && r.URL.Path[:5] == "/api/":
		s.apiReqs.Add(1)
	default:
		s.contentReqs.Add(1)
	}
}

// writeError answers like the Hub: status, X-Error-Code (when code != ""),
// X-Error-Message and a small JSON body.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	h := w.Header()
	if code != "" {
		h.Set("X-Error-Code", code)
	}
	h.Set("X-Error-Message", msg)
	h.Set("Content-Type", "application/json; charset=utf-8")
	body, _ := json.Marshal(map[string]string{"error": msg})
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// ReadFrom keeps io.Copy on the sendfile path through this wrapper.
func (w *statusWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return io.Copy(w.ResponseWriter, src)
}
