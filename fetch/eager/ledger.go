package eager

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/atomicfile"
)

// LedgerDir is the folder, under a destination root, that holds weightfs's
// own records; LedgerFile is the record of verified files inside it.
const (
	LedgerDir  = ".weightfs"
	LedgerFile = "verified.json"
)

// Ledger records the files under one root that were verified against their
// checksum, with the size and mtime they had then, so that a re-run skips
// them without hashing again. A file whose size or mtime changed since is
// hashed again (someone touched it). The ledger is a cache of facts, never a
// source of truth: losing it costs one hash per file, nothing more.
type Ledger struct {
	root string
	path string

	mu      sync.Mutex
	entries map[string]ledgerEntry // GUARDED_BY(mu); by path relative to root, '/'-separated
	dirty   bool                   // GUARDED_BY(mu)
	saving  bool                   // GUARDED_BY(mu)
	saveErr error                  // GUARDED_BY(mu); the last failed save
}

type ledgerEntry struct {
	Size     int64  `json:"size"`
	MtimeNS  int64  `json:"mtime_ns"`
	Checksum string `json:"checksum"` // fetch.Checksum.String()
}

type ledgerFile struct {
	Version int                    `json:"version"`
	Files   map[string]ledgerEntry `json:"files"`
}

// OpenLedger reads root/.weightfs/verified.json; a missing or unreadable
// ledger is an empty one (everything present is hashed once more).
func OpenLedger(root string) *Ledger {
	l := &Ledger{root: root, path: filepath.Join(root, LedgerDir, LedgerFile), entries: map[string]ledgerEntry{}}
	b, err := os.ReadFile(l.path)
	if err != nil {
		return l
	}
	var lf ledgerFile
	if json.Unmarshal(b, &lf) == nil && lf.Version == 1 && lf.Files != nil {
		l.entries = lf.Files
	}
	return l
}

// Root is the folder the ledger describes.
func (l *Ledger) Root() string { return l.root }

func (l *Ledger) key(path string) (string, bool) {
	rel, err := filepath.Rel(l.root, path)
	if err != nil || !filepath.IsLocal(rel) {
		return "", false
	}
	return filepath.ToSlash(rel), true
}

// Verified reports whether path was recorded as verified with sum and still
// has the size and mtime it had then.
func (l *Ledger) Verified(path string, info fs.FileInfo, sum fetch.Checksum) bool {
	k, ok := l.key(path)
	if !ok {
		return false
	}
	l.mu.Lock()
	e, ok := l.entries[k]
	l.mu.Unlock()
	return ok && e.Size == info.Size() && e.MtimeNS == info.ModTime().UnixNano() && e.Checksum == sum.String()
}

// Add records path as verified with sum, as it is now on disk, and saves
// the ledger (coalescing concurrent saves).
func (l *Ledger) Add(path string, sum fetch.Checksum) error {
	k, ok := l.key(path)
	if !ok {
		return fmt.Errorf("%s is outside %s", path, l.root)
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.entries[k] = ledgerEntry{Size: info.Size(), MtimeNS: info.ModTime().UnixNano(), Checksum: sum.String()}
	l.mu.Unlock()
	return l.save()
}

// Forget drops path (it was found wrong or is being replaced).
func (l *Ledger) Forget(path string) {
	k, ok := l.key(path)
	if !ok {
		return
	}
	l.mu.Lock()
	_, had := l.entries[k]
	delete(l.entries, k)
	l.mu.Unlock()
	if had {
		l.save()
	}
}

// save writes the ledger atomically. Concurrent callers coalesce: while one
// writes, the others only mark it dirty and the writer goes round again.
func (l *Ledger) save() error {
	l.mu.Lock()
	l.dirty = true
	if l.saving {
		l.mu.Unlock()
		return nil
	}
	l.saving = true
	var err error
	for l.dirty {
		l.dirty = false
		b, merr := json.MarshalIndent(ledgerFile{Version: 1, Files: l.entries}, "", " ")
		l.mu.Unlock()
		if merr != nil {
			err = merr
		} else {
			// Durable: a ledger a power loss emptied would cost a hash of
			// every file on the next run. It is written once per file.
			err = saveRecord(l.path, b, true)
		}
		l.mu.Lock()
	}
	l.saving = false
	l.saveErr = err
	l.mu.Unlock()
	return err
}

// saveRecord replaces path (a record under a destination) with b, in
// place atomically; durable makes it survive a power loss too (see
// atomicfile.Write). Records are 0644 like the files they describe.
func saveRecord(path string, b []byte, durable bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if durable {
		return atomicfile.Write(path, b, 0o644)
	}
	return atomicfile.WriteNoSync(path, b, 0o644)
}

// removeIfExists removes path, ignoring "does not exist".
func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
