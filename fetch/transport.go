package fetch

import (
	"net"
	"net/http"
	"time"
)

// Connection settings shared by every origin's HTTP client. Origins serve
// many parallel ranged GETs of large immutable files; no request carries a
// client-wide timeout, since every call has its own ctx deadline
// (RetryPolicy.AttemptTimeout).
const (
	dialTimeout           = 10 * time.Second // TCP connect
	dialKeepAlive         = 30 * time.Second // TCP keep-alive probes on idle connections
	tlsHandshakeTimeout   = 10 * time.Second
	responseHeaderTimeout = 30 * time.Second // a stalled origin fails this attempt, not the read
	expectContinueTimeout = time.Second
	idleConnTimeout       = 90 * time.Second
	// maxIdleConnsPerHost keeps a whole wave of parallel ranges warm.
	maxIdleConnsPerHost = 128
)

// NewTransport returns the base HTTP transport for origins: proxies from the
// environment, HTTP/1.1 only, and the settings of TuneDialer and
// TuneTransport.
func NewTransport() *http.Transport {
	d := &net.Dialer{}
	TuneDialer(d)
	t := &http.Transport{Proxy: http.ProxyFromEnvironment, DialContext: d.DialContext}
	TuneTransport(t)
	return t
}

// TuneDialer sets the dial and keep-alive timeouts, for an SDK that builds
// its own dialer.
func TuneDialer(d *net.Dialer) {
	d.Timeout = dialTimeout
	d.KeepAlive = dialKeepAlive
}

// TuneTransport applies the shared settings to t, keeping what it already
// has for proxies, dialing and TLS roots (an SDK's CA bundle).
func TuneTransport(t *http.Transport) {
	// HTTP/1.1 only: one TCP stream per range. CDNs, S3 and GCS limit
	// throughput per connection, so many connections beat many streams
	// multiplexed on one HTTP/2 connection.
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	t.Protocols = protos
	t.ForceAttemptHTTP2 = false
	t.MaxIdleConns = 0 // no global cap; per-host cap below
	t.MaxIdleConnsPerHost = maxIdleConnsPerHost
	t.MaxConnsPerHost = 0 // concurrency is bounded by the chunk cache
	t.IdleConnTimeout = idleConnTimeout
	t.TLSHandshakeTimeout = tlsHandshakeTimeout
	t.ResponseHeaderTimeout = responseHeaderTimeout
	t.ExpectContinueTimeout = expectContinueTimeout
	// Range + transparent gzip is wrong for weights: offsets would be into
	// the compressed stream.
	t.DisableCompression = true
}
