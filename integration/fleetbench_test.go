package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestFleetBench is `make bench`'s fleet row: 8 concurrent cold mounts of
// one model from the throttled origin (800 Mbit/s aggregate), without a
// shared cache and with one (a local directory standing in for a shared
// filesystem), beside one mount alone, in one run. It writes its table
// into the file WEIGHTFS_FLEET_BENCH names (BENCHMARKS.md), replacing the
// section between its markers or appending it.
func TestFleetBench(t *testing.T) {
	out := os.Getenv("WEIGHTFS_FLEET_BENCH")
	if out == "" {
		t.Skip("a benchmark: run by `make bench` (WEIGHTFS_FLEET_BENCH=BENCHMARKS.md)")
	}
	const size = 256 << 20
	hub, origin, total := fleetHub(t, size, 2)
	type row struct {
		name    string
		nodes   int
		shared  bool
		secs    float64
		egress  float64
		cpuSecs float64
	}
	rows := []row{{name: "1 mount", nodes: 1, shared: true}, {name: "8 mounts, no shared cache", nodes: 8}, {name: "8 mounts, shared cache", nodes: 8, shared: true}}
	for i := range rows {
		r := &rows[i]
		hub.ResetCounters()
		var specs []string
		if r.shared {
			specs = []string{filepath.Join(t.TempDir(), "shared")}
		}
		start := time.Now()
		nodes := startFleet(t, hub, r.nodes, specs, nil)
		waitAll(t, nodes)
		r.secs = time.Since(start).Seconds()
		r.egress = float64(hub.BytesServed()) / float64(total)
		for _, nd := range nodes {
			r.cpuSecs += float64(procCPU(t, nd.m.cmd.Process.Pid)) / 100
		}
		checkSums(t, nodes, origin)
		for _, nd := range nodes {
			nd.m.stop()
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<!-- fleet -->\n## Fleet: 8 concurrent cold mounts\n\n")
	fmt.Fprintf(&b, "`make bench` (integration `TestFleetBench`): a %d MiB model (2 shards) from the Hub emulator throttled to 800 Mbit/s aggregate (40 MB/s per connection); "+
		"every mount has its own cache dir; the shared cache is a local directory (`--shared-cache DIR`). Time is from starting the mounts until `weightfs wait` returns on all of them "+
		"(every file cached and verified); every file's sha256 is then checked on every mount. Machine: %d cores, %s, written %s.\n\n",
		total>>20, runtime.NumCPU(), loadavg(), time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "| configuration | all loaded (s) | × one mount | origin bytes × model | daemons' CPU (s) |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.3f | %.1f |\n", r.name, r.secs, r.secs/rows[0].secs, r.egress, r.cpuSecs)
	}
	b.WriteString("<!-- /fleet -->\n")
	t.Log("\n" + b.String())
	old, _ := os.ReadFile(out)
	re := regexp.MustCompile(`(?s)<!-- fleet -->.*<!-- /fleet -->\n`)
	var doc string
	if re.Match(old) {
		doc = re.ReplaceAllLiteralString(string(old), b.String())
	} else {
		doc = strings.TrimRight(string(old), "\n") + "\n\n" + b.String()
	}
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "load unknown"
	}
	return "load average " + strings.Join(f[:3], " ")
}
