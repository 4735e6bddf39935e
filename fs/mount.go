package fs

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/hanwen/go-fuse/v2/splice"
)

// Options configure a mount. Zero values take the defaults in the comments.
type Options struct {
	ReadTimeout time.Duration // bound on one read, then EIO; default 90s
	AllowOther  bool          // let other users (a sidecar's app container) read
	Passthrough bool          // hand verified files to the kernel (default off here; the CLI turns it on)
	Debug       bool          // log every FUSE request
	Logger      *slog.Logger
	// OnRead, if set, is told the latency and outcome of every read the
	// daemon serves (metrics); reads the kernel passes through to a backing
	// file never reach it. It must be cheap and safe for concurrent use.
	OnRead func(d time.Duration, err error)
}

// maxRequest is the largest read the kernel sends the daemon.
const maxRequest = 1<<20 - 8<<10

// Mount mounts vols read-only at mountpoint and returns once the kernel
// answers for the mount, with the full tree in place.
func Mount(mountpoint string, vols []Volume, opener Opener, o Options) (*fuse.Server, error) {
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 90 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if err := prepareMountpoint(mountpoint, o.Logger); err != nil {
		return nil, err
	}
	var newest time.Time
	for _, v := range vols {
		if v.Manifest.Resolved.After(newest) {
			newest = v.Manifest.Resolved
		}
	}
	r := &root{vols: vols, opener: opener, mtime: newest,
		cfg: &config{log: o.Logger, readTimeout: o.ReadTimeout, passthrough: o.Passthrough, onRead: o.OnRead}}
	// The tree never changes while mounted, so the kernel may keep entries
	// and attributes for as long as it likes.
	forever := 24 * time.Hour
	negative := time.Hour
	opts := &gofs.Options{
		EntryTimeout:    &forever,
		AttrTimeout:     &forever,
		NegativeTimeout: &negative,
		MountOptions: fuse.MountOptions{
			FsName:      "weightfs",
			Name:        "weightfs",
			Options:     []string{"ro", "default_permissions"},
			AllowOther:  o.AllowOther,
			DirectMount: os.Geteuid() == 0,
			// Requests of almost 1 MiB: 8x fewer round trips than the
			// 128 KiB default. Two pages short of 1 MiB, because go-fuse
			// splices a reply (header, data and a spare page) through a
			// pipe no bigger than fs.pipe-max-size, 1 MiB by default; a
			// full 1 MiB read would fail the splice, fall back to a copy
			// and log a line per read.
			MaxWrite:     maxRequest,
			MaxReadAhead: maxRequest,
			// Async reads in flight per mount; the default 12 starves
			// parallel loaders (peers use 64).
			MaxBackground: 64,
			Debug:         o.Debug,
			// go-fuse's own complaints (e.g. a failed splice, then
			// retried as a copy) are per request: debug level only.
			Logger: slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
			// A panic in go-fuse's own handlers (ours recover themselves):
			// EIO and one ERROR line, not a stack at debug level.
			PanicHandler: r.cfg.panicHandler,
		},
	}
	if splice.MaxPipeSize() < maxRequest+2*os.Getpagesize() {
		// A host that lowered pipe-max-size: copy instead of splicing.
		opts.MountOptions.DisableSplice = true
	}
	srv, err := gofs.Mount(mountpoint, r, opts)
	if err != nil {
		return nil, fmt.Errorf("mounting at %s: %w%s", mountpoint, err, mountHint(err))
	}
	raiseReadahead(mountpoint, o.Logger)
	return srv, nil
}

func mountHint(err error) string {
	if errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "fusermount") {
		return " (install fuse3 for fusermount3, or run as root)"
	}
	if errors.Is(err, os.ErrPermission) {
		return " (run as root, or with CAP_SYS_ADMIN, or install fusermount3)"
	}
	return ""
}

// prepareMountpoint creates the mountpoint, and recovers one left behind
// by a killed daemon: its stat fails with ENOTCONN ("transport endpoint is
// not connected") until it is unmounted.
func prepareMountpoint(mp string, log *slog.Logger) error {
	fi, err := os.Stat(mp)
	if err == nil && !fi.IsDir() {
		// The kernel would mount over a file too, and leave a mount no
		// reader can use (every lookup under it fails).
		return fmt.Errorf("mountpoint %s is a %s, not a directory: pass a directory as --mountpoint (a missing one is created)", mp, fileKind(fi.Mode()))
	}
	if err == nil {
		if mounted, _ := isWeightfsMount(mp); mounted {
			// The kernel may answer stat from cached attributes even when
			// the daemon is dead; opening the directory needs the daemon.
			err = probeDir(mp)
			if err == nil {
				return fmt.Errorf("mountpoint %s already has a live weightfs mount: stop that process or choose another --mountpoint", mp)
			}
		}
	}
	if isStale(err) {
		log.Warn("mountpoint is a stale mount of a process that died; unmounting it", "mountpoint", mp)
		if uerr := Unmount(mp, true); uerr != nil {
			return fmt.Errorf("mountpoint %s is a stale FUSE mount and unmounting it failed: %w (run: umount -l %s)", mp, uerr, mp)
		}
		_, err = os.Stat(mp)
	}
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(mp, 0o755); err != nil {
			return fmt.Errorf("creating mountpoint %s: %w", mp, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", mp, err)
	}
	return nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m&os.ModeDevice != 0:
		return "device"
	case m&os.ModeNamedPipe != 0:
		return "named pipe"
	case m&os.ModeSocket != 0:
		return "socket"
	}
	return "non-directory file"
}

func isStale(err error) bool {
	return errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED)
}

func probeDir(mp string) error {
	f, err := os.Open(mp)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// Unmount detaches the mount at mp. lazy detaches it even while files are
// open (they keep working until closed).
func Unmount(mp string, lazy bool) error {
	if os.Geteuid() == 0 {
		flags := 0
		if lazy {
			flags = syscall.MNT_DETACH
		}
		return syscall.Unmount(mp, flags)
	}
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if p, err := exec.LookPath(bin); err == nil {
			out, err := exec.Command(p, append(args, mp)...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %v: %s", bin, err, strings.TrimSpace(string(out)))
			}
			return nil
		}
	}
	return errors.New("fusermount3 not found (install fuse3)")
}

// isWeightfsMount reports whether mp is a mountpoint of a weightfs mount.
func isWeightfsMount(mp string) (bool, error) {
	abs, err := filepath.Abs(mp)
	if err != nil {
		return false, err
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 9 && unescapeMount(f[4]) == abs {
			for i, x := range f {
				if x == "-" && i+2 < len(f) && strings.HasPrefix(f[i+1], "fuse") && f[i+2] == "weightfs" {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// raiseReadahead lifts the kernel readahead of this mount's backing device
// from 128 KiB to 16 MiB (root only), so buffered sequential reads arrive
// as large, parallel requests.
func raiseReadahead(mp string, log *slog.Logger) {
	var st syscall.Stat_t
	if err := syscall.Stat(mp, &st); err != nil {
		return
	}
	major, minor := (st.Dev>>8)&0xfff, (st.Dev&0xff)|((st.Dev>>12)&0xfff00)
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", major, minor)
	if err := os.WriteFile(p, []byte("16384"), 0o644); err != nil {
		log.Debug("could not raise kernel readahead", "path", p, "err", err)
	}
}
