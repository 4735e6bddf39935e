// Package atomicfile replaces small files whole: a reader sees the old
// content or the new, never a mix, and a crash leaves one of the two. It is
// for records (manifests, ledgers, progress sidecars), not for bulk data.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with b durably: b goes to a temporary file in the
// same folder (so the rename cannot cross filesystems), which is fsynced,
// given perm, renamed over path, and the folder fsynced, so that after a
// power loss path holds b or what it held before, and not an empty file
// (ext4 and xfs may reorder a rename before the data it names). The folder
// must exist. Each call uses its own temporary name: concurrent writers of
// one path never write into each other's file, and the last rename wins.
func Write(path string, b []byte, perm fs.FileMode) error { return write(path, b, perm, true) }

// WriteNoSync is Write without the fsyncs: for records that are rewritten
// often and whose loss in a power cut costs only repeated work (a progress
// sidecar: the checksum catches what it claims but the disk lost). After a
// crash of the process alone, the kernel still has the data.
func WriteNoSync(path string, b []byte, perm fs.FileMode) error { return write(path, b, perm, false) }

func write(path string, b []byte, perm fs.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if _, err := tmp.Write(b); err != nil {
		return err
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			return err
		}
	}
	// CreateTemp makes 0600; the umask does not apply to Chmod, so perm is
	// exact.
	if perm != 0o600 {
		if err := tmp.Chmod(perm); err != nil {
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	ok = true
	if durable {
		return syncDir(dir)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
