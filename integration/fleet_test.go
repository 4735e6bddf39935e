package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/integration/faultproxy"
	"github.com/weightfs/weightfs/integration/hubemu"
	"github.com/weightfs/weightfs/integration/seaweed"
)

// The fleet tests: several weightfs processes, each with its own local
// cache, cold-load one model together through one shared cache. The origin
// is throttled to an aggregate of 800 Mbit/s, as a region's link to the
// Hub's CDN is in production, so the origin (not the daemons' hashing on
// this 2-core machine) is what limits a load.
//
// A fleet store is a --shared-cache value per node and what the test can
// do to it.
type fleetStore struct {
	name  string
	specs func(t *testing.T, n int) []string // a fresh, empty store for n nodes
	env   []string                           // extra environment of the daemons
}

const fleetAggregate = 100e6 // bytes/s: 800 Mbit/s

func fleetHub(t *testing.T, size int64, shards int) (*hubemu.Server, string, int64) {
	t.Helper()
	o := hubemu.Options{AggregateBytesPerSec: fleetAggregate, PerConnBytesPerSec: 40e6}
	// WEIGHTFS_FLEET_HUBLOG=1 logs every request the origin serves, with
	// the time since the hub started: which chunks were fetched twice, when.
	if os.Getenv("WEIGHTFS_FLEET_HUBLOG") != "" {
		t0 := time.Now()
		o.Logf = func(f string, a ...any) {
			fmt.Fprintf(os.Stderr, "%7.3f "+f+"\n", append([]any{time.Since(t0).Seconds()}, a...)...)
		}
	}
	hub := newHub(t, o)
	origin := llmRepo(t, hub, size, shards)
	var total int64
	for _, sz := range treeSizesOS(t, origin) {
		total += sz
	}
	return hub, origin, total
}

// fleetNode is one mount of the fleet and its control address.
type fleetNode struct {
	m    *mount
	addr string
}

