package store

import (
	"golang.org/x/sys/unix"
)

// Why a verified cache file's pages are dropped: a byte read through the
// mount sits in the kernel's page cache of the FUSE file (FOPEN_KEEP_CACHE),
// and a buffered write put a second copy in the page cache of the cache
// file, so a cold load filled twice the model's size of memory (12 GiB for
// a 6 GiB model on the bench VM). Once a file is verified its readers have
// a copy of their own: those that read through the daemon in the FUSE
// file's pages (they are not touched here), those that open it from now on
// in the cache file itself, handed to the kernel by passthrough and read
// back from the disk on demand. The cache file's pages only help a reader
// still reading through the daemon bytes it has not read yet, which then
// come from the disk: a prefetch running ahead of a loader whose file is
// verified before the loader gets there. Unlike O_DIRECT writes, the write
// itself stays buffered, so a slow disk never sits between a fetch and the
// next one, and a reader of a present, unverified chunk is served from
// memory.
//
// Dirty pages cannot be dropped, so each piece of the file is written back
// first (sync_file_range, waiting), then dropped (POSIX_FADV_DONTNEED,
// which skips pages someone has mapped), on a goroutine of its own that
// ends when the file is done; Close waits for it.

// dropStep is how much is written back and dropped at a time: memory comes
// back as the disk goes, not after a whole shard.
const dropStep = 64 << 20

// dropWhenWritten drops the file's page cache once written back, in the
// background. Where writes bypass the page cache there is nothing to drop.
func (f *File) dropWhenWritten() {
	if f.direct != nil && !f.direct.off.Load() {
		return
	}
	f.dropping.Add(1)
	go func() {
		defer f.dropping.Done()
		fd := int(f.data.Fd())
		for off := int64(0); off < f.size; off += dropStep {
			n := min(dropStep, f.size-off)
			// Errors only mean the pages stay: the kernel's to reclaim.
			unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
			unix.Fadvise(fd, off, n, unix.FADV_DONTNEED)
		}
	}()
}
