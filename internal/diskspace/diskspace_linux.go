// Package diskspace says how much room a filesystem has left, for the
// commands that check a model fits before they fetch it (`weightfs fetch`
// into --dest, `weightfs mount` into --cache-dir).
package diskspace

import "syscall"

// Free is the space an unprivileged writer may still use on the filesystem
// holding dir, and an id of that filesystem (so callers can add up the
// needs of several paths on one disk). ok is false where it is unknown.
func Free(dir string) (avail int64, dev uint64, ok bool) {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return 0, 0, false
	}
	var s syscall.Stat_t
	if syscall.Stat(dir, &s) != nil {
		return 0, 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), uint64(s.Dev), true
}
