package chunkcache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/weightfs/weightfs/fetch"
)

// manifestFile is what is persisted: the manifest plus the config key it
// answers, so a hash collision or a hand-edited file is noticed.
type manifestFile struct {
	Key      string          `json:"key"`
	Manifest *fetch.Manifest `json:"manifest"`
}

func (c *Cache) manifestPath(key string) string {
	h := sha256.Sum256([]byte(key))
	return filepath.Join(c.opts.Dir, "manifests", hex.EncodeToString(h[:12])+".json")
}

// SaveManifest persists m under key (the canonical config entry), atomically:
// a reader sees the old file or the new one, never a torn one.
func (c *Cache) SaveManifest(key string, m *fetch.Manifest) error {
	b, err := json.MarshalIndent(manifestFile{Key: key, Manifest: m}, "", " ")
	if err != nil {
		return err
	}
	return writeFileAtomic(c.manifestPath(key), b)
}

// LoadManifest returns the manifest saved under key, or (nil, nil) if none.
func (c *Cache) LoadManifest(key string) (*fetch.Manifest, error) {
	p := c.manifestPath(key)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, diskError(c.opts.Dir, err)
	}
	var mf manifestFile
	if err := json.Unmarshal(b, &mf); err != nil || mf.Manifest == nil || mf.Key != key {
		// Unusable: behave as if absent, the caller lists again.
		return nil, nil
	}
	return mf.Manifest, nil
}

func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return diskError(dir, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return diskError(dir, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return diskError(dir, err)
	}
	if err := tmp.Close(); err != nil {
		return diskError(dir, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	return nil
}
