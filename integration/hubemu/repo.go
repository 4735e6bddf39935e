package hubemu

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// Repo describes one model repo to serve. Its content is the files under Dir
// (recursively, ".git" excluded); every revision serves that same content.
type Repo struct {
	ID       string            // "org/name"
	Dir      string            // directory whose files are the repo content
	Commit   string            // 40 hex; "" derives one from the ID and file list
	Branches map[string]string // branch/tag/"refs/pr/N" -> commit; default {"main": Commit}
	Gated    bool              // without the token: 401 GatedRepo (403 with a wrong token)
	Private  bool              // without the token: 401 RepoNotFound

	// GatedListingPublic (gated repos only) lets the revision and tree APIs
	// answer without the token, as the real Hub does; only resolve is gated.
	// Default false: every endpoint is gated.
	GatedListingPublic bool
}

// lfsExtensions are the extensions the Hub's default .gitattributes routes to
// LFS; anything at or above lfsMinSize goes there too.
var lfsExtensions = map[string]bool{
	".safetensors": true, ".bin": true, ".pt": true, ".pth": true, ".onnx": true,
	".h5": true, ".msgpack": true, ".gguf": true, ".ckpt": true,
}

const lfsMinSize = 10 << 20

// IsLFS reports whether the emulator stores a file of this name and size in
// LFS (served through a 302 to the CDN).
func IsLFS(name string, size int64) bool {
	return lfsExtensions[strings.ToLower(path.Ext(name))] || size >= lfsMinSize
}

// file is one hashed file of a repo.
type file struct {
	path     string // '/'-separated, relative to the repo root
	diskPath string
	size     int64
	lfs      bool
	sha256   string // hex; LFS files only
	blobID   string // git blob sha1 of what git stores: content, or the LFS pointer
	ptrSize  int64  // LFS pointer file size
	mtime    int64  // unix ns, for the hash cache
}

// repo is a Repo after AddRepo: hashed, indexed and immutable.
type repo struct {
	Repo
	files    []*file          // sorted by path
	byPath   map[string]*file // path -> file
	dirs     []string         // every directory path (not ""), sorted
	commits  map[string]bool  // every commit the repo answers to
	branches map[string]string
}

var hex40 = regexp.MustCompile(`^[0-9a-f]{40}$`)

// lfsPointer is the git-lfs pointer file git stores in place of an LFS file;
// the Hub's oid/blobId for an LFS file is the git blob sha1 of this text.
func lfsPointer(sha string, size int64) string {
	return fmt.Sprintf("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", sha, size)
}

func gitBlobSHA1(content []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(content))
	h.Write(content)
	return hex.EncodeToString(h.Sum(nil))
}

// hashFile streams a file once. LFS files need only sha256 (their git blob is
// the pointer); others need only the git blob sha1.
func hashFile(f *file) error {
	fd, err := os.Open(f.diskPath)
	if err != nil {
		return err
	}
	defer fd.Close()
	buf := make([]byte, 1<<20)
	if f.lfs {
		h := sha256.New()
		if _, err := io.CopyBuffer(h, fd, buf); err != nil {
			return fmt.Errorf("hash %s: %w", f.diskPath, err)
		}
		f.sha256 = hex.EncodeToString(h.Sum(nil))
		ptr := lfsPointer(f.sha256, f.size)
		f.ptrSize = int64(len(ptr))
		f.blobID = gitBlobSHA1([]byte(ptr))
		return nil
	}
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", f.size)
	n, err := io.CopyBuffer(h, fd, buf)
	if err != nil {
		return fmt.Errorf("hash %s: %w", f.diskPath, err)
	}
	if n != f.size {
		return fmt.Errorf("hash %s: size changed while hashing (%d != %d)", f.diskPath, n, f.size)
	}
	f.blobID = hex.EncodeToString(h.Sum(nil))
	return nil
}

// hashCache remembers the hashes of files already seen (by path, size and
// mtime), so serving one directory as several repos hashes it once.
type hashCache struct {
	mu sync.Mutex
	m  map[hashKey]file // GUARDED_BY(mu)
}

type hashKey struct {
	path  string
	size  int64
	mtime int64
}

func (c *hashCache) get(k hashKey) (file, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.m[k]
	return f, ok
}

func (c *hashCache) put(k hashKey, f file) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[hashKey]file{}
	}
	c.m[k] = f
}

