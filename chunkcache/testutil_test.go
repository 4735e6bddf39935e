package chunkcache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weightfs/weightfs/fetch"
)

// fakeSource serves in-memory files and injects failures.
type fakeSource struct {
	mu      sync.Mutex
	files   map[string][]byte // GUARDED_BY(mu)
	corrupt map[string]int    // GUARDED_BY(mu): corrupt the next N reads (-1: always)
	failN   int               // GUARDED_BY(mu): fail the next N reads
	stall   time.Duration     // GUARDED_BY(mu)
	// flipRate is the share of reads that get one byte flipped at a random
	// position: corruption that differs from one response to the next.
	flipRate float64    // GUARDED_BY(mu)
	rng      *rand.Rand // GUARDED_BY(mu)
	down     bool       // GUARDED_BY(mu): every read fails (an outage)
	reads    atomic.Int64
	bytes    atomic.Int64
}

func newFakeSource() *fakeSource {
	return &fakeSource{files: map[string][]byte{}, corrupt: map[string]int{}}
}

// add creates a file of n pseudo-random bytes and returns its manifest entry.
func (s *fakeSource) add(path string, n int, seed uint64) fetch.File {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	s.mu.Lock()
	s.files[path] = b
	s.mu.Unlock()
	sum := sha256.Sum256(b)
	return fetch.File{Path: path, Size: int64(n), Checksum: fetch.Checksum{Algo: fetch.AlgoSHA256, Value: hex.EncodeToString(sum[:])}, Version: "v1"}
}

func (s *fakeSource) content(path string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[path]
}

func (s *fakeSource) ReadRange(ctx context.Context, f fetch.File, off int64, p []byte) error {
	s.reads.Add(1)
	s.mu.Lock()
	b := s.files[f.Path]
	stall := s.stall
	fail := s.failN > 0
	if fail {
		s.failN--
	}
	corrupt := s.corrupt[f.Path] != 0
	if s.corrupt[f.Path] > 0 {
		s.corrupt[f.Path]--
	}
	fail = fail || s.down
	flipAt := -1
	if s.flipRate > 0 && len(p) > 0 {
		if s.rng == nil {
			s.rng = rand.New(rand.NewPCG(1, 2))
		}
		if s.rng.Float64() < s.flipRate {
			flipAt = s.rng.IntN(len(p))
		}
	}
	s.mu.Unlock()
	if stall > 0 {
		select {
		case <-time.After(stall):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail {
		return errors.New("injected failure")
	}
	if b == nil {
		return fetch.Permanent(errors.New("no such file"))
	}
	copy(p, b[off:])
	if corrupt && len(p) > 0 {
		p[0] ^= 0xff
	}
	if flipAt >= 0 {
		p[flipAt] ^= 0x01
	}
	s.bytes.Add(int64(len(p)))
	return nil
}

// recEvents records ServedBad events.
type recEvents struct {
	NopEvents
	mu  sync.Mutex
	bad []string
}

func (e *recEvents) ServedBad(path string) {
	e.mu.Lock()
	e.bad = append(e.bad, path)
	e.mu.Unlock()
}

func (e *recEvents) servedBad() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.bad...)
}
