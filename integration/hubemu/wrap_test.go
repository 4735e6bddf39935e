package hubemu

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestThrottleWrapsAnyHandler(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	})
	tests := []struct {
		name    string
		opts    Options
		atLeast time.Duration
	}{
		{"unlimited", Options{}, 0},
		{"ttfb only", Options{TTFB: 100 * time.Millisecond}, 100 * time.Millisecond},
		// 1 MiB at 8 MiB/s per stream: ~125 ms, less the bucket's burst.
		{"per stream", Options{PerConnBytesPerSec: 8 << 20}, 100 * time.Millisecond},
		{"aggregate", Options{AggregateBytesPerSec: 8 << 20}, 100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(Throttle(inner, tc.opts))
			defer srv.Close()
			start := time.Now()
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("body: %d bytes, err %v; want the %d bytes written", len(got), err, len(body))
			}
			if took < tc.atLeast {
				t.Errorf("took %s, want at least %s", took, tc.atLeast)
			}
		})
	}
}
