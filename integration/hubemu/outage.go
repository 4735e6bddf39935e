package hubemu

import (
	"crypto/rand"
	"net/http"
	"time"
)

// Origin-wide faults: what a restart, an outage or an overloaded API server
// does to every client at once, as opposed to the per-file Fault.

// Rekey replaces the secret that signs CDN URLs, as an origin restart that
// re-keys does: every URL issued so far now answers 403
// SignatureDoesNotMatch, whatever its expiry; URLs issued afterwards work.
func (s *Server) Rekey() {
	k := make([]byte, 32)
	rand.Read(k)
	s.secret.Store(&k)
}

// SetUnavailable starts (true) or ends (false) an outage: while it lasts,
// every request on either listener answers 503, with no Retry-After, as a
// load balancer in front of a dead origin does. Requests in flight finish.
func (s *Server) SetUnavailable(down bool) { s.outage.Store(down) }

// StallListingNext makes the next n API requests (revision, tree, model
// info) wait d before they are answered, or until the client hangs up if
// sooner: a listing that stalls before its headers, which only the client's
// own deadline ends. Content requests are not stalled (Fault.Stall is for
// those).
func (s *Server) StallListingNext(n int, d time.Duration) {
	s.stallFor.Store(int64(d))
	s.stallAPI.Store(int64(n))
}

// stallListing consumes one pending listing stall, if any, and sleeps it.
// It reports whether to go on answering (false: the client left).
func (s *Server) stallListing(r *http.Request) bool {
	for {
		n := s.stallAPI.Load()
		if n <= 0 {
			return true
		}
		if s.stallAPI.CompareAndSwap(n, n-1) {
			return sleepCtx(r.Context(), time.Duration(s.stallFor.Load()))
		}
	}
}