// startFleet starts n nodes; specs holds each one's --shared-cache (one for
// all, or one each; none: no shared cache).
func startFleet(t *testing.T, hub *hubemu.Server, n int, specs []string, env []string, extra ...string) []*fleetNode {
	t.Helper()
	nodes := make([]*fleetNode, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := time.Now()
	up := make([]string, n)
	defer func() { t.Logf("each node was mounted after (s): %s", strings.Join(up, " ")) }()
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var m *mount
			var addr string
			var err error
			// A free port can be taken between freeAddr and the bind (a
			// SeaweedFS server or another node grabbed one): try another.
			for try := 0; try < 3; try++ {
				addr = freeAddr(t)
				args := append([]string{"--control-addr", addr, "--progress-every", "1h"}, extra...)
				if len(specs) > 0 {
					args = append(args, "--shared-cache", specs[i%len(specs)])
				}
				m, err = startMount(t, hub, mountOpts{config: llmConfig, args: args, env: env})
				if err == nil || !strings.Contains(err.Error(), "address already in use") {
					break
				}
			}
			errs[i] = err
			nodes[i] = &fleetNode{m: m, addr: addr}
			up[i] = fmt.Sprintf("%.2f", time.Since(start).Seconds())
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// waitAll waits until every node holds the whole model, verified, and
// logs when each one got there.
func waitAll(t *testing.T, nodes []*fleetNode) {
	t.Helper()
	start := time.Now()
	done := make([]string, len(nodes))
	defer func() { t.Logf("each node held the model after (s): %s", strings.Join(done, " ")) }()
	var wg sync.WaitGroup
	for i, nd := range nodes {
		if nd == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := runWeightfs(t, nil, "wait", "--control-addr", nd.addr, "--timeout", "5m", "--poll", "50ms"); err != nil {
				t.Errorf("node %d: wait: %v\n%s\n%s", i, err, out, nd.m.stderr.String())
			}
			done[i] = fmt.Sprintf("%.2f", time.Since(start).Seconds())
		}()
	}
	wg.Wait()
}

// checkSums compares every file on every node with the origin by sha256.
func checkSums(t *testing.T, nodes []*fleetNode, origin string) {
	t.Helper()
	want := treeSums(t, origin)
	for i, nd := range nodes {
		if nd == nil {
			continue
		}
		got := treeSums(t, nd.m.path("llm"))
		for rel, sum := range want {
			if got[rel] != sum {
				t.Errorf("node %d: %s: sha256 %s, want %s", i, rel, got[rel], sum)
			}
		}
	}
}

// fleetStores are the stores every `make test` runs the fleet tests on: a
// local directory standing in for a shared filesystem, and gofakes3 (its
// conditional PUT is real). With WEIGHTFS_WEED set (make test-fleet) they
// run on SeaweedFS too: as an S3 bucket, and as a POSIX DFS, the nodes
// spread over two `weed mount`s of one filer.
func fleetStores(t *testing.T) []fleetStore {
	s3 := newS3Origin(t)
	n := 0
	one := func(s string) []string { return []string{s} }
	stores := []fleetStore{
		{name: "dir", specs: func(t *testing.T, _ int) []string { return one(filepath.Join(t.TempDir(), "shared")) }},
		{name: "gofakes3", env: fleetS3Env(s3.srv.URL), specs: func(t *testing.T, _ int) []string {
			n++
			b := fmt.Sprintf("fleet%d", n)
			s3.bucket(t, b)
			return one("s3://" + b + "/weightfs")
		}},
	}
	if os.Getenv("WEIGHTFS_WEED") == "" {
		t.Log("SeaweedFS stores skipped: run `make test-fleet` (WEIGHTFS_WEED) to run these tests on a real distributed store too")
		return stores
	}
	c := seaweed.Start(t)
	mounts := []string{c.Mount(t), c.Mount(t)}
	stores = append(stores,
		fleetStore{name: "seaweedfs-s3", env: fleetS3Env(c.S3Endpoint), specs: func(t *testing.T, _ int) []string {
			n++
			return one(fmt.Sprintf("s3://%s/run%d", c.Bucket, n))
		}},
		fleetStore{name: "seaweedfs-mount", specs: func(t *testing.T, _ int) []string {
			n++
			return []string{filepath.Join(mounts[0], fmt.Sprintf("run%d", n)), filepath.Join(mounts[1], fmt.Sprintf("run%d", n))}
		}})
	return stores
}

// fleetS3Env points a daemon's shared cache at an S3 endpoint with the
// test keys (the origin is the Hub emulator, so they are the store's own).
func fleetS3Env(endpoint string) []string {
	return append(s3Env(endpoint), "AWS_ACCESS_KEY_ID="+testAccessKeyID, "AWS_SECRET_ACCESS_KEY="+testSecretKey)
}

// TestFleetEightNodesOneOriginDownload: 8 cold nodes on one shared store
// cost about one origin download, and finish within 2x of one node alone.
func TestFleetEightNodesOneOriginDownload(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the fleet load takes a minute")
	}
	for _, st := range fleetStores(t) {
		t.Run(st.name, func(t *testing.T) {
			hub, origin, total := fleetHub(t, 256<<20, 2)

			start := time.Now()
			// WEIGHTFS_FLEET_ARGS adds daemon flags to every node, alone
			// and in the fleet (an experiment: "--direct-io").
			args := strings.Fields(os.Getenv("WEIGHTFS_FLEET_ARGS"))
			alone := startFleet(t, hub, 1, st.specs(t, 1), st.env, args...)
			waitAll(t, alone)
			tAlone := time.Since(start)
			aloneBytes := hub.BytesServed()
			aloneTicks := procCPU(t, alone[0].m.cmd.Process.Pid)
			alone[0].m.stop()

			hub.ResetCounters()
			specs := st.specs(t, 8)
			start = time.Now()
			stopTL := make(chan struct{})
			var nodesP atomic.Pointer[[]*fleetNode]
			go func() {
				var tl []string
				for {
					select {
					case <-stopTL:
						t.Logf("TIMELINE origin MiB / fleet cached MiB every 250ms: %s", strings.Join(tl, " "))
						return
					case <-time.After(250 * time.Millisecond):
						var cached int64
						if np := nodesP.Load(); np != nil {
							for _, nd := range *np {
								cached += cachedBytes(nd.addr)
							}
						}
						tl = append(tl, fmt.Sprintf("%d/%d", hub.BytesServed()>>20, cached>>20))
					}
				}
			}()
			// WEIGHTFS_FLEET_NODELOG=1 runs the 8 nodes at --log-level
			// debug and logs their lease decisions at the end.
			extra := args
			if os.Getenv("WEIGHTFS_FLEET_NODELOG") != "" {
				extra = append(append([]string{}, args...), "--log-level", "debug")
				defer func() {
					for i, nd := range *nodesP.Load() {
						for _, l := range strings.Split(nd.m.stderr.String(), "\n") {
							if strings.Contains(l, "shared cache:") || strings.Contains(l, "prefetch:") {
								t.Logf("node %d: %s", i, l)
							}
						}
					}
				}()
			}
			idle0, total0 := machineIdle(t)
			nodes := startFleet(t, hub, 8, specs, st.env, extra...)
			nodesP.Store(&nodes)
			waitAll(t, nodes)
			close(stopTL)
			tFleet := time.Since(start)
			egress := hub.BytesServed()
			var ticks int64
			for _, nd := range nodes {
				ticks += procCPU(t, nd.m.cmd.Process.Pid)
			}
			idle1, total1 := machineIdle(t)
			idle := 100 * float64(idle1-idle0) / float64(max(1, total1-total0))
			t.Logf("%s: the 8 daemons used %.1f CPU-s (one alone: %.1f); the machine's %d cores were %.0f%% idle during the load",
				st.name, float64(ticks)/100, float64(aloneTicks)/100, runtime.NumCPU(), idle)
			for i, nd := range nodes {
				sh := sharedStatus(t, nd.addr)
				warn := ""
				for _, l := range strings.Split(nd.m.stderr.String(), "\n") {
					if strings.Contains(l, "level=WARN") && strings.Contains(l, "shared cache") {
						warn = l
						break
					}
				}
				t.Logf("node %d: from shared %d MiB, from origin %d MiB, leases won %d waited %d lost %d taken over %d, deferred %d; state %s %s",
					i, sh.Total.BytesShared>>20, sh.Total.BytesOrigin>>20, sh.Total.LeasesWon, sh.Total.LeasesWaited, sh.Total.LeasesLost,
					sh.Total.LeasesTakenOver, sh.Total.Deferred, sh.State, warn)
			}
			checkSums(t, nodes, origin)
			ratio := float64(egress) / float64(total)
			t.Logf("%s: model %d MiB; one node %.2fs (origin %.2fx); 8 nodes %.2fs = %.2fx one node, origin egress %.3fx the model",
				st.name, total>>20, tAlone.Seconds(), float64(aloneBytes)/float64(total), tFleet.Seconds(), tFleet.Seconds()/tAlone.Seconds(), ratio)
			if ratio > 1.1 {
				t.Errorf("origin egress %.3fx the model, want <= 1.1x", ratio)
			}
			// The time bound is a benchmark's: on a 2-core machine shared
			// with other work, 8 daemons' own copying and hashing, not the
			// origin, can set the pace. `make bench` reports it side by
			// side; WEIGHTFS_FLEET_STRICT=1 makes this test enforce it.
			if tFleet > 2*tAlone {
				msg := fmt.Sprintf("8 nodes took %.2fs, more than 2x one node's %.2fs, with the cores %.0f%% idle", tFleet.Seconds(), tAlone.Seconds(), idle)
				if os.Getenv("WEIGHTFS_FLEET_STRICT") != "" {
					t.Error(msg)
				} else {
					t.Log("NOT ENFORCED (set WEIGHTFS_FLEET_STRICT=1): " + msg)
				}
			}
		})
	}
}

