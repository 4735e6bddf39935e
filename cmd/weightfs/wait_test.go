package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/chunkcache"
	"github.com/weightfs/weightfs/cmd/weightfs/control"
)

// fakeObject is a file whose cache state the test moves along.
type fakeObject struct {
	mu sync.Mutex
	st chunkcache.ObjectStats
}

func (f *fakeObject) Stats() chunkcache.ObjectStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeObject) set(cached int64, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.CachedBytes, f.st.State, f.st.Verified = cached, state, state == "verified"
}

// serveControl runs a control server on a free loopback port.
func serveControl(t *testing.T) (*control.Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := control.New(control.Options{})
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return s, l.Addr().String()
}

func exitCode(err error) int {
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestWaitEndsByTheFilesState(t *testing.T) {
	cases := []struct {
		name     string
		final    string // state model.safetensors reaches
		timeout  time.Duration
		wantCode int
		want     []string // in the message or stderr
	}{
		{"verified", "verified", 10 * time.Second, 0, []string{"all 2 files cached and verified"}},
		{"no checksum to verify", "complete", 10 * time.Second, 0, []string{"all 2 files cached and verified"}},
		{"failed verification", "bad", 10 * time.Second, exitWaitFailed, []string{"1 file(s) failed verification", "llm/model.safetensors"}},
		{"stalled", "filling", 700 * time.Millisecond, exitWaitTimeout,
			[]string{"timed out after 700ms", "1 of 2 files left", "llm/model.safetensors (512 B of 1.0 KiB)", "612 B of 1.1 KiB cached"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := serveControl(t)
			model := &fakeObject{st: chunkcache.ObjectStats{Path: "model.safetensors", Size: 1024, State: "filling"}}
			cfg := &fakeObject{st: chunkcache.ObjectStats{Path: "config.json", Size: 100, State: "filling"}}
			go func() {
				time.Sleep(150 * time.Millisecond) // wait starts before the daemon is ready
				s.Ready(control.Model{Prefetch: true, Volumes: []control.Volume{{Folder: "llm", Repo: "acme/llm", Kind: "hf",
					Files: []control.Stater{cfg, model}}}})
				time.Sleep(150 * time.Millisecond)
				cfg.set(100, "verified")
				model.set(512, "filling")
				time.Sleep(150 * time.Millisecond)
				if tc.final != "filling" {
					model.set(1024, tc.final)
				}
			}()
			var stderr bytes.Buffer
			start := time.Now()
			err := runWait(context.Background(), control.NewClient(addr), waitOptions{timeout: tc.timeout, poll: 20 * time.Millisecond}, &stderr)
			if code := exitCode(err); code != tc.wantCode {
				t.Fatalf("exit %d (%v), want %d", code, err, tc.wantCode)
			}
			if tc.wantCode == 0 && time.Since(start) < 400*time.Millisecond {
				t.Fatalf("wait returned after %s, before the last file was done", time.Since(start))
			}
			out := stderr.String()
			if err != nil {
				out += err.Error()
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestWaitRetriesAnUnreachableDaemonUntilTimeout(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	var stderr bytes.Buffer
	err := runWait(context.Background(), control.NewClient(addr),
		waitOptions{timeout: 300 * time.Millisecond, poll: 20 * time.Millisecond, progressEvery: 100 * time.Millisecond}, &stderr)
	if exitCode(err) != exitWaitTimeout {
		t.Fatalf("err = %v, want exit %d", err, exitWaitTimeout)
	}
	for _, w := range []string{"never answered", addr, "--control-addr " + addr} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message lacks %q: %v", w, err)
		}
	}
	if !strings.Contains(stderr.String(), "waiting for the daemon") {
		t.Errorf("no progress line while unreachable:\n%s", stderr.String())
	}
}

func TestStatusTable(t *testing.T) {
	s, addr := serveControl(t)
	s.Ready(control.Model{Prefetch: true, Volumes: []control.Volume{
		{Folder: "llm", Repo: "acme/llm", Kind: "hf", Commit: "0123456789abcdef0123456789abcdef01234567", Files: []control.Stater{
			&fakeObject{st: chunkcache.ObjectStats{Path: "config.json", Size: 2048, CachedBytes: 2048, State: "verified", Verified: true}},
			&fakeObject{st: chunkcache.ObjectStats{Path: "model.safetensors", Size: 2048, State: "bad", Error: "sha256 mismatch after refetch"}},
		}},
		{Folder: "vae", Repo: "s3://b/vae", Kind: "s3", Files: []control.Stater{
			&fakeObject{st: chunkcache.ObjectStats{Path: "v.bin", Size: 4096, CachedBytes: 1024, State: "filling"}},
		}},
	}})
	st, _, err := control.NewClient(addr).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printStatus(&out, st); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := [][]string{
		{"VOLUME", "REPO", "FILES", "DONE", "FAILED", "CACHED", "TOTAL", "PERCENT", "RATE", "ETA"},
		{"llm", "hf:acme/llm@0123456789ab", "2", "1", "1", "2.0 KiB", "4.0 KiB", "50.0%", "-", "unknown"},
		{"vae", "s3:s3://b/vae", "1", "0", "0", "1.0 KiB", "4.0 KiB", "25.0%", "-", "unknown"},
		{"total", "3", "1", "1", "3.0 KiB", "8.0 KiB", "37.5%", "-", "unknown"},
	}
	for i, w := range want {
		if i >= len(lines) {
			t.Fatalf("table too short:\n%s", out.String())
		}
		got := strings.Join(strings.Fields(lines[i]), " ")
		if got != strings.Join(w, " ") && !strings.HasPrefix(got, strings.Join(w, " ")) {
			t.Errorf("row %d: %q\nwant   %q", i, got, strings.Join(w, " "))
		}
	}
	for _, w := range []string{"prefetch running", "llm/model.safetensors: bad: sha256 mismatch after refetch"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}

func (f *fakeObject) update(fn func(*chunkcache.ObjectStats)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.st)
}

// readyWith serves one volume "llm" holding objs.
func readyWith(t *testing.T, objs ...*fakeObject) string {
	t.Helper()
	s, addr := serveControl(t)
	var files []control.Stater
	for _, o := range objs {
		files = append(files, o)
	}
	s.Ready(control.Model{Prefetch: true, Volumes: []control.Volume{{Folder: "llm", Repo: "acme/llm", Kind: "hf", Files: files}}})
	return addr
}

// Fails before this change: a file that stopped moving while its fetches
// kept failing (one shard whose every request is reset, a full cache disk)
// left `wait` polling forever, its default timeout being none.
func TestWaitGivesUpOnAStuckFileNamingItAndItsError(t *testing.T) {
	cases := []struct {
		name, path   string
		lastProgress time.Duration // before now; 0: never
		failures     int
		err          string
		want         []string
	}{
		{"error, never progressed", "model-00002.safetensors", 0, 0, "GET model-00002: connection reset by peer",
			[]string{"1 file(s) made no progress for 300ms", "llm/model-00002.safetensors (512 B of 1.0 KiB cached): GET model-00002: connection reset by peer"}},
		{"failures counted, old progress", "model-00003.safetensors", time.Hour, 7, "",
			[]string{"llm/model-00003.safetensors (512 B of 1.0 KiB cached): 7 failed attempts"}},
		{"control characters in the name and the error", "evil\x1b[2J\nname", 0, 1, "open evil\x1b[2J: no space left on device",
			[]string{`"llm/evil\x1b[2J\nname" (512 B of 1.0 KiB cached): open evil\x1b[2J: no space left on device`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := chunkcache.ObjectStats{Path: tc.path, Size: 1024, CachedBytes: 512, State: "filling", Error: tc.err, Failures: tc.failures}
			if tc.lastProgress > 0 {
				st.LastProgress = time.Now().Add(-tc.lastProgress)
			}
			done := &fakeObject{st: chunkcache.ObjectStats{Path: "config.json", Size: 10, CachedBytes: 10, State: "verified", Verified: true}}
			addr := readyWith(t, done, &fakeObject{st: st})
			const stall, poll = 300 * time.Millisecond, 20 * time.Millisecond
			start := time.Now()
			err := runWait(context.Background(), control.NewClient(addr), waitOptions{poll: poll, stall: stall}, io.Discard)
			el := time.Since(start)
			if code := exitCode(err); code != exitWaitStalled {
				t.Fatalf("exit %d (%v), want %d", code, err, exitWaitStalled)
			}
			if el < stall || el > stall+poll+time.Second {
				t.Fatalf("gave up after %s, want within [%s, %s + poll]", el, stall, stall)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message lacks %q:\n%s", w, err)
				}
			}
			if strings.ContainsAny(err.Error(), "\x1b\n") {
				t.Errorf("raw control characters in %q", err)
			}
		})
	}
}

// A slow file is not a stuck one: bytes still landing, or the daemon still
// reporting progress (a chunk healed in place), keep `wait` waiting even
// while an error is shown.
func TestWaitKeepsWaitingOnASlowFile(t *testing.T) {
	for _, name := range []string{"cached bytes grow", "daemon reports progress"} {
		t.Run(name, func(t *testing.T) {
			f := &fakeObject{st: chunkcache.ObjectStats{Path: "model.safetensors", Size: 1000, State: "filling",
				Error: "503 Slow Down (retrying)", Failures: 2}}
			addr := readyWith(t, f)
			go func() {
				for i := 1; i <= 10; i++ {
					time.Sleep(60 * time.Millisecond)
					f.update(func(s *chunkcache.ObjectStats) {
						if name == "cached bytes grow" {
							s.CachedBytes = int64(i) * 100
						} else {
							s.LastProgress = time.Now()
						}
					})
				}
				f.set(1000, "verified")
			}()
			err := runWait(context.Background(), control.NewClient(addr),
				waitOptions{timeout: 10 * time.Second, poll: 20 * time.Millisecond, stall: 200 * time.Millisecond}, io.Discard)
			if err != nil {
				t.Fatalf("wait: %v, want success", err)
			}
		})
	}
}

// Fails before this change: a file whose bytes were served before they
// failed verification, and healed since, ended `wait` with 0 as if nothing
// had happened; its readers never learned they must reload.
func TestWaitExitsServedBadOnceAllIsDone(t *testing.T) {
	ok := &fakeObject{st: chunkcache.ObjectStats{Path: "config.json", Size: 10, CachedBytes: 10, State: "verified", Verified: true}}
	healed := &fakeObject{st: chunkcache.ObjectStats{Path: "model.safetensors", Size: 1024, CachedBytes: 1024, State: "verifying", ServedBad: true}}
	addr := readyWith(t, ok, healed)
	go func() {
		time.Sleep(100 * time.Millisecond)
		healed.set(1024, "verified")
	}()
	start := time.Now()
	err := runWait(context.Background(), control.NewClient(addr), waitOptions{timeout: 10 * time.Second, poll: 20 * time.Millisecond}, io.Discard)
	if code := exitCode(err); code != exitWaitServedBad {
		t.Fatalf("exit %d (%v), want %d", code, err, exitWaitServedBad)
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Fatal("returned before every file was done")
	}
	for _, w := range []string{"all 2 files are now cached and verified", "1 of them", "must reload: llm/model.safetensors"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message lacks %q: %v", w, err)
		}
	}
}

func TestWaitGivesUpOnADaemonThatStoppedAnswering(t *testing.T) {
	s, addr := serveControl(t)
	s.Ready(control.Model{Volumes: []control.Volume{{Folder: "llm", Files: []control.Stater{
		&fakeObject{st: chunkcache.ObjectStats{Path: "a", Size: 10, State: "filling"}}}}}})
	go func() { time.Sleep(100 * time.Millisecond); s.Close() }()
	err := runWait(context.Background(), control.NewClient(addr), waitOptions{poll: 20 * time.Millisecond, stall: 300 * time.Millisecond}, io.Discard)
	if code := exitCode(err); code != exitWaitStalled || !strings.Contains(err.Error(), "stopped answering") {
		t.Fatalf("exit %d (%v), want %d saying the daemon stopped answering", code, err, exitWaitStalled)
	}
}

// A file that failed for good ends the wait only once the others are
// settled, so an exit 2 leaves every other file verified. Fails before
// this change: wait exited 2 at the first bad file while others were still
// verifying.
func TestWaitOnAFailedFileLetsTheOthersFinish(t *testing.T) {
	s, addr := serveControl(t)
	bad := &fakeObject{st: chunkcache.ObjectStats{Path: "bad.safetensors", Size: 1024, CachedBytes: 1024, State: "bad"}}
	other := &fakeObject{st: chunkcache.ObjectStats{Path: "good.safetensors", Size: 1024, State: "verifying"}}
	s.Ready(control.Model{Prefetch: true, Volumes: []control.Volume{{Folder: "llm", Repo: "acme/llm", Kind: "hf",
		Files: []control.Stater{bad, other}}}})
	settled := make(chan time.Time, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		settled <- time.Now()
		other.set(1024, "verified")
	}()
	var stderr bytes.Buffer
	err := runWait(context.Background(), control.NewClient(addr), waitOptions{timeout: 10 * time.Second, poll: 20 * time.Millisecond}, &stderr)
	end := time.Now()
	if code := exitCode(err); code != exitWaitFailed {
		t.Fatalf("exit %d (%v), want %d", code, err, exitWaitFailed)
	}
	if at := <-settled; end.Before(at) {
		t.Fatal("wait exited before the other file was verified")
	}
	if !strings.Contains(err.Error(), "llm/bad.safetensors") {
		t.Fatalf("message does not name the bad file: %v", err)
	}
}
