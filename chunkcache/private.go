package chunkcache

import (
	"fmt"
	"os"
	"path/filepath"
)

// The cache holds weights of gated and private repos, which are no one
// else's to read: every directory it makes is 0700 and every file 0600,
// whatever the umask. Files and directories left by an older version with
// wider modes are narrowed when they are opened.
const (
	privateDir  os.FileMode = 0o700
	privateFile os.FileMode = 0o600
)

// openPrivate opens (creating if asked) a cache file readable by its owner
// only.
func openPrivate(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag, privateFile)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&^privateFile != 0 {
		if err := f.Chmod(privateFile); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// makePrivateDirs creates the cache's own directories 0700. The top
// directory is narrowed too when it holds nothing but the cache (it was
// made for it, even if not by weightfs), and left as it is otherwise:
// --cache-dir may point at a directory shared with other things, and the
// directories below it are the cache's and are narrowed either way.
func makePrivateDirs(dir string) error {
	if err := os.MkdirAll(dir, privateDir); err != nil {
		return fmt.Errorf("cache dir %s: %w (choose a writable --cache-dir)", dir, err)
	}
	if onlyCache(dir) {
		if err := os.Chmod(dir, privateDir); err != nil {
			return fmt.Errorf("cache dir %s: making it private: %w", dir, err)
		}
	}
	for _, sub := range []string{"objects", "manifests"} {
		d := filepath.Join(dir, sub)
		if err := os.MkdirAll(d, privateDir); err != nil {
			return fmt.Errorf("cache dir %s: %w (choose a writable --cache-dir)", dir, err)
		}
		if err := os.Chmod(d, privateDir); err != nil {
			return fmt.Errorf("cache dir %s: making %s private: %w", dir, d, err)
		}
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