// TestFleetNodeKilledMidLoad: kill -9 of one of 4 nodes mid-load; the
// others take over its leases and finish with every byte right.
func TestFleetNodeKilledMidLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	hub, origin, total := fleetHub(t, 192<<20, 2)
	spec := filepath.Join(t.TempDir(), "shared")
	nodes := startFleet(t, hub, 4, []string{spec}, nil, "--shared-lease-ttl", "2s")
	deadline := time.Now().Add(60 * time.Second)
	for hub.BytesServed() < total/3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	nodes[1].m.kill()
	syscallUnmount(nodes[1].m.dir)
	killedAt := hub.BytesServed()
	nodes[1] = nil
	killed := time.Now()
	waitAll(t, nodes)
	// Not a benchmark's bound: with it 5x over the usual 3-4 s, it says
	// whether the dead node's share waited for gather's stall claim (30 s
	// on), as it did in 4 runs of 6 while a node whose own chunks were in
	// did not look at the fleet again.
	if d := time.Since(killed); d > 20*time.Second {
		t.Errorf("the survivors held the model %.1fs after the kill: the dead node's share waited for the stall claim", d.Seconds())
	}
	checkSums(t, nodes, origin)
	ratio := float64(hub.BytesServed()) / float64(total)
	t.Logf("killed node 1 at %.0f%% of the model from the origin; egress %.3fx the model", 100*float64(killedAt)/float64(total), ratio)
	if ratio > 1.25 {
		t.Errorf("origin egress %.3fx the model, want <= 1.25x", ratio)
	}
}

