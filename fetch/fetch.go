// Package fetch owns talking to origins: it turns a model_cache entry into a
// Manifest (what files exist, how big, how to verify them) and serves byte
// ranges of those files. It knows nothing about FUSE or about the local cache;
// the arrows point from fs and chunkcache to fetch, never back.
package fetch

import (
	"context"
	"strings"
	"time"
)

// Checksum algorithms a File may carry. The chunk cache verifies a file once
// all of its bytes are present, with whichever algorithm the origin gave.
const (
	AlgoSHA256  = "sha256"   // Hub LFS oid; S3 x-amz-checksum-sha256 (hex)
	AlgoGitSHA1 = "git-sha1" // Hub non-LFS files: sha1("blob <size>\x00" + content)
	AlgoMD5     = "md5"      // S3 single-part ETag, GCS md5Hash (hex)
	AlgoCRC32C  = "crc32c"   // GCS crc32c (hex of the big-endian 4 bytes)
)

// Checksum is a whole-file digest, hex encoded. The zero value means the
// origin offered none, and the file is served unverified.
type Checksum struct {
	Algo  string `json:"algo,omitempty"`
	Value string `json:"value,omitempty"`
}

// IsZero reports whether no checksum is known.
func (c Checksum) IsZero() bool { return c.Algo == "" || c.Value == "" }

func (c Checksum) String() string {
	if c.IsZero() {
		return "none"
	}
	return c.Algo + ":" + c.Value
}

// File is one file of a repo at a pinned revision.
type File struct {
	// Path is relative to the volume folder, '/'-separated, never starting
	// with '/' and never containing "." or ".." segments.
	Path string `json:"path"`
	Size int64  `json:"size"`
	// Checksum verifies the complete content (may be zero).
	Checksum Checksum `json:"checksum"`
	// Version pins the object at the origin, so a byte range fetched later
	// cannot come from a newer object: the commit for Hub files, the ETag for
	// S3 (sent as If-Match), the generation for GCS.
	Version string `json:"version,omitempty"`
	// Extra holds source-specific facts a RangeReader needs (for example the
	// Hub's LFS flag), so readers need not list again after a restart.
	Extra map[string]string `json:"extra,omitempty"`
}

// Manifest is the resolved, filtered listing of one model_cache entry. It is
// persisted in the cache dir so a restart mounts without any network call.
type Manifest struct {
	Volume   string    `json:"volume"`   // volume_folder ("" for use_volume: false)
	Kind     string    `json:"kind"`     // hf | s3 | gcs
	RepoID   string    `json:"repo_id"`  // as written in the config
	Revision string    `json:"revision"` // as written in the config
	Commit   string    `json:"commit"`   // what is served (Hub commit; "" elsewhere)
	Resolved time.Time `json:"resolved"` // when the listing was taken; used as mtime
	Files    []File    `json:"files"`
}

// TotalSize is the sum of all file sizes, saturating at math.MaxInt64 (a
// hostile listing's sizes must not wrap the total negative).
func (m *Manifest) TotalSize() int64 {
	var n int64
	for _, f := range m.Files {
		n = AddSizes(n, max(f.Size, 0))
	}
	return n
}

// Lister resolves an entry into its manifest. It is called once per entry
// at mount (or never, when a persisted manifest exists).
type Lister interface {
	List(ctx context.Context) (*Manifest, error)
}

// RangeReader fills p with the bytes [off, off+len(p)) of f. It returns an
// error unless p was filled completely; it must honour ctx's deadline and must
// not retry on its own (Retry wraps that policy around it).
type RangeReader interface {
	ReadRange(ctx context.Context, f File, off int64, p []byte) error
}

// Source is one configured origin: it lists and it reads.
type Source interface {
	Lister
	RangeReader
}

// SecretHolder is a Source that can name the credential values it may send
// (a token, a secret key, a private key), so that the daemon can redact
// them from whatever it shows, without knowing each origin's kind of
// credential. Every Source of this module is one.
type SecretHolder interface {
	Secrets() []string
}

// ValidPath reports whether a listed name (relative to the volume) can be
// a file path: no leading '/', no empty, "." or ".." segment, no NUL.
func ValidPath(p string) bool {
	if strings.ContainsRune(p, 0) {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
