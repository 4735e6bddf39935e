package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tool is one FUSE filesystem under test: how to start it over a cache
// directory, where the model appears under its mountpoint, how to tell it is
// ready, and which origin it reads from.
type tool struct {
	name      string // "weightfs-hf", "rclone-s3", ...
	volume    string // the model's folder under the mountpoint ("" = the mountpoint itself)
	readyLine string // a log line that means "listing served"; "" = the mountpoint appears in mountinfo
	command   func(mp, cache string) (*exec.Cmd, error)
	counters  originCounters
}

// mount is a running FUSE daemon started by the bench.
type mount struct {
	tool         *tool
	mp, cache    string
	cmd          *exec.Cmd
	logs         *logWatcher
	exited       chan struct{}
	exitErr      error
	start, ready time.Time
	minor        int // FUSE connection number (device minor), 0 = unknown
	atReady      cpuSnapshot
}

// startMount starts t over cache at mp and waits until it is ready.
func startMount(t *tool, mp, cache string, timeout time.Duration) (*mount, error) {
	unmountStale(mp)
	for _, d := range []string{mp, cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	cmd, err := t.command(mp, cache)
	if err != nil {
		return nil, err
	}
	m := &mount{tool: t, mp: mp, cache: cache, cmd: cmd, exited: make(chan struct{})}
	m.logs = newLogWatcher(t.readyLine, "prefetch complete")
	cmd.Stdout, cmd.Stderr = m.logs, m.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	m.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", t.name, err)
	}
	go func() { m.exitErr = cmd.Wait(); close(m.exited) }()

	deadline := time.After(timeout)
	if t.readyLine != "" {
		select {
		case <-m.logs.ch(t.readyLine):
			m.ready, _ = m.logs.seen(t.readyLine)
			m.atReady = takeCPUSnapshot()
		case <-m.exited:
			return nil, fmt.Errorf("%s exited before it was ready (%v): %s", t.name, m.exitErr, m.logs.tail(600))
		case <-deadline:
			m.abort()
			return nil, fmt.Errorf("%s not ready after %s: %s", t.name, timeout, m.logs.tail(600))
		}
		m.minor, _ = mountMinor(mp)
		return m, nil
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		if minor, ok := mountMinor(mp); ok {
			m.ready, m.minor = time.Now(), minor
			m.atReady = takeCPUSnapshot()
			return m, nil
		}
		select {
		case <-m.exited:
			return nil, fmt.Errorf("%s exited before it mounted (%v): %s", t.name, m.exitErr, m.logs.tail(600))
		case <-deadline:
			m.abort()
			return nil, fmt.Errorf("%s did not mount within %s: %s", t.name, timeout, m.logs.tail(600))
		case <-tick.C:
		}
	}
}

// root is where the model's files are.
func (m *mount) root() string { return filepath.Join(m.mp, m.tool.volume) }

// guard runs a timed step against the mount with a deadline. Past it the
// daemon is killed and its FUSE connection aborted, which makes every read
// blocked in it fail, so the step returns and the bench goes on.
func (m *mount) guard(timeout time.Duration, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err, ok := runWithin(timeout, func() error { return f(ctx) }, func() { cancel(); m.abort() })
	if !ok {
		return fmt.Errorf("timed out after %s; %s killed (%v)", timeout, m.tool.name, err)
	}
	return err
}

// runWithin runs f with a deadline; past it, it calls kill and waits up to
// 30 s more for f to give up. ok is false when the deadline passed. A panic in
// f (a SIGBUS on a mapped file, say) becomes its error.
func runWithin(timeout time.Duration, f func() error, kill func()) (err error, ok bool) {
	ch := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				ch <- fmt.Errorf("panic: %v", r)
			}
		}()
		ch <- f()
	}()
	select {
	case err := <-ch:
		return err, true
	case <-time.After(timeout):
	}
	kill()
	select {
	case err := <-ch:
		return err, false
	case <-time.After(30 * time.Second):
		return errors.New("the step is still blocked; abandoned"), false
	}
}

// stop unmounts gracefully (SIGTERM), then forcefully, and always lazily
// unmounts the mountpoint in case the daemon left it behind.
func (m *mount) stop() {
	select {
	case <-m.exited:
	default:
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(15 * time.Second):
			m.abort()
		}
	}
	unmountStale(m.mp)
}

