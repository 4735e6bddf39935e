package seaweed

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is one running `weed server`: master, volume server, filer and
// S3 gateway in one process on 127.0.0.1.
type Cluster struct {
	S3Endpoint string // http://127.0.0.1:P+3; any access key, or none, is accepted
	Bucket     string // created by Start
	Filer      string // 127.0.0.1:P+2, for weed mount -filer
	Master     string // 127.0.0.1:P

	bin     string
	proc    *proc
	sockets string // short directory for unix sockets (sun_path is 108 bytes)
}

// DefaultBucket is the bucket Start creates.
const DefaultBucket = "weightfs-fleet"

const (
	startTimeout = 60 * time.Second
	startTries   = 3 // a port taken between the probe and the bind: new base
)

// Start runs a cluster for the test and stops it (the whole process group)
// at cleanup. It returns once the S3 API serves, the filer answers and a
// small object has been written to Bucket: the write path, volume
// assignment included, works.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin := Require(t)
	var errs []string
	for try := 1; try <= startTries; try++ {
		c, retry, err := start(t, bin)
		if err == nil {
			return c
		}
		errs = append(errs, fmt.Sprintf("try %d: %v", try, err))
		if !retry {
			break
		}
	}
	t.Fatalf("seaweed: no cluster:\n%s", strings.Join(errs, "\n"))
	return nil
}

// start makes one attempt; retry says whether another base may succeed
// (the server died, e.g. on a port someone else took first).
func start(t testing.TB, bin string) (c *Cluster, retry bool, err error) {
	t.Helper()
	p, err := freeBase()
	if err != nil {
		return nil, false, err
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		return nil, false, err
	}
	sockets, err := os.MkdirTemp("", "weed-")
	if err != nil {
		return nil, false, err
	}
	c = &Cluster{
		S3Endpoint: "http://127.0.0.1:" + strconv.Itoa(p+3),
		Bucket:     DefaultBucket,
		Filer:      "127.0.0.1:" + strconv.Itoa(p+2),
		Master:     "127.0.0.1:" + strconv.Itoa(p),
		bin:        bin,
		sockets:    sockets,
	}
	c.proc, err = startProc(bin, serverArgs(p, data, sockets), filepath.Join(dir, "server.log"))
	if err != nil {
		os.RemoveAll(sockets)
		return nil, false, err
	}
	// Registered after t.TempDir, so it runs before the data is removed.
	// SIGKILL, no SIGTERM: a graceful stop waits 10 s for the volume server
	// to drain, and the data is thrown away anyway.
	t.Cleanup(func() {
		c.proc.stop(0)
		os.RemoveAll(sockets)
		removeGrpcSockets(p)
	})
	took, err := c.waitReady()
	if err != nil {
		died := !c.proc.running()
		c.proc.stop(0)
		return nil, died, fmt.Errorf("%v (server %s); log %s:\n%s", err, c.proc.state(), c.proc.log, c.proc.tail(4000))
	}
	t.Logf("seaweed: cluster up: S3 %s bucket %s, filer %s, master %s; log %s; %s", c.S3Endpoint, c.Bucket, c.Filer, c.Master, c.proc.log, took)
	return c, false, nil
}

// serverArgs: every port explicit and bound to 127.0.0.1, small volumes
// without preallocation (fast start on a small disk, little memory),
// telemetry off (no test reaches the internet), and the S3 side services
// that take fixed default ports (Iceberg 8181, Lance 9101) off, so that two
// clusters never collide.
func serverArgs(p int, data, sockets string) []string {
	port := func(i int) string { return strconv.Itoa(p + i) }
	return []string{
		"-logtostderr", // into server.log, not files under /tmp
		"server",
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-dir=" + data,
		"-master.port=" + port(0),
		"-master.volumeSizeLimitMB=64",
		"-master.volumePreallocate=false",
		"-master.telemetry=false",
		"-volume.port=" + port(1),
		"-volume.max=64", // 64 MB each, sparse: room for several collections' growth
		"-volume.minFreeSpace=64MiB",
		"-filer", "-filer.port=" + port(2),
		"-filer.localSocket=" + filepath.Join(sockets, "filer.sock"),
		"-s3", "-s3.port=" + port(3),
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-s3.localSocket=" + filepath.Join(sockets, "s3.sock"),
	}
}

// removeGrpcSockets removes the unix sockets weed server makes for its
// gRPC ports, at a path it hard-codes (no flag): /tmp/seaweedfs-<service>-
// grpc-<port>.sock. Called once the server is gone.
func removeGrpcSockets(p int) {
	for i, svc := range []string{"master", "volume", "filer", "s3"} {
		os.Remove(fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", svc, p+grpcOffset+i))
	}
}

// httpClient talks to loopback only: no proxy from the environment.
var httpClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableCompression: true},
	Timeout:   15 * time.Second,
}

// waitReady returns, on success, how long each step took, for the log.
func (c *Cluster) waitReady() (string, error) {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	steps := []struct {
		what string
		ok   func(context.Context) error
	}{
		{"S3 gateway answers HTTP", func(ctx context.Context) error {
			resp, err := c.do(ctx, "GET", "/", nil, nil)
			if err == nil {
				resp.Body.Close()
			}
			return err
		}},
		{"filer answers HTTP", func(ctx context.Context) error { return answers(ctx, "http://"+c.Filer+"/", 200) }},
		{"bucket " + c.Bucket + " created", func(ctx context.Context) error { return c.expect(ctx, "PUT", "/"+c.Bucket, nil, nil, 200) }},
		{"a write to the bucket", func(ctx context.Context) error {
			return c.expect(ctx, "PUT", "/"+c.Bucket+"/.weightfs-ready", strings.NewReader("ready"), nil, 200)
		}},
		{"a delete from the bucket", func(ctx context.Context) error {
			return c.expect(ctx, "DELETE", "/"+c.Bucket+"/.weightfs-ready", nil, nil, 204)
		}},
	}
	var took []string
	for _, s := range steps {
		var last error
		for {
			if !c.proc.running() {
				return "", fmt.Errorf("server exited waiting for: %s (last: %v)", s.what, last)
			}
			if last = s.ok(ctx); last == nil {
				break
			}
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("not ready after %v: %s: %v", startTimeout, s.what, last)
			case <-time.After(200 * time.Millisecond):
			}
		}
		took = append(took, fmt.Sprintf("%s at %v", s.what, time.Since(t0).Round(time.Millisecond)))
	}
	return strings.Join(took, ", "), nil
}

// S3 sends an unsigned request to the S3 API: with no identities
// configured, SeaweedFS accepts it. path starts with /bucket.
func (c *Cluster) S3(ctx context.Context, method, path string, body io.Reader, header http.Header) (*http.Response, error) {
	return c.do(ctx, method, path, body, header)
}

func (c *Cluster) do(ctx context.Context, method, path string, body io.Reader, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.S3Endpoint+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return httpClient.Do(req)
}

func (c *Cluster) expect(ctx context.Context, method, path string, body io.Reader, header http.Header, status int) error {
	resp, err := c.do(ctx, method, path, body, header)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	if resp.StatusCode != status {
		return fmt.Errorf("%s %s: %s, want %d: %s", method, path, resp.Status, status, strings.TrimSpace(string(b)))
	}
	return nil
}

func answers(ctx context.Context, url string, status int) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != status {
		return fmt.Errorf("GET %s: %s, want %d", url, resp.Status, status)
	}
	return nil
}