// TestFleetFlippedSharedByteNeverServed: a byte flipped in a shared chunk
// is detected by its digest before any byte of it is served, the chunk is
// removed and fetched from the origin again, and written back whole.
func TestFleetFlippedSharedByteNeverServed(t *testing.T) {
	hub, origin, total := fleetHub(t, 48<<20, 2)
	spec := filepath.Join(t.TempDir(), "shared")
	first := startFleet(t, hub, 1, []string{spec}, nil)
	waitAll(t, first)
	first[0].m.stop()
	chunks := sharedChunks(t, spec)
	if len(chunks) < 4 {
		t.Fatalf("%d chunks in the shared cache", len(chunks))
	}
	victim := chunks[len(chunks)/2]
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	good := append([]byte(nil), b...)
	b[len(b)/2] ^= 0x20
	if err := os.WriteFile(victim, b, 0o600); err != nil {
		t.Fatal(err)
	}
	hub.ResetCounters()
	second := startFleet(t, hub, 1, []string{spec}, nil)
	waitAll(t, second)
	checkSums(t, second, origin)
	log := second[0].m.stderr.String()
	if !strings.Contains(log, "failed its digest") {
		t.Errorf("the flipped chunk was not reported:\n%s", log)
	}
	served := hub.BytesServed()
	if served == 0 || served > total/2 {
		t.Errorf("second node fetched %d bytes from the origin; want about one chunk", served)
	}
	now, err := os.ReadFile(victim)
	if err != nil || string(now) != string(good) {
		t.Errorf("the chunk was not written back whole (err %v)", err)
	}
}

