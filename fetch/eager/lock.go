package eager

import (
	"fmt"
	"path/filepath"
	"sort"
)

// LockFile is the file, in a root's LedgerDir, that a running fetch holds
// an exclusive lock on (and writes its PID to). Two fetches into one root
// would assemble the same .part files and rename them under each other;
// the second is refused instead, at once, so the user sees who holds it
// rather than a fetch that hangs. The file is left in place when the lock
// is released: removing it would let a third fetch lock a new file while a
// second still holds the old one.
const LockFile = "lock"

// BusyError is returned by Run when another fetch holds a root's lock.
type BusyError struct {
	Root string // the destination that is busy
	Lock string // the lock file
	PID  int    // the holder's process id; 0 if it could not be read
}

func (e *BusyError) Error() string {
	who := "another weightfs fetch"
	if e.PID > 0 {
		who = fmt.Sprintf("another weightfs fetch (pid %d)", e.PID)
	}
	return fmt.Sprintf("%s is writing to %s; wait for it to end, or give this one another destination (lock: %s)", who, e.Root, e.Lock)
}

// lockRoots locks the root of every ledger among the targets, in a fixed
// order, and returns the function that releases them all.
func (d *Downloader) lockRoots() (func(), error) {
	roots := map[string]bool{}
	for _, t := range d.targets {
		if t.Ledger != nil {
			roots[filepath.Clean(t.Ledger.Root())] = true
		}
	}
	sorted := make([]string, 0, len(roots))
	for r := range roots {
		sorted = append(sorted, r)
	}
	sort.Strings(sorted)
	var held []func()
	release := func() {
		for _, r := range held {
			r()
		}
	}
	for _, r := range sorted {
		unlock, err := lockRoot(r)
		if err != nil {
			release()
			return nil, err
		}
		held = append(held, unlock)
	}
	return release, nil
}
