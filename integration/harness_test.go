// Package integration proves the whole: it builds the weightfs binary,
// serves generated models from the in-repo Hub emulator, mounts for real
// (root + /dev/fuse) and checks bytes through the mount by sha256.
package integration

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weightfs/weightfs/integration/hubemu"
	"github.com/weightfs/weightfs/integration/modelgen"
)

var weightfsBin string

// noFuse is set when /dev/fuse is absent: tests that mount skip, loudly.
var noFuse bool

func TestMain(m *testing.M) {
	if p := os.Getenv(mmapChildEnv); p != "" {
		if err := mmapChild(p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		// Only the tests that mount are skipped (startMount says so in
		// each); the others still run.
		noFuse = true
		fmt.Fprintln(os.Stderr, "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!")
		fmt.Fprintln(os.Stderr, "!!! /dev/fuse is absent on this machine: EVERY TEST THAT MOUNTS IS SKIPPED !!!")
		fmt.Fprint(os.Stderr, "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n")
	}
	dir, err := os.MkdirTemp("", "weightfs-bin-")
	if err != nil {
		panic(err)
	}
	weightfsBin = filepath.Join(dir, "weightfs")
	out, err := exec.Command("go", "build", "-o", weightfsBin, "../cmd/weightfs").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building weightfs: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// mount is a running `weightfs mount` process.
type mount struct {
	t      *testing.T
	dir    string // mountpoint
	cache  string
	cmd    *exec.Cmd
	stderr *logFile
	exited chan struct{}
}

// logFile is the daemon's stderr. It is a real file, not a pipe into this
// process: a test blocked in a page fault on the mount must never be what
// stops the daemon from writing its log (that would deadlock both).
type logFile struct{ path string }

func (l *logFile) String() string {
	b, _ := os.ReadFile(l.path)
	return string(b)
}

type mountOpts struct {
	config   string   // YAML
	cacheDir string   // default: a temp dir
	mountDir string   // default: a temp dir
	env      []string // extra environment
	args     []string // extra flags
}

// runWeightfs runs a weightfs subcommand to completion.
func runWeightfs(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(weightfsBin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startMount starts the daemon and waits for its listing to be served.
func startMount(t *testing.T, hub *hubemu.Server, o mountOpts) (*mount, error) {
	t.Helper()
	if noFuse {
		t.Skip("SKIPPED: /dev/fuse is absent on this machine, and this test mounts")
	}
	if o.cacheDir == "" {
		o.cacheDir = t.TempDir()
	}
	if o.mountDir == "" {
		o.mountDir = t.TempDir()
	}
	args := append([]string{"mount", "--config", writeConfig(t, o.config), "--mountpoint", o.mountDir,
		"--cache-dir", o.cacheDir, "--secrets-dir", filepath.Join(t.TempDir(), "no-secrets")}, o.args...)
	cmd := exec.Command(weightfsBin, args...)
	cmd.Env = append(os.Environ(), "HF_TOKEN=", "HUGGING_FACE_HUB_TOKEN=")
	// A test binary killed by its -timeout runs no cleanup: the daemon
	// must not outlive it, serving (or hanging) a mount nobody unmounts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if hub != nil {
		cmd.Env = append(cmd.Env, "HF_ENDPOINT="+hub.URL())
	}
	cmd.Env = append(cmd.Env, o.env...)
	logPath := filepath.Join(t.TempDir(), "weightfs.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	m := &mount{t: t, dir: o.mountDir, cache: o.cacheDir, cmd: cmd, stderr: &logFile{logPath}, exited: make(chan struct{})}
	cmd.Stderr = lf
	cmd.Stdout = lf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { cmd.Wait(); close(m.exited) }()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(m.stderr.String(), "listing served") {
		select {
		case <-m.exited:
			return nil, fmt.Errorf("weightfs exited (%v): %s", cmd.ProcessState, m.stderr.String())
		case <-deadline:
			m.stop()
			return nil, fmt.Errorf("no listing after 60s: %s", m.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Cleanup(m.stop)
	return m, nil
}

func mustMount(t *testing.T, hub *hubemu.Server, o mountOpts) *mount {
	t.Helper()
	m, err := startMount(t, hub, o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// stop sends SIGTERM and waits for a clean exit; it is idempotent.
func (m *mount) stop() {
	select {
	case <-m.exited:
		return
	default:
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(20 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
		syscall.Unmount(m.dir, syscall.MNT_DETACH)
		m.t.Errorf("weightfs did not exit within 20s of SIGTERM: %s", m.stderr.String())
	}
}

// kill simulates a crash: the mount is left stale.
func (m *mount) kill() {
	m.cmd.Process.Kill()
	<-m.exited
}

func (m *mount) path(p ...string) string { return filepath.Join(append([]string{m.dir}, p...)...) }

// treeSums maps every regular file under dir (relative path) to its sha256.
func treeSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		sum, err := modelgen.SHA256File(p)
		out[filepath.ToSlash(rel)] = sum
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// treeSizes maps every regular file under dir to its size, from stat alone.
func treeSizes(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newHub(t *testing.T, o hubemu.Options) *hubemu.Server {
	t.Helper()
	h, err := hubemu.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}
