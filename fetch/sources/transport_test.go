package sources

import (
	"net/http"
	"testing"
	"time"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/gcssrc"
	"github.com/weightfs/weightfs/fetch/hf"
	"github.com/weightfs/weightfs/fetch/s3src"
)

// Every origin's default client has the same connection settings, from
// fetch alone: one place to change a timeout. Before this change each of
// hf, s3src and gcssrc set them itself, in three copies (this test did not
// compile: there was no fetch.NewTransport).
func TestOriginsShareTheTransport(t *testing.T) {
	want := fetch.NewTransport()
	if want.ResponseHeaderTimeout != 30*time.Second || want.TLSHandshakeTimeout != 10*time.Second ||
		want.IdleConnTimeout != 90*time.Second || want.MaxIdleConnsPerHost != 128 || !want.DisableCompression ||
		want.Protocols == nil || want.Protocols.HTTP2() || !want.Protocols.HTTP1() || want.Proxy == nil {
		t.Fatalf("fetch.NewTransport settings drifted: %+v", want)
	}
	s3c := s3src.NewHTTPClient()
	if d := s3c.GetDialer(); d.Timeout != 10*time.Second || d.KeepAlive != 30*time.Second {
		t.Errorf("s3src dialer: timeout %s, keep-alive %s", d.Timeout, d.KeepAlive)
	}
	hfc := hf.NewHTTPClient()
	hft, ok := hfc.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("hf transport is %T", hfc.Transport)
	}
	for name, got := range map[string]*http.Transport{"hf": hft, "s3src": s3c.GetTransport(), "gcssrc": gcssrc.NewTransport()} {
		if got.ResponseHeaderTimeout != want.ResponseHeaderTimeout || got.TLSHandshakeTimeout != want.TLSHandshakeTimeout ||
			got.IdleConnTimeout != want.IdleConnTimeout || got.ExpectContinueTimeout != want.ExpectContinueTimeout ||
			got.MaxIdleConns != want.MaxIdleConns || got.MaxIdleConnsPerHost != want.MaxIdleConnsPerHost ||
			got.MaxConnsPerHost != want.MaxConnsPerHost || got.DisableCompression != want.DisableCompression ||
			got.ForceAttemptHTTP2 || got.Protocols == nil || got.Protocols.String() != want.Protocols.String() {
			t.Errorf("%s transport differs from fetch.NewTransport: %+v", name, got)
		}
	}
	if hfc.CheckRedirect == nil || hfc.Timeout != 0 {
		t.Errorf("hf client: redirects must be left to the Source and no client timeout set")
	}
}
