package seaweed

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const mountTimeout = 30 * time.Second

// Mount runs a `weed mount` FUSE client of the cluster's filer (its root,
// /) on a new temporary directory and returns that directory once the
// kernel lists it in /proc/mounts. At cleanup it is unmounted (umount -l)
// and the client stopped. Each Mount is one node: two Mounts of one Cluster
// share one filesystem, each with its own local caches.
func (c *Cluster) Mount(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("SKIPPED: /dev/fuse is absent on this machine (%v), and this test mounts SeaweedFS", err)
	}
	mnt := t.TempDir()
	work := t.TempDir()
	cache := filepath.Join(work, "cache")
	if err := os.Mkdir(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(c.sockets, fmt.Sprintf("mount-%d.sock", time.Now().UnixNano()))
	p, err := startProc(c.bin, mountArgs(c.Filer, mnt, cache, sock), filepath.Join(work, "mount.log"))
	if err != nil {
		t.Fatalf("seaweed: mount: %v", err)
	}
	// Registered after t.TempDir: runs before mnt is removed, so the
	// removal never walks into a live mount.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil && mounted(mnt) {
			t.Logf("seaweed: umount -l %s: %v: %s", mnt, err, out)
		}
		// Already detached; SIGTERM lets it finish what it was flushing.
		p.stop(2 * time.Second)
	})
	deadline := time.Now().Add(mountTimeout)
	for !mounted(mnt) {
		if !p.running() {
			t.Fatalf("seaweed: weed mount exited (%s) before %s was mounted; log %s:\n%s", p.state(), mnt, p.log, p.tail(4000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("seaweed: %s not in /proc/mounts after %v; log %s:\n%s", mnt, mountTimeout, p.log, p.tail(4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("seaweed: mounted %s on %s; log %s", c.Filer, mnt, p.log)
	return mnt
}

// mountArgs are the flags that make weed mount a plain DFS client node:
//
//   - -cacheDir of its own: two mounts on one host must not share a
//     local chunk or metadata cache, or they are not two nodes.
//   - the chunk cache, the reader buffers and the concurrency at weed's
//     defaults (-cacheCapacityMB=128, -readerCacheSizeMB=256,
//     -concurrentReaders/Writers=128), as a real client runs. With 16, 32
//     and 16 (set here once to keep memory small), four daemons reading one
//     8 MiB chunk at once through a mount took 3-4.7 s for it, and the
//     8-node load on two mounts 4-6x the time of one node.
//   - -cacheMetaTtlSec=1 (default 60): how long a cached directory is
//     trusted before it is listed again. Changes from other mounts arrive by
//     the filer's metadata subscription anyway; this bounds staleness when a
//     notification is late or lost, as a short attribute timeout would on NFS.
//   - -dlm off (the default): no distributed lock manager, so O_EXCL, link()
//     and flock are as weak across nodes as fleet.md measured; the fleet code
//     must be correct without them.
//   - -peer.enable off (the default): no peer chunk sharing, no extra port.
//   - -writebackCache off (the default): a close() reaches the filer.
//   - -allowOthers=false: the tests run as the mounting user (root); no
//     user_allow_other needed in /etc/fuse.conf.
//   - -localSocket in the cluster's short socket directory, not /tmp.
func mountArgs(filer, mnt, cache, sock string) []string {
	return []string{
		"-logtostderr",
		"mount",
		"-filer=" + filer,
		"-filer.path=/",
		"-dir=" + mnt,
		"-cacheDir=" + cache,
		"-cacheMetaTtlSec=1",
		"-allowOthers=false",
		"-localSocket=" + sock,
	}
}

// mounted reports whether dir is a mount point in /proc/mounts.
func mounted(dir string) bool {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// /proc/mounts escapes space, tab, newline and \ as octal; temp dirs
		// have none of them, so a plain compare is enough.
		if len(fields) >= 2 && fields[1] == dir {
			return true
		}
	}
	return false
}
