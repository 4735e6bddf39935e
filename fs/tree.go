// Package fs translates FUSE calls into reads of cached content. It builds
// a read-only tree, one folder per volume, from manifests alone, so the
// whole listing with true sizes exists the moment the mount call returns,
// before any content byte is fetched. It owns no bytes and no network: file
// content comes through the small Content interface.
package fs

import (
	"context"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weightfs/weightfs/fetch"
)

// Content is one file's bytes as the fs sees them.
type Content interface {
	// ReadRef returns the len(dest) bytes at off, fewer only at end of
	// file, without copying them where it can: either as data (a slice of
	// dest, or of a buffer of the content's) or as sec, a section of a
	// local file, which the kernel is then handed to splice from, so the
	// bytes never pass through the daemon's memory. done, when not nil, is
	// called once the reply has gone out: data may be reused after it.
	ReadRef(ctx context.Context, dest []byte, off int64) (data []byte, sec *io.SectionReader, done func(), err error)
	// BackingPath is a complete local copy, when there is one, for
	// passthrough; ok is false otherwise.
	BackingPath() (string, bool)
}

// Opener hands out Content for a file of a volume. It is called on first
// open, not at mount, so mounting touches no content.
type Opener interface {
	Open(volume string, f fetch.File) (Content, error)
}

// Volume is one folder under the mountpoint.
type Volume struct {
	Name     string // volume_folder
	Manifest *fetch.Manifest
}

// Read-only permissions: everyone may read, nobody may write.
const (
	fileMode = syscall.S_IFREG | 0o444
	dirMode  = syscall.S_IFDIR | 0o555
)

// root is the mountpoint directory.
type root struct {
	gofs.Inode
	vols   []Volume
	opener Opener
	cfg    *config
	mtime  time.Time
}

var _ = (gofs.NodeOnAdder)((*root)(nil))
var _ = (gofs.NodeGetattrer)((*root)(nil))
var _ = (gofs.NodeStatfser)((*root)(nil))

// OnAdd builds the whole tree from the manifests. Persistent inodes keep
// it alive for the mount's lifetime, so lookups never call out. Manifests
// come checked (fetch.CheckManifest); a file the tree still cannot hold is
// left out with an ERROR line rather than hidden or fatal.
func (r *root) OnAdd(ctx context.Context) {
	for _, v := range r.vols {
		mt := v.Manifest.Resolved
		vdir := r.NewPersistentInode(ctx, &dirNode{mtime: mt, cfg: r.cfg}, gofs.StableAttr{Mode: syscall.S_IFDIR})
		r.AddChild(v.Name, vdir, false)
		files := append([]fetch.File(nil), v.Manifest.Files...)
		sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
		for _, f := range files {
			if reason := r.addFile(ctx, vdir, v.Name, mt, f); reason != "" {
				r.cfg.log.Error("file left out of the mount", "volume", v.Name, "file", f.Path, "reason", reason)
			}
		}
	}
}

// addFile puts f under vdir, and says why not when it cannot.
func (r *root) addFile(ctx context.Context, vdir *gofs.Inode, vol string, mt time.Time, f fetch.File) (reason string) {
	defer func() {
		if p := recover(); p != nil {
			r.cfg.logPanic("mount", vol, f.Path, p)
			reason = "building its node panicked"
		}
	}()
	dir, base := path.Split(f.Path)
	parent := vdir
	for _, seg := range strings.Split(strings.Trim(dir, "/"), "/") {
		if seg == "" {
			continue
		}
		child := parent.GetChild(seg)
		if child == nil {
			child = r.NewPersistentInode(ctx, &dirNode{mtime: mt, cfg: r.cfg}, gofs.StableAttr{Mode: syscall.S_IFDIR})
			parent.AddChild(seg, child, false)
		} else if !child.IsDir() {
			return fmt.Sprintf("%q is a file, so it cannot be a directory too", seg)
		}
		parent = child
	}
	fn := &fileNode{vol: vol, file: f, mtime: mt, opener: r.opener, cfg: r.cfg}
	if !parent.AddChild(base, r.NewPersistentInode(ctx, fn, gofs.StableAttr{Mode: syscall.S_IFREG}), false) {
		return "its name is taken by another listed entry"
	}
	return ""
}

func (r *root) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer r.cfg.recovered("getattr", "", "", &errno)
	setDirAttr(&out.Attr, r.mtime)
	return 0
}

// Statfs reports the model's total size as the used space, so `df` on the
// mount says how big the model is.
func (r *root) Statfs(ctx context.Context, out *fuse.StatfsOut) (errno syscall.Errno) {
	defer r.cfg.recovered("statfs", "", "", &errno)
	var total, files uint64
	for _, v := range r.vols {
		total += uint64(v.Manifest.TotalSize())
		files += uint64(len(v.Manifest.Files))
	}
	const bsize = 4096
	out.Bsize = bsize
	out.Frsize = bsize
	out.Blocks = (total + bsize - 1) / bsize
	out.Files = files
	out.NameLen = 255
	return 0
}

// dirNode is a directory inside a volume.
type dirNode struct {
	gofs.Inode
	mtime time.Time
	cfg   *config
}

var _ = (gofs.NodeGetattrer)((*dirNode)(nil))

func (d *dirNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer d.cfg.recovered("getattr", "", "", &errno)
	setDirAttr(&out.Attr, d.mtime)
	return 0
}

func setDirAttr(a *fuse.Attr, mt time.Time) {
	a.Mode = dirMode
	a.Nlink = 2
	a.Size = 4096
	a.SetTimes(&mt, &mt, &mt)
}
