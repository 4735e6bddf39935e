package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	wfs "github.com/weightfs/weightfs/fs"
)

// unmountGracefully unmounts; if files are still open (EBUSY) it detaches
// the mount lazily so the daemon can exit and open files fail cleanly
// instead of leaving a stale mountpoint behind.
func unmountGracefully(srv *fuse.Server, mp string, done <-chan struct{}, log *slog.Logger) error {
	if err := srv.Unmount(); err != nil {
		log.Warn("mount busy; detaching lazily", "mountpoint", mp, "err", err)
		if err := wfs.Unmount(mp, true); err != nil {
			return fmt.Errorf("unmounting %s: %w (run: umount -l %s)", mp, err, mp)
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		log.Warn("FUSE server did not stop within 10s; exiting anyway")
	}
	log.Info("unmounted", "mountpoint", mp)
	return nil
}
