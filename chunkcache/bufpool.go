package chunkcache

import "sync"

// bufPool recycles chunk-sized buffers. A cold load moves the whole model
// through them; allocating each afresh costs a memclr of 8 MiB per chunk
// and leaves garbage that the GC, under the daemon's memory limit, spends
// CPU reclaiming. Buffers that a reader or the memory tier may still hold
// are never returned here (see Object.fetch).
type bufPool struct {
	size int
	p    sync.Pool
}

func newBufPool(size int64) *bufPool {
	return &bufPool{size: int(size)}
}

// get returns a buffer of n bytes with undefined content. Only chunk-sized
// requests come from the pool: a small file's buffer may be kept by the
// memory tier, which charges for capacity.
func (b *bufPool) get(n int64) []byte {
	if int(n) > b.size || int(n) < b.size/2 {
		return make([]byte, n)
	}
	if p, ok := b.p.Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, b.size)
}

// put hands back a buffer nobody references any more.
func (b *bufPool) put(buf []byte) {
	if cap(buf) != b.size {
		return
	}
	buf = buf[:cap(buf)]
	b.p.Put(&buf)
}
