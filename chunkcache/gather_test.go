package chunkcache

import (
	"testing"
	"time"
)

// The backoff of gather's rounds follows the time between two chunks
// landing in the fleet (8 in flight), within 100 ms and 1 s.
func TestGatherCap(t *testing.T) {
	for _, c := range []struct{ chunk, want time.Duration }{
		{400 * time.Millisecond, 100 * time.Millisecond}, // a fast origin: never under the floor
		{670 * time.Millisecond, 100 * time.Millisecond}, // 8 MiB in one of 8 slots of 800 Mbit/s
		{2 * time.Second, 250 * time.Millisecond},        // before any chunk was timed
		{4 * time.Second, 500 * time.Millisecond},
		{800 * time.Second, time.Second}, // a huge fleet: still about once a second
	} {
		if got := gatherCap(c.chunk); got != c.want {
			t.Errorf("origin chunk time %v: cap %v, want %v", c.chunk, got, c.want)
		}
	}
}
