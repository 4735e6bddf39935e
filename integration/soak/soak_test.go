package soak

import (
	"os"
	"testing"
	"time"
)

// The soak's mmap loaders are processes of this test binary started again:
// they do their job and exit before any test runs.
func TestMain(m *testing.M) {
	MaybeRunLoader()
	os.Exit(m.Run())
}

// TestSoak is the short soak of `make test` (the Makefile runs it with
// -race, against a weightfs built with -race): a 64 MiB, 4-shard model behind
// a Hub emulator that resets 5%, fails 5% with 503 and flips a byte in 20% of
// content responses; 48 random-offset pread readers and 4 mmap loaders per
// mode (default, then --strict-verify) for WEIGHTFS_SOAK (a duration, e.g.
// 15s) each; then `weightfs wait`, /status and sha256 of every file. It
// fails on every check Report names: a wrong byte under
// --strict-verify, a wrong byte /status does not flag served_bad, a file
// not verified and right after wait, a dead daemon, a data race or panic
// in the daemon's log. Skipped unless WEIGHTFS_SOAK is set; WEIGHTFS_SOAK_BIN
// picks the binary (default: bin/weightfs, as make builds it).
//
// Fails before the self-healing work of issue 10: every shard stayed failed
// ("failed verification twice"), so wait exited 2 and no file was right.
func TestSoak(t *testing.T) {
	v := os.Getenv("WEIGHTFS_SOAK")
	if v == "" {
		t.Skip("set WEIGHTFS_SOAK=15s to run the short soak (make test does)")
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("WEIGHTFS_SOAK=%q: want a duration such as 15s: %v", v, err)
	}
	bin := "../../bin/weightfs"
	if b := os.Getenv("WEIGHTFS_SOAK_BIN"); b != "" {
		bin = b
	}
	rep, err := Run(t.Context(), Config{Bin: bin, Size: 64 << 20, Shards: 4, Duration: d,
		ReadTimeout: 20 * time.Second, WaitTimeout: 60 * time.Second, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep.Markdown())
	for _, f := range rep.Failures() {
		t.Error(f)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) { l.t.Log(string(p)); return len(p), nil }
