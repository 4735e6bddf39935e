// Package bufpool recycles byte buffers of one size, for the chunk cache's
// fetches (the scheduler) and its O_DIRECT reads (the store).
package bufpool

// Pool recycles buffers of one size. A cold load moves the whole model
// through them; allocating each afresh costs a memclr of 8 MiB per chunk,
// fresh pages from the kernel, and garbage the GC, under the daemon's memory
// limit, spends CPU reclaiming. Buffers that a reader or the memory tier may
// still hold are never returned here (see chunkcache's Object.fetch).
//
// It keeps as many idle buffers as fetches are usually in flight, no more
// (not a sync.Pool, which drops them at every collection and so turns each
// burst into garbage): memory stays flat at what the fetches in flight need,
// and the GC has almost nothing to do.
type Pool struct {
	size    int
	anySize bool // serve requests of any size up to size from the pool
	free    chan []byte
}

// New returns a pool of buffers of size bytes keeping up to idle of them.
func New(size int64, idle int, anySize bool) *Pool {
	return &Pool{size: int(size), anySize: anySize, free: make(chan []byte, idle)}
}

// Size is the capacity of the pool's buffers.
func (b *Pool) Size() int { return b.size }

// Get returns a buffer of n bytes with undefined content. Unless anySize,
// only near-full-size requests come from the pool: a small file's chunk
// buffer may be kept by the memory tier, which charges for capacity.
func (b *Pool) Get(n int64) []byte {
	if int(n) > b.size || (!b.anySize && int(n) < b.size/2) {
		return make([]byte, n)
	}
	select {
	case buf := <-b.free:
		return buf[:n]
	default:
		return make([]byte, n, b.size)
	}
}

// Put hands back a buffer nobody references any more.
func (b *Pool) Put(buf []byte) {
	if cap(buf) != b.size {
		return
	}
	select {
	case b.free <- buf[:cap(buf)]:
	default: // enough idle ones: let the GC have it
	}
}
