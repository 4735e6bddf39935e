// Package sharedtest is an in-memory shared store for tests and the fleet
// simulation: latency, bandwidth and failures on demand, and counts of
// every request.
package sharedtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weightfs/weightfs/chunkcache/shared"
)

// Mem is a shared.Blobs in memory.
type Mem struct {
	// Latency is added to every request; BytesPerSec, if set, paces the
	// bytes of Open and Put. Set them before use.
	Latency     time.Duration
	BytesPerSec int64
	// Weak makes ExclusiveCreate false, and lets racing ifAbsent Puts of
	// one name all succeed (the last one's bytes win), as two SeaweedFS
	// mounts do.
	Weak bool
	// Fail, if set, is asked before each request ("open", "put", "delete",
	// "list", "free") and its error returned instead.
	Fail func(op, name string) error
	// FreeBytes is what Free reports; 0 means -1 (unknown).
	FreeBytes int64

	Requests atomic.Int64 // every request
	Gets     atomic.Int64 // Opens that found the object
	Puts     atomic.Int64

	mu   sync.Mutex
	objs map[string]memObj // GUARDED_BY(mu)
}

type memObj struct {
	data []byte
	mod  time.Time
}

var _ shared.Blobs = (*Mem)(nil)

// NewMem returns an empty store.
func NewMem() *Mem { return &Mem{objs: map[string]memObj{}} }

func (m *Mem) String() string        { return "mem://test" }
func (m *Mem) ExclusiveCreate() bool { return !m.Weak }

func (m *Mem) begin(ctx context.Context, op, name string, n int) error {
	m.Requests.Add(1)
	if m.Fail != nil {
		if err := m.Fail(op, name); err != nil {
			return err
		}
	}
	d := m.Latency
	if m.BytesPerSec > 0 && n > 0 {
		d += time.Duration(int64(n) * int64(time.Second) / m.BytesPerSec)
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Mem) Open(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	m.mu.Lock()
	o, ok := m.objs[name]
	m.mu.Unlock()
	if err := m.begin(ctx, "open", name, len(o.data)); err != nil {
		return nil, 0, err
	}
	if !ok {
		return nil, 0, fmt.Errorf("%s: %w", name, shared.ErrNotFound)
	}
	m.Gets.Add(1)
	return io.NopCloser(bytes.NewReader(o.data)), int64(len(o.data)), nil
}

func (m *Mem) Put(ctx context.Context, name string, data [][]byte, ifAbsent bool) error {
	b := bytes.Join(data, nil)
	if err := m.begin(ctx, "put", name, len(b)); err != nil {
		return err
	}
	m.Puts.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objs[name]; ok && ifAbsent && !m.Weak {
		return fmt.Errorf("%s: %w", name, shared.ErrExists)
	}
	m.objs[name] = memObj{data: b, mod: time.Now()}
	return nil
}

func (m *Mem) Delete(ctx context.Context, name string) error {
	if err := m.begin(ctx, "delete", name, 0); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.objs, name)
	m.mu.Unlock()
	return nil
}

func (m *Mem) List(ctx context.Context, prefix string, fn func(shared.BlobInfo) error) error {
	if err := m.begin(ctx, "list", prefix, 0); err != nil {
		return err
	}
	m.mu.Lock()
	var infos []shared.BlobInfo
	for n, o := range m.objs {
		if strings.HasPrefix(n, prefix) {
			infos = append(infos, shared.BlobInfo{Name: n, Size: int64(len(o.data)), ModTime: o.mod})
		}
	}
	m.mu.Unlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	for _, bi := range infos {
		if err := fn(bi); err != nil {
			return err
		}
	}
	return nil
}

func (m *Mem) Free(ctx context.Context) (int64, error) {
	if err := m.begin(ctx, "free", "", 0); err != nil {
		return -1, err
	}
	if m.FreeBytes == 0 {
		return -1, nil
	}
	return m.FreeBytes, nil
}

// Names lists the objects under prefix.
func (m *Mem) Names(prefix string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for n := range m.objs {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Mutate changes the stored bytes of name in place (a flipped byte).
func (m *Mem) Mutate(name string, fn func([]byte)) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[name]
	if ok {
		fn(o.data)
	}
	return ok
}

// SetModTime ages an object, for GC tests.
func (m *Mem) SetModTime(name string, t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o, ok := m.objs[name]; ok {
		o.mod = t
		m.objs[name] = o
	}
}
