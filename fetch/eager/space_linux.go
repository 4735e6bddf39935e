package eager

import (
	"errors"
	"os"
	"syscall"

	"github.com/weightfs/weightfs/internal/diskspace"
)

// preallocate reserves size bytes for f without writing them, so that a full
// disk fails now, with a clear message, instead of after gigabytes. Where the
// filesystem cannot (EOPNOTSUPP), the file is only made sparse to size.
// Existing bytes are kept: a resumed part file loses nothing.
func preallocate(f *os.File, size int64) error {
	if size > 0 {
		err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
		if err != nil && !errors.Is(err, syscall.EOPNOTSUPP) && !errors.Is(err, syscall.ENOSYS) {
			return err
		}
	}
	return f.Truncate(size)
}

// freeSpace is the space an unprivileged writer may still use on the
// filesystem holding dir, and an id of that filesystem.
func freeSpace(dir string) (avail int64, dev uint64, ok bool) { return diskspace.Free(dir) }
