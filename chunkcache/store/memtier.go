package store

import (
	"fmt"

	"github.com/dgraph-io/ristretto/v2"
)

// memTier keeps hot chunks in memory so repeated reads (several loaders,
// a re-read header) are served without a disk read. Its cost unit is bytes,
// so the budget bounds the daemon's RSS. A nil *memTier is a disabled tier.
type memTier struct {
	c *ristretto.Cache[string, []byte]
}

func newMemTier(budget int64) (*memTier, error) {
	if budget <= 0 {
		return nil, nil
	}
	// Chunks are ~8 MiB, but small files are whole "chunks" too, so count on
	// many more, smaller items than budget/chunkSize.
	items := budget / (64 << 10)
	c, err := ristretto.NewCache(&ristretto.Config[string, []byte]{
		NumCounters: max(items*10, 1000),
		MaxCost:     budget,
		BufferItems: 64,
		// Nothing here has a TTL; ristretto's expiry sweep would otherwise
		// wake every 2.5 s for the life of an idle daemon.
		TtlTickerDurationInSec: 1 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("memory tier: %w", err)
	}
	return &memTier{c: c}, nil
}

func (m *memTier) get(key string) ([]byte, bool) {
	if m == nil {
		return nil, false
	}
	return m.c.Get(key)
}

// put offers b to the tier and reports whether it may have kept it; if so
// the caller must never modify or reuse b.
func (m *memTier) put(key string, b []byte) bool {
	if m == nil {
		return false
	}
	m.c.Set(key, b, int64(cap(b)))
	// Sets are applied asynchronously; wait, so a chunk marked present
	// right after is found here. Mostly first chunks come here (see
	// memWorthy), so the wait is rare.
	m.c.Wait()
	return true
}

func (m *memTier) del(key string) {
	if m == nil {
		return
	}
	m.c.Del(key)
}

func (m *memTier) close() {
	if m == nil {
		return
	}
	m.c.Close()
}
