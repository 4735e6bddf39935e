// Package manifests keeps the listings of configured entries under the
// cache dir, so a restart, `weightfs ls` and `weightfs fetch` need no
// network and start no fetch workers to read them.
package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"

	"github.com/weightfs/weightfs/chunkcache/store"
	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/atomicfile"
)

// Store is the manifests directory of one cache dir.
type Store struct{ dir string }

// Open prepares dir/manifests (0700, see store.MakePrivateDirs).
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("cache dir is not set: pass --cache-dir")
	}
	if err := store.MakePrivateDirs(dir, "manifests"); err != nil {
		return nil, err
	}
	return &Store{dir: dir}, nil
}

// manifestFile is what is persisted: the manifest plus the config key it
// answers, so a hash collision or a hand-edited file is noticed.
type manifestFile struct {
	Key      string          `json:"key"`
	Manifest *fetch.Manifest `json:"manifest"`
}

func (s *Store) path(key string) string {
	h := sha256.Sum256([]byte(key))
	return filepath.Join(s.dir, "manifests", hex.EncodeToString(h[:12])+".json")
}

// Save persists m under key (the canonical config entry), atomically: a
// reader sees the old file or the new one, never a torn one.
func (s *Store) Save(key string, m *fetch.Manifest) error {
	b, err := json.MarshalIndent(manifestFile{Key: key, Manifest: m}, "", " ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.path(key), b, store.PrivateFile); err != nil {
		return store.DiskError(s.dir, err)
	}
	return nil
}

// Load returns the manifest saved under key, or (nil, nil) if none.
func (s *Store) Load(key string) (*fetch.Manifest, error) {
	b, err := os.ReadFile(s.path(key))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, store.DiskError(s.dir, err)
	}
	var mf manifestFile
	if err := json.Unmarshal(b, &mf); err != nil || mf.Manifest == nil || mf.Key != key {
		// Unusable: behave as if absent, the caller lists again.
		return nil, nil
	}
	return mf.Manifest, nil
}