// loadRepo walks and hashes a Repo. Files are hashed in parallel (one worker
// per CPU) because sha256 of a multi-GiB model dominates AddRepo.
func loadRepo(r Repo, cache *hashCache) (*repo, error) {
	if strings.Count(r.ID, "/") != 1 || strings.HasPrefix(r.ID, "/") || strings.HasSuffix(r.ID, "/") {
		return nil, fmt.Errorf("hubemu: repo id %q: want org/name", r.ID)
	}
	if r.Commit != "" && !hex40.MatchString(r.Commit) {
		return nil, fmt.Errorf("hubemu: repo %s: commit %q is not 40 lowercase hex", r.ID, r.Commit)
	}
	var files []*file
	err := filepath.WalkDir(r.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		st, err := os.Stat(p) // follows symlinks, like a checkout would
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(r.Dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		files = append(files, &file{path: rel, diskPath: p, size: st.Size(), lfs: IsLFS(rel, st.Size()), mtime: st.ModTime().UnixNano()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hubemu: repo %s: %w", r.ID, err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })

	if err := hashAll(files, cache); err != nil {
		return nil, fmt.Errorf("hubemu: repo %s: %w", r.ID, err)
	}

	rp := &repo{Repo: r, files: files, byPath: make(map[string]*file, len(files))}
	dirSet := map[string]bool{}
	for _, f := range files {
		rp.byPath[f.path] = f
		for d := path.Dir(f.path); d != "."; d = path.Dir(d) {
			dirSet[d] = true
		}
	}
	for d := range dirSet {
		rp.dirs = append(rp.dirs, d)
	}
	sort.Strings(rp.dirs)

	if rp.Commit == "" {
		rp.Commit = deriveCommit(r.ID, files)
	}
	rp.branches = map[string]string{}
	for name, c := range r.Branches {
		if !hex40.MatchString(c) {
			return nil, fmt.Errorf("hubemu: repo %s: branch %q commit %q is not 40 lowercase hex", r.ID, name, c)
		}
		rp.branches[name] = c
	}
	if len(rp.branches) == 0 {
		rp.branches["main"] = rp.Commit
	}
	rp.commits = map[string]bool{rp.Commit: true}
	for _, c := range rp.branches {
		rp.commits[c] = true
	}
	return rp, nil
}

func hashAll(files []*file, cache *hashCache) error {
	work := make(chan *file)
	errs := make(chan error, len(files))
	var wg sync.WaitGroup
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				k := hashKey{f.diskPath, f.size, f.mtime}
				if c, ok := cache.get(k); ok && c.lfs == f.lfs {
					f.sha256, f.blobID, f.ptrSize = c.sha256, c.blobID, c.ptrSize
					continue
				}
				err := hashFile(f)
				if err == nil {
					cache.put(k, *f)
				}
				errs <- err
			}
		}()
	}
	// Biggest first, so one huge shard does not start last.
	order := append([]*file(nil), files...)
	sort.SliceStable(order, func(i, j int) bool { return order[i].size > order[j].size })
	for _, f := range order {
		work <- f
	}
	close(work)
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		if err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// deriveCommit makes a stable fake commit id from what the repo holds, so the
// same directory always yields the same commit and any change yields another.
func deriveCommit(id string, files []*file) string {
	h := sha1.New()
	fmt.Fprintf(h, "repo %s\n", id)
	for _, f := range files {
		fmt.Fprintf(h, "%s %d %s\n", f.path, f.size, f.blobID)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// resolveRev maps a revision (branch, tag, refs/pr/N or a known commit) to a
// commit.
func (r *repo) resolveRev(rev string) (string, bool) {
	if c, ok := r.branches[rev]; ok {
		return c, true
	}
	if r.commits[rev] {
		return rev, true
	}
	return "", false
}

// defaultCommit is what the default branch ("main") points at, or the
// repo's Commit when there is no main.
func (r *repo) defaultCommit() string {
	if c, ok := r.branches["main"]; ok {
		return c
	}
	return r.Commit
}

// treeOID is a stable stand-in for a git tree sha1 of a directory.
func (r *repo) treeOID(commit, dir string) string {
	h := sha1.Sum([]byte("tree " + commit + " " + dir))
	return hex.EncodeToString(h[:])
}

func (r *repo) isDir(p string) bool {
	i := sort.SearchStrings(r.dirs, p)
	return i < len(r.dirs) && r.dirs[i] == p
}
