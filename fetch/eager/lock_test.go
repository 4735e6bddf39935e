package eager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Fails before this change: a second fetch into the same destination ran
// alongside the first, both assembling the same .part files and renaming
// them under each other.
func TestSecondFetchIntoOneDestIsRefusedNamingTheHolder(t *testing.T) {
	o, files := fixture(t)
	root := t.TempDir()
	slow := &slowOrigin{fakeOrigin: o, after: 2, started: make(chan struct{})}
	ts := targetsFor(root, o, files, OpenLedger(root))
	for i := range ts {
		ts[i].Reader = slow
	}
	first, err := New(ts, Options{Workers: 2, ChunkSize: testChunk, Drain: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- first.Run(ctx) }()
	<-slow.started // the first holds the lock and is fetching

	second, err := New(targetsFor(root, o, files, OpenLedger(root)), Options{ChunkSize: testChunk})
	if err != nil {
		t.Fatal(err)
	}
	before := o.reads.Load()
	err = second.Run(context.Background())
	var busy *BusyError
	if !errors.As(err, &busy) {
		t.Fatalf("second Run: %v, want a BusyError", err)
	}
	lock := filepath.Join(root, LedgerDir, LockFile)
	want := fmt.Sprintf("another weightfs fetch (pid %d) is writing to %s; wait for it to end, or give this one another destination (lock: %s)",
		os.Getpid(), root, lock)
	if err.Error() != want {
		t.Fatalf("message\n got %s\nwant %s", err, want)
	}
	if n := o.reads.Load() - before; n != 0 {
		t.Fatalf("the refused run made %d reads", n)
	}

	cancel()
	if err := <-ran; !errors.Is(err, context.Canceled) {
		t.Fatalf("first Run: %v", err)
	}
	// The lock went with the first run: the next one resumes and finishes.
	if _, err := run(t, targetsFor(root, o, files, OpenLedger(root)), Options{}); err != nil {
		t.Fatal(err)
	}
	assertTree(t, root, o, files)
	if b, _ := os.ReadFile(lock); !strings.HasPrefix(string(b), fmt.Sprint(os.Getpid())) {
		t.Fatalf("lock file holds %q, want the last holder's pid", b)
	}
}

func TestBusyErrorWithoutAPID(t *testing.T) {
	e := &BusyError{Root: "/dest", Lock: "/dest/.weightfs/lock"}
	if got := e.Error(); !strings.HasPrefix(got, "another weightfs fetch is writing to /dest;") {
		t.Fatalf("%s", got)
	}
}
