package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// The cache holds weights of gated and private repos, which are no one
// else's to read: every directory it makes is 0700 and every file 0600,
// whatever the umask. Files and directories left by an older version with
// wider modes are narrowed when they are opened.
const (
	PrivateDir  os.FileMode = 0o700
	PrivateFile os.FileMode = 0o600
)

// OpenPrivate opens (creating if asked) a cache file readable by its owner
// only.
func OpenPrivate(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag, PrivateFile)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&^PrivateFile != 0 {
		if err := f.Chmod(PrivateFile); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// MakePrivateDirs creates the cache's own directory sub ("objects" or
// "manifests") under dir, 0700. The top directory is narrowed too when it
// holds nothing but the cache (it was made for it, even if not by
// weightfs), and left as it is otherwise: --cache-dir may point at a
// directory shared with other things, and the directories below it are the
// cache's and are narrowed either way.
func MakePrivateDirs(dir, sub string) error {
	if err := os.MkdirAll(dir, PrivateDir); err != nil {
		return fmt.Errorf("cache dir %s: %w (choose a writable --cache-dir)", dir, err)
	}
	if onlyCache(dir) {
		if err := os.Chmod(dir, PrivateDir); err != nil {
			return fmt.Errorf("cache dir %s: making it private: %w", dir, err)
		}
	}
	d := filepath.Join(dir, sub)
	if err := os.MkdirAll(d, PrivateDir); err != nil {
		return fmt.Errorf("cache dir %s: %w (choose a writable --cache-dir)", dir, err)
	}
	if err := os.Chmod(d, PrivateDir); err != nil {
		return fmt.Errorf("cache dir %s: making %s private: %w", dir, d, err)
	}
	return nil
}

// onlyCache reports whether dir holds nothing but what the cache puts there.
func onlyCache(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if n := e.Name(); n != "objects" && n != "manifests" {
			return false
		}
	}
	return true
}

// DiskError names the cache dir and what to do, especially when it is full.
func DiskError(dir string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("cache dir %s is full: free space there or point --cache-dir at a bigger disk (%w)", dir, err)
	}
	return fmt.Errorf("cache dir %s: %w", dir, err)
}
