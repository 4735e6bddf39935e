package fleetsim

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// go test ./chunkcache/shared/fleetsim -update (or WEIGHTFS_FLEETSIM_WRITE=1)
// rewrites the generated part of FLEET.md at the repository root.
var update = flag.Bool("update", false, "write the tables to FLEET.md at the repository root")

// storeErrorsFixed gates the bound on the store-error rows. Before the fix
// (FLEET.md, finding 1) a node's first store error took the store out of
// use for a second, and its prefetch then fetched every chunk it reached
// from the origin, leases or not; with it false the bound is logged, not
// enforced. The tier now retries a failed request once, trips only after 3
// failures in a row and defers a prefetch while the store fails.
const storeErrorsFixed = true

var sizes = []int{1, 2, 4, 8, 16, 32, 64, 128, 256}

// The fleet grows from 1 to 256 nodes, all cold-starting one model at
// once: the origin sends it about once, and every node ends with every
// byte right.
func TestFleetScaling(t *testing.T) {
	var rows []Result
	for _, n := range sizes {
		r := Run(Settings{Nodes: n})
		rows = append(rows, r)
		checkCorrect(t, fmt.Sprintf("%d nodes", n), r)
		if e := r.Egress(); e > 1.1 {
			t.Errorf("%d nodes: origin egress %.3f× the model, want ≤ 1.1×", n, e)
		}
	}
	table := scalingTable(rows)
	t.Log("\n" + table)
	writeSection(t, "scaling", table)
}

// Faults: a node killed while it holds leases, a store that fails a few
// percent of its requests, a store whose exclusive create is not (a POSIX
// DFS). Every surviving node ends with every byte right, and the origin
// sends at most 1.25× the model.
func TestFleetFaults(t *testing.T) {
	cases := []struct {
		name  string
		s     Settings
		bound float64
		known bool // the bound is not enforced yet (storeErrorsFixed)
	}{
		{"kill 1 of 4", Settings{Nodes: 4, KillAt: 600 * time.Millisecond}, 1.25, false},
		{"kill 1 of 64", Settings{Nodes: 64, KillAt: 600 * time.Millisecond}, 1.25, false},
		{"store errors 3%, 16 nodes", Settings{Nodes: 16, StoreErrRate: 0.03}, 1.25, !storeErrorsFixed},
		{"kill 1 of 16 + store errors 3%", Settings{Nodes: 16, KillAt: 600 * time.Millisecond, StoreErrRate: 0.03}, 1.25, !storeErrorsFixed},
		{"weak exclusive create, 16 nodes", Settings{Nodes: 16, Weak: true}, 1.1, false},
	}
	// The scenarios run at once (each has its own store and origin): they
	// are mostly waiting on leases, and the parallelism of t.Parallel is
	// only GOMAXPROCS.
	rows := make([]Result, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Add(1)
		go func() { defer wg.Done(); rows[i] = Run(c.s) }()
	}
	wg.Wait()
	for i, c := range cases {
		r := rows[i]
		checkCorrect(t, c.name, r)
		if c.s.KillAt > 0 && r.Killed < 0 {
			t.Errorf("%s: no node was killed", c.name)
		}
		if e := r.Egress(); e > c.bound {
			if c.known {
				t.Logf("KNOWN (storeErrorsFixed=false): %s: origin egress %.2f× the model, want ≤ %.2f×", c.name, e, c.bound)
			} else {
				t.Errorf("%s: origin egress %.3f× the model, want ≤ %.2f×", c.name, e, c.bound)
			}
		}
	}
	var b strings.Builder
	b.WriteString("| scenario | egress × model | killed node's fetches in flight | sent to it × model | duplicate chunk fetches | all hold (s) | store req / node / s | won | waited | taken over | deferred | polls | failed requests | store warnings |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i, r := range rows {
		fmt.Fprintf(&b, "| %s | %.3f | %d | %.3f | %d | %.2f | %.0f | %d | %d | %d | %d | %d | %d | %d |\n", cases[i].name, r.Egress(), r.KilledFetches,
			float64(r.DeadBytes)/float64(r.Settings.ModelBytes()), r.DupFetches, r.Wall.Seconds(),
			r.ReqPerNodeSec(), r.Stats.LeasesWon, r.Stats.LeasesWaited, r.Stats.LeasesTakenOver, r.Stats.Deferred, r.Polls(), r.Ops.Failed, r.StoreWarn)
	}
	t.Log("\n" + b.String())
	writeSection(t, "faults", b.String())
}

func checkCorrect(t *testing.T, name string, r Result) {
	t.Helper()
	if r.Wrong > 0 {
		t.Errorf("%s: %d chunks filled with wrong bytes", name, r.Wrong)
	}
	if r.Missing > 0 {
		t.Errorf("%s: live nodes lack %d chunks after %v", name, r.Missing, r.Wall)
	}
}

