package seaweed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proc is a running weed process with its output in a file.
type proc struct {
	cmd    *exec.Cmd
	log    string // path of its stdout+stderr
	exited chan struct{}
}

// startProc starts bin with args, its output to logPath. The output goes
// to a file, not a pipe into the test: a test blocked on the FUSE mount must
// never be what stops the daemon serving it from writing its log.
//
// Setpgid puts it in a process group of its own, so that stop kills all of
// it and a ^C to the test's group is not what stops it mid-cleanup.
// Pdeathsig: a test binary killed by -timeout runs no cleanup, and the
// server or mount must not outlive it.
func startProc(bin string, args []string, logPath string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Dir = filepath.Dir(logPath)
	// No proxy, no AWS or Sentry settings from the developer's shell: the
	// process talks to loopback only.
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &proc{cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	return p, nil
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(strings.ToUpper(k), "AWS_"), strings.HasPrefix(strings.ToUpper(k), "SENTRY_"),
			strings.EqualFold(k, "http_proxy"),
			strings.EqualFold(k, "https_proxy"), strings.EqualFold(k, "all_proxy"):
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the group, then SIGKILL after grace; with no
// grace, SIGKILL at once.
func (p *proc) stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	if grace > 0 {
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(grace):
		}
	}
	syscall.Kill(-pgid, syscall.SIGKILL) // stragglers in the group, too
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
	}
}

// tail is the last n bytes of the log, for error messages.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > n {
		b = append([]byte("..."), b[len(b)-n:]...)
	}
	return string(b)
}

func (p *proc) state() string {
	if p.running() {
		return "running"
	}
	return p.cmd.ProcessState.String()
}
