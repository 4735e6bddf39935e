package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weightfs/weightfs/integration/hubemu"
)

// Fails before this change: the second fetch ran alongside the first, both
// assembling and renaming the same .part files.
func TestSecondFetchIntoOneDestIsRefused(t *testing.T) {
	hub := newHub(t, hubemu.Options{PerConnBytesPerSec: 1 << 20})
	origin := llmRepo(t, hub, 8<<20, 2)
	r := newFetchRun(t, hub, llmConfig)
	first, _ := r.start(t)
	deadline := time.Now().Add(20 * time.Second)
	for hub.BytesServed() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first fetch never started fetching")
		}
		time.Sleep(10 * time.Millisecond)
	}
	second := *r
	second.cache = t.TempDir() // its own cache dir: only the dest is shared
	out, err := second.run(t)
	want := fmt.Sprintf("another weightfs fetch (pid %d) is writing to %s;", first.Process.Pid, r.dest)
	if err == nil || !strings.Contains(out, want) || !strings.Contains(out, filepath.Join(r.dest, ".weightfs", "lock")) {
		t.Fatalf("second fetch: %v, want a refusal containing %q:\n%s", err, want, out)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("first fetch: %v", err)
	}
	assertSameFiles(t, origin, filepath.Join(r.dest, "llm"))
}
