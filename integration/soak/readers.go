package soak

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// file is one file of the generated model.
type file struct {
	rel    string
	size   int64
	shard  bool   // a safetensors weight file
	sha256 string // of the origin copy
}

// readerPlan is what the random-offset readers need: where the model is
// mounted and where the origin copy lies, to compare against.
type readerPlan struct {
	mountRoot, originRoot string
	files                 []file
	readers               int
	maxRead               int
	seed                  uint64
}

// runReaders starts plan.readers goroutines that pread random ranges of
// random files through the mount until ctx ends, comparing every byte with
// the origin. It returns when they have all stopped: a pread blocked in the
// mount returns within the daemon's --read-timeout, or when the caller kills
// the daemon.
func runReaders(ctx context.Context, plan readerPlan) LoadStats {
	var c collector
	var wg sync.WaitGroup
	for i := 0; i < plan.readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s LoadStats
			r := newReader(plan, rand.New(rand.NewPCG(plan.seed, uint64(i))))
			defer r.close()
			for ctx.Err() == nil {
				r.once(&s)
			}
			c.merge(&s)
		}()
	}
	wg.Wait()
	return c.result()
}

// reader is one random-offset reader: it keeps its files open, as a loader
// does, and reuses its buffers.
type reader struct {
	plan      readerPlan
	rng       *rand.Rand
	mounted   map[string]*os.File
	origin    map[string]*os.File
	shards    []file
	got, want []byte
}

func newReader(plan readerPlan, rng *rand.Rand) *reader {
	r := &reader{plan: plan, rng: rng, mounted: map[string]*os.File{}, origin: map[string]*os.File{},
		got: make([]byte, plan.maxRead), want: make([]byte, plan.maxRead)}
	for _, f := range plan.files {
		if f.shard {
			r.shards = append(r.shards, f)
		}
	}
	return r
}

func (r *reader) close() {
	for _, m := range []map[string]*os.File{r.mounted, r.origin} {
		for _, f := range m {
			f.Close()
		}
	}
}

// pick chooses a file: a weight file nine times in ten (where the bytes and
// the faults are), else any file (configs, tokenizer, index).
func (r *reader) pick() file {
	fs := r.plan.files
	if r.rng.IntN(10) > 0 && len(r.shards) > 0 {
		fs = r.shards
	}
	return fs[r.rng.IntN(len(fs))]
}

// readLen is log-uniform in [1, max]: as many 100-byte header peeks as
// megabyte tensor reads, like a mix of loaders.
func readLen(rng *rand.Rand, maxLen int) int {
	return min(maxLen, int(math.Exp(rng.Float64()*math.Log(float64(maxLen))))+1)
}

func (r *reader) open(rel string) (mounted, origin *os.File, err error) {
	if f, ok := r.mounted[rel]; ok {
		return f, r.origin[rel], nil
	}
	o, err := os.Open(filepath.Join(r.plan.originRoot, rel))
	if err != nil {
		return nil, nil, fmt.Errorf("origin copy: %w", err)
	}
	m, err := os.Open(filepath.Join(r.plan.mountRoot, rel))
	if err != nil {
		o.Close()
		return nil, nil, err
	}
	r.mounted[rel], r.origin[rel] = m, o
	return m, o, nil
}

// once does one pread and records it in s.
func (r *reader) once(s *LoadStats) {
	f := r.pick()
	if f.size == 0 {
		return
	}
	n := min(int64(readLen(r.rng, r.plan.maxRead)), f.size)
	off := r.rng.Int64N(f.size - n + 1)
	m, o, err := r.open(f.rel)
	if err != nil {
		s.Other++
		s.LastError = fmt.Sprintf("open %s: %v", f.rel, err)
		time.Sleep(10 * time.Millisecond) // a dead mount must not spin
		return
	}
	got, want := r.got[:n], r.want[:n]
	t0 := time.Now()
	k, err := m.ReadAt(got, off)
	lat := time.Since(t0)
	s.Ops++
	s.LatNs = append(s.LatNs, int64(lat))
	if err != nil || k != int(n) {
		if errors.Is(err, syscall.EIO) {
			s.EIO++
		} else {
			s.Other++
			s.LastError = fmt.Sprintf("pread %s [%d, +%d): got %d bytes: %v", f.rel, off, n, k, err)
		}
		// A file that fails at once (EIO in 0.03 s, forever) must not turn
		// 48 readers into a busy loop that starves the daemon of the cores.
		time.Sleep(10 * time.Millisecond)
		return
	}
	if _, err := o.ReadAt(want, off); err != nil {
		s.Other++
		s.LastError = fmt.Sprintf("origin copy %s: %v", f.rel, err)
		return
	}
	s.Bytes += n
	if d := diffBytes(got, want); d > 0 {
		s.WrongOps++
		s.WrongBytes += d
		s.noteWrong(f.rel)
	}
}
