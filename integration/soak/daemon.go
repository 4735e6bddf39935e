package soak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weightfs/weightfs/cmd/weightfs/control"
)

// daemon is a running `weightfs mount`.
type daemon struct {
	bin, mountpoint, control string
	log                      string // its stderr and stdout, a file: a reader blocked in a page fault must never be what stops the daemon from logging
	cmd                      *exec.Cmd
	exited                   chan struct{}
	exitErr                  error
	conn                     uint32      // FUSE connection number (the mount's device minor); 0 unknown
	killed                   atomic.Bool // kill ran: the mount is gone whatever the process does
}

// mountSpec is how one mode's daemon is started.
type mountSpec struct {
	bin, config, dir string // dir holds the mountpoint, cache, socket and log
	hubURL           string
	args             []string // the mode's extra flags
	readTimeout      time.Duration
}

// startDaemon mounts and returns once the listing is served.
func startDaemon(s mountSpec) (*daemon, error) {
	d := &daemon{bin: s.bin, mountpoint: filepath.Join(s.dir, "mnt"), control: "unix:" + filepath.Join(s.dir, "control.sock"),
		log: filepath.Join(s.dir, "weightfs.log"), exited: make(chan struct{})}
	for _, p := range []string{d.mountpoint, filepath.Join(s.dir, "cache")} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, err
		}
	}
	args := append([]string{"mount", "--config", s.config, "--mountpoint", d.mountpoint,
		"--cache-dir", filepath.Join(s.dir, "cache"), "--secrets-dir", filepath.Join(s.dir, "no-secrets"),
		"--control-addr", d.control, "--read-timeout", s.readTimeout.String()}, s.args...)
	d.cmd = exec.Command(s.bin, args...)
	d.cmd.Env = append(os.Environ(), "HF_ENDPOINT="+s.hubURL, "HF_TOKEN=", "HUGGING_FACE_HUB_TOKEN=")
	lf, err := os.Create(d.log)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	d.cmd.Stdout, d.cmd.Stderr = lf, lf
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.bin, err)
	}
	go func() { d.exitErr = d.cmd.Wait(); close(d.exited) }()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(d.logText(), "listing served") {
		select {
		case <-d.exited:
			return nil, fmt.Errorf("weightfs mount exited before its listing was served (%v): %s", d.exitErr, tail([]byte(d.logText()), 800))
		case <-deadline:
			d.kill()
			return nil, fmt.Errorf("weightfs mount: no listing after 60s: %s", tail([]byte(d.logText()), 800))
		case <-time.After(20 * time.Millisecond):
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(d.mountpoint, &st); err == nil {
		d.conn = unix.Minor(st.Dev)
	}
	return d, nil
}

func (d *daemon) logText() string {
	b, _ := os.ReadFile(d.log)
	return string(b)
}

// alive reports whether the daemon is still running and serving.
func (d *daemon) alive() bool {
	if d.killed.Load() {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// stop unmounts with SIGTERM and waits up to 20 s, then kills. It reports
// whether the daemon exited cleanly in time.
func (d *daemon) stop() error {
	if !d.alive() {
		return fmt.Errorf("weightfs mount had already exited (%v)", d.exitErr)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		if d.exitErr != nil {
			return fmt.Errorf("weightfs mount exited with %v after SIGTERM", d.exitErr)
		}
		return nil
	case <-time.After(20 * time.Second):
		d.kill()
		return errors.New("weightfs mount did not exit within 20s of SIGTERM; killed")
	}
}

// kill ends the daemon outright and aborts its FUSE connection, so that
// every read blocked in the mount fails at once and no reader of the soak
// can hang past this. SIGKILL alone is not enough: a daemon thread stuck in
// the kernel (a page-cache invalidation waiting on the lock of a page whose
// read it was to answer) keeps the process a zombie that never closes
// /dev/fuse, and the faulting reader in uninterruptible sleep with it.
//
// The abort happens only while the process has not exited: once it has, its
// connection number is free for another mount to take.
func (d *daemon) kill() {
	d.killed.Store(true)
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Kill()
		select {
		case <-d.exited:
		case <-time.After(2 * time.Second):
			abortConn(d.conn)
			select {
			case <-d.exited:
			case <-time.After(10 * time.Second):
			}
		}
	}
	syscall.Unmount(d.mountpoint, syscall.MNT_DETACH)
}

// stuckThreads describes the daemon's threads asleep in the kernel
// uninterruptibly (state D) with their kernel stacks, innermost first: what
// a wedged mount is waiting on (a page lock under a cache invalidation,
// say). Empty when none is, or /proc hides the stacks.
func (d *daemon) stuckThreads() string {
	if d.cmd.Process == nil {
		return ""
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", d.cmd.Process.Pid))
	var out []string
	for _, t := range tasks {
		stat, err := os.ReadFile(filepath.Join(t, "stat"))
		if _, rest, ok := strings.Cut(string(stat), ") "); err != nil || !ok || !strings.HasPrefix(rest, "D") {
			continue
		}
		stack, _ := os.ReadFile(filepath.Join(t, "stack"))
		var frames []string
		for _, line := range strings.Split(strings.TrimSpace(string(stack)), "\n") {
			if f := strings.Fields(line); len(f) == 2 {
				frames = append(frames, strings.SplitN(f[1], "+", 2)[0])
			}
		}
		out = append(out, fmt.Sprintf("thread %s: %s", filepath.Base(t), strings.Join(frames[:min(len(frames), 6)], " < ")))
	}
	return strings.Join(out, "; ")
}

// abortConn aborts FUSE connection n through fusectl, mounting fusectl
// first where the machine has not.
func abortConn(n uint32) {
	if n == 0 {
		return
	}
	const dir = "/sys/fs/fuse/connections"
	p := fmt.Sprintf("%s/%d/abort", dir, n)
	if _, err := os.Stat(p); err != nil {
		syscall.Mount("fusectl", dir, "fusectl", 0, "")
	}
	os.WriteFile(p, []byte("1"), 0)
}

// waitResult is what `weightfs wait` did.
type waitResult struct {
	Code int           `json:"code"` // its exit status; -1 when it could not run
	Took time.Duration `json:"took_ns"`
	Out  string        `json:"out"` // its last line
}

// wait runs `weightfs wait` against the daemon, bounded by timeout (plus a
// margin, should wait itself not keep its word).
func (d *daemon) wait(timeout time.Duration) waitResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.bin, "wait", "--control-addr", d.control, "--timeout", timeout.String(), "--progress-every", "0")
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	r := waitResult{Took: time.Since(t0), Out: lastLine(out)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	default:
		r.Code, r.Out = -1, err.Error()
	}
	return r
}

// status asks the daemon's control endpoint for /status.
func (d *daemon) status() (*control.Status, error) {
	return control.NewClient(d.control).StatusWithin(context.Background(), 10*time.Second)
}

// logProblems names what in the daemon's log means a bug whatever the
// faults: a data race (a -race build), a panic, a runtime fatal error.
func (d *daemon) logProblems() []string {
	var out []string
	text := []byte(d.logText())
	for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
		if n := bytes.Count(text, []byte(bad)); n > 0 {
			i := bytes.Index(text, []byte(bad))
			out = append(out, fmt.Sprintf("daemon log has %d × %q: %s", n, bad, oneLine(text[i:min(len(text), i+300)])))
		}
	}
	return out
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

func oneLine(b []byte) string { return strings.Join(strings.Fields(string(b)), " ") }
