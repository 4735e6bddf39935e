package chunkcache

// bufPool recycles chunk-sized buffers. A cold load moves the whole model
// through them; allocating each afresh costs a memclr of 8 MiB per chunk,
// fresh pages from the kernel, and garbage the GC, under the daemon's memory
// limit, spends CPU reclaiming. Buffers that a reader or the memory tier may
// still hold are never returned here (see Object.fetch).
//
// It keeps at most a few idle buffers (not a sync.Pool, which keeps any
// number until the next collections), so idle memory stays small and RSS
// stays flat: buffers in use are bounded by the fetches in flight.
type bufPool struct {
	size int
	free chan []byte
}

// idleBuffers is how many unused buffers the pool keeps.
const idleBuffers = 4

func newBufPool(size int64) *bufPool {
	return &bufPool{size: int(size), free: make(chan []byte, idleBuffers)}
}

// get returns a buffer of n bytes with undefined content. Only chunk-sized
// requests come from the pool: a small file's buffer may be kept by the
// memory tier, which charges for capacity.
func (b *bufPool) get(n int64) []byte {
	if int(n) > b.size || int(n) < b.size/2 {
		return make([]byte, n)
	}
	select {
	case buf := <-b.free:
		return buf[:n]
	default:
		return make([]byte, n, b.size)
	}
}

// put hands back a buffer nobody references any more.
func (b *bufPool) put(buf []byte) {
	if cap(buf) != b.size {
		return
	}
	select {
	case b.free <- buf[:cap(buf)]:
	default: // enough idle ones: let the GC have it
	}
}
