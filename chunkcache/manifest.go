package chunkcache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/atomicfile"
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
	if err := atomicfile.Write(c.manifestPath(key), b, privateFile); err != nil {
		return diskError(c.opts.Dir, err)
	}
	return nil
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