// abort kills the daemon outright and tears its FUSE connection down.
func (m *mount) abort() {
	if m.minor > 0 {
		os.WriteFile(fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", m.minor), []byte("1"), 0)
	}
	if m.cmd.Process != nil {
		syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		m.cmd.Process.Kill()
	}
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
	}
	unmountStale(m.mp)
}

// unmountStale lazily unmounts whatever is mounted at mp.
func unmountStale(mp string) {
	for i := 0; i < 4; i++ {
		if _, ok := mountMinor(mp); !ok {
			return
		}
		exec.Command("umount", "-l", mp).Run()
	}
}

// mountMinor finds mp in /proc/self/mountinfo and returns its device minor
// (for FUSE, the connection number under /sys/fs/fuse/connections).
func mountMinor(mp string) (int, bool) {
	abs, err := filepath.Abs(mp)
	if err != nil {
		return 0, false
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	found, minor := false, 0
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 5 || unescapeMount(fs[4]) != abs {
			continue
		}
		found = true // the last entry for a path is the visible one
		if _, mi, ok := strings.Cut(fs[2], ":"); ok {
			minor, _ = strconv.Atoi(mi)
		}
	}
	return minor, found
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// peakRSS is VmHWM of a process: the most resident memory it has used.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM for pid %d", pid)
}

// cpuTime is the user+system CPU time a process has used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	fs := strings.Fields(rest)
	if !ok || len(fs) < 13 {
		return 0, fmt.Errorf("odd /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(fs[11], 10, 64)
	st, _ := strconv.ParseInt(fs[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// logWatcher keeps the tail of a daemon's output and notes when lines
// containing given strings first appear.
type logWatcher struct {
	mu      sync.Mutex
	buf     []byte               // GUARDED_BY(mu); the last 256 KiB
	partial string               // GUARDED_BY(mu); an unterminated last line
	when    map[string]time.Time // GUARDED_BY(mu)
	chans   map[string]chan struct{}
}

func newLogWatcher(wants ...string) *logWatcher {
	w := &logWatcher{when: map[string]time.Time{}, chans: map[string]chan struct{}{}}
	for _, s := range wants {
		if s != "" {
			w.chans[s] = make(chan struct{})
		}
	}
	return w
}

func (w *logWatcher) Write(p []byte) (int, error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if len(w.buf) > 256<<10 {
		w.buf = w.buf[len(w.buf)-128<<10:]
	}
	text := w.partial + string(p)
	lines := strings.Split(text, "\n")
	w.partial = lines[len(lines)-1]
	for _, line := range lines[:len(lines)-1] {
		for s, ch := range w.chans {
			if _, done := w.when[s]; !done && strings.Contains(line, s) {
				w.when[s] = now
				close(ch)
			}
		}
	}
	return len(p), nil
}

// ch is closed when a line containing s appears (never, for an unwatched s).
func (w *logWatcher) ch(s string) <-chan struct{} {
	if c, ok := w.chans[s]; ok {
		return c
	}
	return make(chan struct{})
}

func (w *logWatcher) seen(s string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.when[s]
	return t, ok
}

// tail is the last n bytes of output, on one line.
func (w *logWatcher) tail(n int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.buf
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// bytes is the kept output (the last 128-256 KiB).
func (w *logWatcher) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]byte(nil), w.buf...)
}

// cpuSnapshot is the machine's CPU time (busy and total, in USER_HZ ticks
// from /proc/stat) and this process's own CPU time (the emulators and the
// file-order reader live here), to show how saturated the cores were.
type cpuSnapshot struct {
	busy, total int64
	self        time.Duration
}

func takeCPUSnapshot() cpuSnapshot {
	var s cpuSnapshot
	s.self, _ = cpuTime(os.Getpid())
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line)[1:] {
		n, _ := strconv.ParseInt(f, 10, 64)
		if i >= 8 { // guest time is already counted in user
			break
		}
		s.total += n
		if i != 3 && i != 4 { // idle, iowait
			s.busy += n
		}
	}
	return s
}

// since describes the CPU use between two snapshots.
func (s cpuSnapshot) since() string {
	now := takeCPUSnapshot()
	dt := now.total - s.total
	if dt <= 0 {
		return ""
	}
	return fmt.Sprintf("machine CPU %.0f%% busy; bench process (emulators, reader) CPU %s",
		100*float64(now.busy-s.busy)/float64(dt), (now.self - s.self).Round(10*time.Millisecond))
}
