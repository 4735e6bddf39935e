package integration

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weightfs/weightfs/integration/hubemu"
)

// procCPU is the user+system CPU time of pid, in clock ticks
// (/proc/PID/stat fields 14 and 15; USER_HZ is 100 on Linux).
func procCPU(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may hold spaces; fields after it follow ")".
	rest := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, _ := strconv.ParseInt(rest[11], 10, 64)
	stime, _ := strconv.ParseInt(rest[12], 10, 64)
	return utime + stime
}

// machineIdle returns the machine's idle and total CPU time so far (all
// cores, in clock ticks), from /proc/stat's first line: the fleet test
// says from two readings whether its cores were saturated.
func machineIdle(t *testing.T) (idle, total int64) {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)[1:]
	// user nice system idle iowait irq softirq steal; guest and
	// guest_nice after them are already counted in user and nice.
	for i, f := range fields[:min(8, len(fields))] {
		n, _ := strconv.ParseInt(f, 10, 64)
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return idle, total
}

// The daemon lives as long as the model server beside it: once the model
// is cached and verified and nobody reads, it must sleep, not poll. Fails
// before this change: idle workers re-armed a 5 ms timer, the prefetch
// tuner ticked every second and the memory tier's sweep every 2.5 s (191
// ticks in 30 s measured by a user, 6% of a core).
func TestIdleDaemonSleeps(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the idle measurement takes 30 s")
	}
	hub := newHub(t, hubemu.Options{})
	llmRepo(t, hub, 16<<20, 2)
	addr := freeAddr(t)
	m := mustMount(t, hub, mountOpts{config: llmConfig, args: []string{"--control-addr", addr}})
	if out, err := runWeightfs(t, nil, "wait", "--control-addr", addr, "--timeout", "60s", "--poll", "200ms"); err != nil {
		t.Fatalf("wait: %v\n%s", err, out)
	}
	time.Sleep(2 * time.Second) // let the last log lines and GC settle
	pid := m.cmd.Process.Pid
	before := procCPU(t, pid)
	time.Sleep(30 * time.Second)
	used := procCPU(t, pid) - before
	t.Logf("idle daemon: %d ticks (%.2f CPU-s) in 30 s", used, float64(used)/100)
	if used > 5 {
		t.Errorf("idle daemon used %.2f CPU-seconds in 30 s, want <= 0.05", float64(used)/100)
	}
}
