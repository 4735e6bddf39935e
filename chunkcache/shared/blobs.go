// Package shared is the regional chunk store that a fleet of weightfs
// nodes shares, between each node's local store and the origin: a directory
// on a distributed filesystem users already run, or a bucket in the region.
// A chunk one node fetched from the origin is written back there, and every
// other node reads it from there instead of from the origin, so a fleet that
// cold-starts one model pays for about one origin download.
//
// Layers: Blobs (blobs.go, dir.go; buckets in shared/bucket) is the store's
// one primitive, whole immutable objects by name; chunk.go frames a chunk
// with its own digest; lease.go is the cooperative fill's lease, made
// with create.go's exclusive create; tier.go
// (Tier.Fill) composes them for the fetch scheduler in chunkcache; gc.go
// removes what has been unused for long.
//
// Correctness never depends on a lease: chunks are content-addressed and
// carry a digest, so a duplicate write is harmless and a torn or flipped
// one is never served. Leases only keep nodes from fetching the same chunk
// from the origin twice.
package shared

import (
	"context"
	"errors"
	"io"
	"strconv"
	"time"
)

// Blobs is a flat namespace of immutable objects, each written whole: a
// reader sees all of an object or none of it. Names are slash-separated
// paths built by this package (never from an origin's input).
//
// Every method honours ctx's deadline, even where the store underneath
// cannot be interrupted (a hung NFS server): it then returns ctx's error
// and leaves the stuck call behind.
type Blobs interface {
	// Open starts reading name; size is its length. ErrNotFound if absent.
	Open(ctx context.Context, name string) (r io.ReadCloser, size int64, err error)
	// Put writes the concatenation of data as name. With ifAbsent it
	// fails with ErrExists when name exists (S3 If-None-Match: *, GCS
	// ifGenerationMatch=0; on POSIX O_EXCL for a lease, and a check
	// before the rename for a chunk, which racing writers write alike);
	// otherwise it replaces it.
	// ErrFull when the store has no room; ErrReadOnly when it refuses writes.
	Put(ctx context.Context, name string, data [][]byte, ifAbsent bool) error
	// Delete removes name; an absent name is not an error.
	Delete(ctx context.Context, name string) error
	// List calls fn for every object whose name starts with prefix.
	List(ctx context.Context, prefix string, fn func(BlobInfo) error) error
	// Free is the room left for writes in bytes, or -1 when the store does
	// not say (buckets).
	Free(ctx context.Context) (int64, error)
	// ExclusiveCreate says whether Put with ifAbsent has exactly one winner
	// among racing writers. Buckets with conditional writes do; a POSIX
	// directory on a distributed filesystem may not (on two SeaweedFS
	// mounts racing link(2)s both succeed), so a lease there is confirmed
	// by reading it back.
	ExclusiveCreate() bool
	// String names the store for messages, never with credentials.
	String() string
}

// BlobInfo describes one listed object.
type BlobInfo struct {
	Name    string
	Size    int64
	ModTime time.Time
	// Temp marks a write in progress (or abandoned by a crash) on a POSIX
	// store; GC removes those only once they are old.
	Temp bool
}

// Errors a Blobs reports, for errors.Is.
var (
	ErrNotFound = errors.New("not in the shared cache")
	ErrExists   = errors.New("already in the shared cache")
	ErrFull     = errors.New("shared cache is full")
	ErrReadOnly = errors.New("shared cache refuses writes")
)

// Names of the objects of one chunk, one object's access record and leases.
// A chunk name holds the chunk size, so nodes configured with different
// sizes never read each other's chunks as their own.
func chunkName(key string, chunkSize int64, idx int) string {
	return "chunks/" + key[:2] + "/" + key + "/" + itoa(chunkSize) + "/" + itoa(int64(idx))
}

func leaseName(key string, chunkSize int64, idx int) string {
	return "leases/" + key[:2] + "/" + key + "/" + itoa(chunkSize) + "/" + itoa(int64(idx))
}

func accessName(key string) string { return "access/" + key[:2] + "/" + key }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
