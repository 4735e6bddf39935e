//go:build !linux

package eager

import (
	"os"

	"github.com/weightfs/weightfs/internal/diskspace"
)

func preallocate(f *os.File, size int64) error { return f.Truncate(size) }

func freeSpace(dir string) (int64, uint64, bool) { return diskspace.Free(dir) }
