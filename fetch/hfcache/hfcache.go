// Package hfcache owns the on-disk layout of the Hugging Face hub cache, so
// that files fetched eagerly by weightfs are found by `from_pretrained` with
// HF_HUB_OFFLINE=1:
//
//	$HF_HUB_CACHE/models--{org}--{name}/
//	  blobs/{etag}                        the bytes (etag: sha256 for LFS files, git blob sha1 otherwise)
//	  snapshots/{commit}/{path}           relative symlinks to ../../blobs/{etag} (one more ../ per folder)
//	  refs/{revision}                     the commit, for a branch, tag or refs/pr/N revision
//
// It computes paths and writes links and refs; it never fetches bytes and
// never talks to the network.
package hfcache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/weightfs/weightfs/fetch"
)

// Dir is the hub cache the Python client uses, from the same variables in
// the same order: HF_HUB_CACHE, then the older HUGGINGFACE_HUB_CACHE, then
// $HF_HOME/hub, then $XDG_CACHE_HOME/huggingface/hub, then
// ~/.cache/huggingface/hub.
func Dir(getenv func(string) string) (string, error) {
	for _, k := range []string{"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"} {
		if v := getenv(k); v != "" {
			return expandHome(v, getenv)
		}
	}
	if v := getenv("HF_HOME"); v != "" {
		home, err := expandHome(v, getenv)
		return filepath.Join(home, "hub"), err
	}
	if v := getenv("XDG_CACHE_HOME"); v != "" {
		xdg, err := expandHome(v, getenv)
		return filepath.Join(xdg, "huggingface", "hub"), err
	}
	home, err := homeDir(getenv)
	if err != nil {
		return "", fmt.Errorf("cannot place the Hugging Face cache: %w (set HF_HUB_CACHE or HF_HOME)", err)
	}
	return filepath.Join(home, ".cache", "huggingface", "hub"), nil
}

func homeDir(getenv func(string) string) (string, error) {
	if h := getenv("HOME"); h != "" {
		return h, nil
	}
	return os.UserHomeDir()
}

// expandHome expands a leading "~/" as the Python client does.
func expandHome(p string, getenv func(string) string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	h, err := homeDir(getenv)
	if err != nil {
		return "", err
	}
	return filepath.Join(h, strings.TrimPrefix(p, "~")), nil
}

// Repo is one model repo in a hub cache.
type Repo struct {
	Cache string // the hub cache dir (Dir)
	ID    string // "org/name"
}

// Folder is the repo's folder name: "models--org--name".
func Folder(repoID string) string {
	return "models--" + strings.ReplaceAll(repoID, "/", "--")
}

// Dir is the repo's folder in the cache.
func (r Repo) Dir() string { return filepath.Join(r.Cache, Folder(r.ID)) }

// BlobPath is where the bytes with this etag live.
func (r Repo) BlobPath(etag string) string { return filepath.Join(r.Dir(), "blobs", etag) }

// SnapshotPath is where file (repo-relative, '/'-separated) appears at commit.
func (r Repo) SnapshotPath(commit, file string) string {
	return filepath.Join(r.Dir(), "snapshots", commit, filepath.FromSlash(file))
}

// RefPath is the file that names the commit of revision. As in the Python
// client it is refs/ + the revision as written, so "refs/pr/1" is stored at
// refs/refs/pr/1 and read back by from_pretrained(revision="refs/pr/1").
func (r Repo) RefPath(revision string) string {
	return filepath.Join(r.Dir(), "refs", filepath.FromSlash(revision))
}

// LinkTarget is the relative symlink target from snapshots/{commit}/{file}
// to blobs/{etag}: one "../" for each folder of file, then "../../" out of
// snapshots/{commit}.
func LinkTarget(file, etag string) string {
	depth := strings.Count(path.Clean(file), "/")
	return strings.Repeat("../", depth+2) + "blobs/" + etag
}

// Etag is the blob name the Hub gives f: the sha256 of an LFS file's content
// (X-Linked-Etag), the git blob sha1 of any other file (ETag). Both are the
// checksum weightfs verifies. A file whose origin gave no checksum (rare: a
// malformed listing) gets a stable name derived from its commit and path,
// marked as such, since no real etag is known.
func Etag(f fetch.File) string {
	switch f.Checksum.Algo {
	case fetch.AlgoSHA256, fetch.AlgoGitSHA1:
		if f.Checksum.Value != "" {
			return f.Checksum.Value
		}
	}
	s := sha256.Sum256([]byte(f.Version + "\x00" + f.Path + "\x00" + f.Checksum.String()))
	return "weightfs-unverified-" + hex.EncodeToString(s[:20])
}

// Link points snapshots/{commit}/{file} at blobs/{etag}, replacing whatever
// was there (an older link, or a copy) atomically.
func (r Repo) Link(commit, file, etag string) error {
	if !fs.ValidPath(file) || !validSegment(commit) {
		return fmt.Errorf("refusing to link %q at commit %q: not a clean relative path", file, commit)
	}
	dst := r.SnapshotPath(commit, file)
	target := LinkTarget(file, etag)
	if cur, err := os.Readlink(dst); err == nil && cur == target {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".weightfs-link"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("linking %s: %w", dst, err)
	}
	return nil
}

// WriteRef records that revision is commit; nothing is written when the
// revision is the commit itself (as in the Python client).
func (r Repo) WriteRef(revision, commit string) error {
	if revision == "" || revision == commit {
		return nil
	}
	if !fs.ValidPath(revision) || !validSegment(commit) {
		return fmt.Errorf("refusing to write ref %q: not a clean relative path", revision)
	}
	p := r.RefPath(revision)
	if b, err := os.ReadFile(p); err == nil && string(b) == commit {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".weightfs-tmp"
	if err := os.WriteFile(tmp, []byte(commit), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return errors.Join(fmt.Errorf("writing ref %s", p), err)
	}
	return nil
}

func validSegment(s string) bool { return s != "" && fs.ValidPath(s) && !strings.Contains(s, "/") }