// sharedChunks lists the chunk files of a shared cache directory.
func sharedChunks(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(filepath.Join(dir, "chunks"), func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && !strings.Contains(p, ".tmp-") {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func treeSizesOS(t *testing.T, dir string) map[string]int64 { return treeSizes(t, dir) }

// syscallUnmount detaches the stale mount a killed daemon left.
func syscallUnmount(dir string) {
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
		fmt.Fprintln(os.Stderr, "umount:", dir, err)
	}
}

// TestFleetSecondMountOnNodeSendsNothing: two weightfs processes on one
// node share one local cache dir; the second mount of a model already on
// the node sends no byte to the origin nor to the shared store, and both
// serve every byte right.
func TestFleetSecondMountOnNodeSendsNothing(t *testing.T) {
	hub, origin, _ := fleetHub(t, 48<<20, 2)
	spec := filepath.Join(t.TempDir(), "shared")
	cache := t.TempDir()
	addr := freeAddr(t)
	a := mustMount(t, hub, mountOpts{config: llmConfig, cacheDir: cache, args: []string{"--control-addr", addr, "--shared-cache", spec}})
	waitAll(t, []*fleetNode{{m: a, addr: addr}})
	// A file's verdict may come before its last chunk is written back.
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if sh := sharedStatus(t, addr); sh.Total.BytesPublished == sh.Total.BytesOrigin {
			break
		}
	}
	hub.ResetCounters()
	before := sharedChunks(t, spec)
	addr2 := freeAddr(t)
	b := mustMount(t, hub, mountOpts{config: llmConfig, cacheDir: cache, args: []string{"--control-addr", addr2, "--shared-cache", spec}})
	nodes := []*fleetNode{{m: a, addr: addr}, {m: b, addr: addr2}}
	waitAll(t, nodes)
	checkSums(t, nodes, origin)
	if n := hub.BytesServed(); n != 0 {
		t.Errorf("the second mount fetched %d bytes from the origin", n)
	}
	if sh := sharedStatus(t, addr2); sh.Total.BytesShared != 0 || sh.Total.BytesOrigin != 0 {
		t.Errorf("the second mount used the shared cache: %+v", sh)
	}
	if after := sharedChunks(t, spec); len(after) != len(before) {
		t.Errorf("shared chunks %d before, %d after", len(before), len(after))
	}
}

// sharedStatus is the shared_cache part of a node's /status.
func cachedBytes(addr string) int64 {
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var st struct {
		Totals struct {
			Cached int64 `json:"cached_bytes"`
		} `json:"totals"`
	}
	json.NewDecoder(resp.Body).Decode(&st)
	return st.Totals.Cached
}

func sharedStatus(t *testing.T, addr string) shared.Status {
	t.Helper()
	_, body := controlGet(t, addr, "/status")
	var st struct {
		Shared *shared.Status `json:"shared_cache"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Shared == nil {
		t.Fatalf("/status has no shared_cache (%v): %s", err, body)
	}
	return *st.Shared
}

// TestFleetGC: `weightfs gc` keeps what was used lately, removes what was
// not, and never what is under a live lease; what a killed node left (a
// lapsed lease, its record) goes.
func TestFleetGC(t *testing.T) {
	hub, _, _ := fleetHub(t, 48<<20, 2)
	spec := filepath.Join(t.TempDir(), "shared")
	nodes := startFleet(t, hub, 1, []string{spec}, nil)
	waitAll(t, nodes)
	nodes[0].m.stop()
	gc := func() string {
		out, err := runWeightfs(t, nil, "gc", "--shared-cache", spec, "--unused-for", "14d")
		if err != nil {
			t.Fatalf("gc: %v\n%s", err, out)
		}
		return out
	}
	n := len(sharedChunks(t, spec))
	if out := gc(); len(sharedChunks(t, spec)) != n {
		t.Fatalf("gc removed fresh chunks: %s", out)
	}
	// Everything unused for 40 days, but one object under a live lease.
	old := time.Now().Add(-40 * 24 * time.Hour)
	filepath.Walk(spec, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			os.Chtimes(p, old, old)
		}
		return nil
	})
	chunks := sharedChunks(t, spec)
	rel, _ := filepath.Rel(filepath.Join(spec, "chunks"), chunks[0])
	keyDir := filepath.Dir(filepath.Dir(rel)) // ab/<key>
	lease := filepath.Join(spec, "leases", rel)
	os.MkdirAll(filepath.Dir(lease), 0o700)
	doc := fmt.Sprintf(`{"holder":"other-node","expires_unix_ms":%d}`, time.Now().Add(time.Hour).UnixMilli())
	if err := os.WriteFile(lease, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	// What a node killed mid-fetch leaves: a lapsed lease and its record.
	lapsed := filepath.Join(spec, "leases", filepath.Dir(rel), "9999")
	dead := filepath.Join(spec, "nodes", "killed-node")
	os.MkdirAll(filepath.Dir(dead), 0o700)
	for p, doc := range map[string]string{
		lapsed: fmt.Sprintf(`{"holder":"killed-node","expires_unix_ms":%d}`, old.UnixMilli()),
		dead:   `{"holder":"killed-node"}`,
	} {
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, old, old)
	}
	out := gc()
	t.Log(out)
	for _, p := range []string{lapsed, dead} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("gc left %s, which a killed node left behind", p)
		}
	}
	if _, err := os.Stat(lease); err != nil {
		t.Errorf("gc removed the live lease: %v", err)
	}
	for _, c := range sharedChunks(t, spec) {
		if !strings.Contains(c, keyDir) {
			t.Errorf("unused chunk kept: %s", c)
		}
	}
	kept := 0
	for _, c := range sharedChunks(t, spec) {
		if strings.Contains(c, keyDir) {
			kept++
		}
	}
	if kept == 0 {
		t.Errorf("the object under a live lease was removed")
	}
}

// TestFleetSharedStoreGoesAway: the shared store failing mid-load (down:
// connections reset; hung: requests that never answer) sends reads to the
// origin within the store's deadline; the load completes with every byte
// right, the mount stays up, and the outage is logged once, not per chunk.
func TestFleetSharedStoreGoesAway(t *testing.T) {
	for _, mode := range []string{"down", "hung"} {
		t.Run(mode, func(t *testing.T) {
			hub, origin, total := fleetHub(t, 96<<20, 2)
			px := faultproxy.New(faultproxy.Options{})
			var hung atomic.Bool // every request waits until its client gives up
			release := make(chan struct{})
			hang := func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if hung.Load() {
						// Until the client gives up, or the test ends (a
						// request whose body is unread never sees its
						// client hang up).
						select {
						case <-r.Context().Done():
						case <-release:
						}
						return
					}
					h.ServeHTTP(w, r)
				})
			}
			s3 := newS3Origin(t, px.Wrap, hang)
			t.Cleanup(func() { close(release) }) // before the server closes
			s3.bucket(t, "fleet")
			nodes := startFleet(t, hub, 1, []string{"s3://fleet/weightfs"}, fleetS3Env(s3.srv.URL), "--shared-cache-timeout", "1s")
			deadline := time.Now().Add(60 * time.Second)
			for hub.BytesServed() < total/3 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if mode == "down" {
				px.SetDown(true)
			} else {
				hung.Store(true)
			}
			start := time.Now()
			waitAll(t, nodes)
			checkSums(t, nodes, origin)
			log := nodes[0].m.stderr.String()
			if n := strings.Count(log, "shared cache is failing"); n < 1 || n > 3 {
				t.Errorf("%d log lines for one outage, want one:\n%s", n, log)
			}
			t.Logf("%s: rest of the load took %.1fs after the store went away", mode, time.Since(start).Seconds())
		})
	}
}
