package hubemu

import (
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestThrottleAccuracy measures achieved rates against the configured ones.
// It takes a few seconds and needs the CPU to itself, so it runs only with
// HUBEMU_ACCURACY=1.
func TestThrottleAccuracy(t *testing.T) {
	if os.Getenv("HUBEMU_ACCURACY") == "" {
		t.Skip("set HUBEMU_ACCURACY=1")
	}
	files := map[string][]byte{"w.safetensors": make([]byte, 256<<20)}
	dir := writeFiles(t, files)
	tests := []struct {
		name           string
		perConn, agg   int64
		streams        int
		bytesPerStream int64
		want           float64 // aggregate bytes/s
	}{
		{"50MB/s per conn", 50e6, 0, 1, 100e6, 50e6},
		{"50MB/s per conn x8", 50e6, 0, 8, 50e6, 400e6},
		{"1.25GB/s aggregate x16", 0, 1.25e9, 16, 128 << 20, 1.25e9},
		{"aggregate binds before per conn x32", 50e6, 1.25e9, 32, 64 << 20, 1.25e9},
		{"unlimited x4", 0, 0, 4, 256 << 20, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Options{PerConnBytesPerSec: tc.perConn, AggregateBytesPerSec: tc.agg})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.AddRepo(Repo{ID: "acme/w", Dir: dir}); err != nil {
				t.Fatal(err)
			}
			loc := cdnLocation(t, s, "acme/w", "w.safetensors")
			start := time.Now()
			var wg sync.WaitGroup
			for i := 0; i < tc.streams; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					req, _ := http.NewRequest("GET", loc, nil)
					req.Header.Set("Range", "bytes=0-"+itoa(tc.bytesPerStream-1))
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}(i)
			}
			wg.Wait()
			el := time.Since(start)
			rate := float64(s.BytesServed()) / el.Seconds()
			t.Logf("%s: %.1f MB/s (want %.1f) in %v", tc.name, rate/1e6, tc.want/1e6, el)
			if tc.want > 0 && (rate < tc.want*0.95 || rate > tc.want*1.05) {
				t.Errorf("rate %.1f MB/s is more than 5%% off %.1f MB/s", rate/1e6, tc.want/1e6)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