func scalingTable(rows []Result) string {
	var b strings.Builder
	one := rows[0].Wall
	b.WriteString("| nodes | origin egress × model | all hold the model (s) | × one node | ideal (s) | first / last chunk in store (s) | store req / node / s | req / chunk / node | polls | fleet peak req/s | duplicate chunk fetches | leases won | waited | taken over | deferred | sim CPU | worst timer lag |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		s := r.Settings
		fmt.Fprintf(&b, "| %d | %.3f | %.2f | %.2f | %.2f | %.2f / %.2f | %.0f | %.2f | %d | %.0f | %d | %d | %d | %d | %d | %.0f%% | %dms |\n",
			s.Nodes, r.Egress(), r.Wall.Seconds(), r.Wall.Seconds()/one.Seconds(), s.Ideal().Seconds(),
			r.FirstLanded.Seconds(), r.LastLanded.Seconds(), r.ReqPerNodeSec(), r.ReqPerChunkNode(), r.Polls(),
			r.PeakReqPerSec, r.DupFetches, r.Stats.LeasesWon, r.Stats.LeasesWaited, r.Stats.LeasesTakenOver, r.Stats.Deferred,
			100*r.CPU.Seconds()/(r.Wall.Seconds()*float64(runtime.NumCPU())), r.TimerLag.Milliseconds())
	}
	return b.String()
}

// writeSection replaces the part of FLEET.md between
// <!-- fleetsim:NAME --> and <!-- /fleetsim:NAME --> and the machine
// section, leaving the prose around them alone.
func writeSection(t *testing.T, name, body string) {
	if !*update && os.Getenv("WEIGHTFS_FLEETSIM_WRITE") != "1" {
		return
	}
	path := filepath.Join("..", "..", "..", "FLEET.md")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("FLEET.md: %v (it holds the prose around the tables)", err)
	}
	out, err := replaceSection(old, name, body)
	if err == nil {
		out, err = replaceSection(out, "machine", machine())
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s of %s", name, path)
}

func replaceSection(doc []byte, name, body string) ([]byte, error) {
	begin, end := []byte("<!-- fleetsim:"+name+" -->\n"), []byte("<!-- /fleetsim:"+name+" -->")
	i, j := bytes.Index(doc, begin), bytes.Index(doc, end)
	if i < 0 || j < i {
		return nil, fmt.Errorf("FLEET.md has no %s…%s", begin, end)
	}
	var b bytes.Buffer
	b.Write(doc[:i+len(begin)])
	b.WriteString(body)
	b.Write(doc[j:])
	return b.Bytes(), nil
}

func machine() string {
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	nproc := fmt.Sprint(runtime.NumCPU())
	if out, err := exec.Command("nproc").Output(); err == nil {
		nproc = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("- `nproc`: %s; CPU: %s; %s %s/%s\n- load average when written: %s (other builds share this machine)\n- written %s\n",
		nproc, cpu, runtime.Version(), runtime.GOOS, runtime.GOARCH, load, time.Now().UTC().Format("2006-01-02 15:04 MST"))
}

// The longer runs behind FLEET.md's findings (about a minute): egress
// against the store's error rate at 64 nodes, and a node killed in fleets
// of 128 and 256. WEIGHTFS_FLEETSIM_LONG=1 runs them.
func TestFleetLong(t *testing.T) {
	if os.Getenv("WEIGHTFS_FLEETSIM_LONG") != "1" {
		t.Skip("WEIGHTFS_FLEETSIM_LONG=1 runs these")
	}
	cases := []struct {
		name string
		s    Settings
	}{
		{"64 nodes, store errors 0.1%", Settings{Nodes: 64, StoreErrRate: 0.001}},
		{"64 nodes, store errors 0.5%", Settings{Nodes: 64, StoreErrRate: 0.005}},
		{"64 nodes, store errors 1%", Settings{Nodes: 64, StoreErrRate: 0.01}},
		{"64 nodes, store errors 3%", Settings{Nodes: 64, StoreErrRate: 0.03}},
		{"16 nodes, store capped at 5,000 req/s", Settings{Nodes: 16, StoreReqPerSec: 5000}},
		{"64 nodes, store capped at 5,000 req/s", Settings{Nodes: 64, StoreReqPerSec: 5000}},
		{"kill 1 of 128", Settings{Nodes: 128, KillAt: 600 * time.Millisecond}},
		{"kill 1 of 256", Settings{Nodes: 256, KillAt: 600 * time.Millisecond}},
	}
	var b strings.Builder
	b.WriteString("| scenario | egress × model | killed node's fetches in flight | sent to it × model | duplicate chunk fetches | all hold (s) | last chunk in store (s) | store requests | polls | taken over | failed requests | store warnings |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range cases {
		r := Run(c.s)
		checkCorrect(t, c.name, r)
		fmt.Fprintf(&b, "| %s | %.3f | %d | %.3f | %d | %.2f | %.2f | %d | %d | %d | %d | %d |\n", c.name, r.Egress(), r.KilledFetches,
			float64(r.DeadBytes)/float64(r.Settings.ModelBytes()), r.DupFetches, r.Wall.Seconds(), r.LastLanded.Seconds(),
			r.Ops.Total(), r.Polls(), r.Stats.LeasesTakenOver, r.Ops.Failed, r.StoreWarn)
	}
	t.Log("\n" + b.String())
	writeSection(t, "long", b.String())
}
