package integration

// The three origins of the trust tests, each with a faultproxy in front of
// its content responses: the Hub emulator (its Hub and CDN listeners both),
// gofakes3 and fake-gcs-server. Every test runs the same checks on each.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weightfs/weightfs/chunkcache"
	"github.com/weightfs/weightfs/cmd/weightfs/control"
	"github.com/weightfs/weightfs/integration/faultproxy"
	"github.com/weightfs/weightfs/integration/hubemu"
	"github.com/weightfs/weightfs/integration/modelgen"
)

// trustModelSize: 4 shards of 16 MiB, two 8 MiB chunks each; big enough
// that every shard takes several content responses, small enough for two
// cores.
const trustModelSize = 64 << 20

// trustOrigin is one source serving the trust model as the volume "llm".
type trustOrigin struct {
	name   string
	proxy  *faultproxy.Proxy
	config string
	env    []string
	files  map[string][]byte // the volume's files by path in the volume
}

// trustShard is the volume path of shard i (1-based) of 4.
func trustShard(i int) string { return fmt.Sprintf("model-%05d-of-00004.safetensors", i) }

var trustSources = []string{"hub", "s3", "gcs"}

// newTrustOrigin starts source kind ("hub", "s3", "gcs") with the model
// behind a fault proxy that injects nothing yet.
func newTrustOrigin(t *testing.T, kind string) *trustOrigin {
	t.Helper()
	dir := genModel(t, modelgen.Spec{TotalSize: trustModelSize, Shards: 4, Seed: 21})
	o := &trustOrigin{name: kind, files: readTree(t, dir),
		proxy: faultproxy.New(faultproxy.Options{Seed: 10})}
	vol := "    use_volume: true\n    volume_folder: llm\n"
	switch kind {
	case "hub":
		hub := newHub(t, hubemu.Options{Wrap: o.proxy.Wrap})
		if err := hub.AddRepo(hubemu.Repo{ID: "acme/llm", Dir: dir, Commit: commitA}); err != nil {
			t.Fatal(err)
		}
		o.config = "model_cache:\n  - repo_id: acme/llm\n    revision: main\n" + vol
		o.env = []string{"HF_ENDPOINT=" + hub.URL()}
	case "s3":
		s3 := newS3Origin(t, o.proxy.Wrap)
		s3.bucket(t, "weights")
		s3.putTree(t, "weights", "llm/", dir)
		o.config = "model_cache:\n  - repo_id: s3://weights/llm\n    runtime_secret_name: aws_creds\n" + vol
		o.env = append(s3Env(s3.srv.URL), s3SecretEnv("aws_creds"))
	case "gcs":
		gcs := newGCSOrigin(t, o.proxy.Wrap)
		gcs.bucket("weights")
		gcs.putTree(t, "weights", "llm/", dir)
		o.config = "model_cache:\n  - repo_id: gs://weights/llm\n" + vol
		o.env = gcsEnv(gcs.host)
	default:
		t.Fatalf("no trust origin %q", kind)
	}
	return o
}

// mount mounts the origin with a control endpoint, and returns the mount
// and the endpoint's address.
func (o *trustOrigin) mount(t *testing.T, args ...string) (*mount, string) {
	t.Helper()
	addr := "unix:" + filepath.Join(t.TempDir(), "control.sock")
	m := mustMount(t, nil, mountOpts{config: o.config, env: o.env, args: append([]string{"--control-addr", addr}, args...)})
	return m, addr
}

// trustWaitResult is one `weightfs wait` run.
type trustWaitResult struct {
	code int
	out  string
	took time.Duration
}

// trustWait runs `weightfs wait` against addr. Every run has a --timeout,
// and the process is killed 30 s after it, so a wait that never returns
// fails the test instead of hanging it.
func trustWait(t *testing.T, addr string, timeout time.Duration, args ...string) trustWaitResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	argv := append([]string{"wait", "--control-addr", addr, "--timeout", timeout.String(), "--poll", "200ms", "--progress-every", "5s"}, args...)
	start := time.Now()
	out, err := exec.CommandContext(ctx, weightfsBin, argv...).CombinedOutput()
	r := trustWaitResult{code: exitCodeOf(err), out: string(out), took: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("weightfs wait --timeout %s was still running %s later; killed:\n%s", timeout, time.Since(start), out)
	}
	t.Logf("weightfs wait %v: exit %d after %s:\n%s", args, r.code, r.took.Round(time.Millisecond), out)
	return r
}

// trustFileStates maps each file of the first volume to its /status entry.
func trustFileStates(t *testing.T, addr string) map[string]chunkcache.ObjectStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, _, err := control.NewClient(addr).Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	out := map[string]chunkcache.ObjectStats{}
	for _, v := range st.Volumes {
		for _, f := range v.FileList {
			out[f.Path] = f
		}
	}
	return out
}

// checkTrustFiles reads every file of want through the mount (read(2)) and
// fails for each one whose sha256 differs from the origin's or that cannot
// be read; skip names files not to read.
func checkTrustFiles(t *testing.T, m *mount, want map[string][]byte, skip ...string) {
	t.Helper()
	for rel, data := range want {
		if slices.Contains(skip, rel) {
			continue
		}
		b, err := os.ReadFile(m.path("llm", rel))
		if err != nil {
			t.Errorf("read %s: %v", rel, err)
			continue
		}
		if sha256Sum(b) != sha256Sum(data) {
			t.Errorf("%s read through the mount: %d of %d bytes differ from the origin", rel, byteDiffs(b, data), len(data))
		}
	}
}

func byteDiffs(a, b []byte) int {
	n := max(len(a), len(b)) - min(len(a), len(b))
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// errorLinesNaming returns the daemon's ERROR log lines that name file.
func errorLinesNaming(log, file string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "ERROR") && strings.Contains(l, file) {
			out = append(out, l)
		}
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

func errString(err error) string {
	if err == nil {
		return "short read"
	}
	return err.Error()
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
