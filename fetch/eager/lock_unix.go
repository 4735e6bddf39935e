//go:build unix

package eager

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockRoot takes root's lock without waiting: flock(2), which the kernel
// drops when the holder exits however it ends, so a killed fetch never
// leaves a stale lock behind.
func lockRoot(root string) (func(), error) {
	dir := filepath.Join(root, LedgerDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := os.ReadFile(path)
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			return nil, &BusyError{Root: root, Lock: path, PID: pid}
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	// Only the holder writes: the PID names it in the next one's refusal.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}
