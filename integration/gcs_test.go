package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGCSMountServesPrefixesBySHA256(t *testing.T) {
	origin := newGCSOrigin(t)
	origin.bucket("weights")
	sdxl, llm := objStoreModels(t, func(k string, b []byte) { origin.put("weights", k, b) })
	m := mustMount(t, nil, mountOpts{config: objStoreConfig("gs", ""), env: gcsEnv(origin.host), args: []string{"--prefetch=false"}})
	if origin.lists.Load() == 0 {
		t.Fatal("the mount made no objects.list request")
	}
	checkVolumes(t, m, sdxl, llm, origin.media.Load)
	m.stop()
	checkCleanOutput(t, m.stderr.String())
}

func TestGCSObjectChangedMidReadGivesEIO(t *testing.T) {
	origin := newGCSOrigin(t)
	origin.bucket("weights")
	v1 := bytes.Repeat([]byte("version-1 "), 800_000)
	origin.put("weights", "llm/model.safetensors", v1)
	origin.put("weights", "llm/config.json", []byte(`{"a": 1}`))
	m := mustMount(t, nil, mountOpts{
		config: "model_cache:\n  - repo_id: gs://weights/llm\n    use_volume: true\n    volume_folder: llm\n",
		env:    gcsEnv(origin.host),
		args:   []string{"--prefetch=false", "--readahead-max-mb=0", "--memory-cache-mb=0", "--chunk-mb=1"},
	})
	checkObjectChanged(t, m, v1, func(v2 []byte) { origin.put("weights", "llm/model.safetensors", v2) })
	checkCleanOutput(t, m.stderr.String())
}

func TestGCSMountErrorsAreClear(t *testing.T) {
	origin := newGCSOrigin(t)
	origin.bucket("weights")
	origin.put("weights", "llm/config.json", []byte("{}"))
	origin.put("weights", "llm/model.bin", []byte("weights"))
	denied := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"error":{"code":403,"message":"loader@p.iam.gserviceaccount.com does not have storage.objects.list access","errors":[{"reason":"forbidden"}]}}`)
	}))
	t.Cleanup(denied.Close)
	deniedHost := strings.TrimPrefix(denied.URL, "http://")

	dataDir := func(content []byte) string {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, "service_account.json"), content, 0o600); err != nil {
			t.Fatal(err)
		}
		return d
	}
	noKey := dataDir(serviceAccountKey(t, "private_key"))
	full := serviceAccountKey(t)
	truncated := dataDir(full[:len(full)/2])
	entry := func(repo, extra string) string {
		return "model_cache:\n  - repo_id: " + repo + "\n    use_volume: true\n    volume_folder: v\n" + extra
	}
	cases := []badInputCase{
		{"no such bucket", entry("gs://no-such-bucket/llm", ""), gcsEnv(origin.host), nil,
			[]string{"model_cache[0]", `bucket "no-such-bucket" does not exist`, "check repo_id"}},
		{"access denied", entry("gs://weights/llm", ""), gcsEnv(deniedHost), nil,
			[]string{"access denied using no credentials (emulator at " + deniedHost + ")", "storage.objects.list", `bucket "weights"`}},
		{"nothing left after patterns", entry("gs://weights/llm", "    allow_patterns: [\"*.gguf\"]\n    ignore_patterns: [\"*.bin\"]\n"),
			gcsEnv(origin.host), nil,
			[]string{"model_cache[0] (gs://weights/llm)", "no object matches", `"*.gguf"`, `"*.bin"`, "(2 objects there)"}},
		{"service account file without private_key", entry("gs://weights/llm", ""), gcsEnv(origin.host), []string{"--data-dir", noKey},
			[]string{"file " + filepath.Join(noKey, "service_account.json"), "field private_key is missing"}},
		{"service account file cut short", entry("gs://weights/llm", ""), gcsEnv(origin.host), []string{"--data-dir", truncated},
			[]string{"file " + filepath.Join(truncated, "service_account.json"), "not valid JSON"}},
		{"service account secret of another type", entry("gs://weights/llm", "    runtime_secret_name: gcs_sa\n"),
			append(gcsEnv(origin.host), `TRUSS_SECRET_gcs_sa={"type": "authorized_user", "refresh_token": "`+testSecretKey+`"}`), nil,
			[]string{"secret gcs_sa (env TRUSS_SECRET_gcs_sa)", `field type must be "service_account"`}},
	}
	secrets := append(saKeySecrets(t), testSecretKey)
	runBadInput(t, cases, secrets...)
}

// One daemon with an S3 entry (keys and session token in a secret) and a GCS
// entry (a service account key in the data folder), at debug level, through
// listing, reads and unmount: no credential value in any line it writes, nor
// in what the control endpoint serves, nor in `weightfs ls`.
func TestS3AndGCSCredentialsNeverInDaemonOutput(t *testing.T) {
	s3o := newS3Origin(t)
	s3o.bucket(t, "weights")
	gcso := newGCSOrigin(t)
	gcso.bucket("weights")
	files := map[string][]byte{"config.json": []byte(`{"x": 1}`), "model.safetensors": bytes.Repeat([]byte{7}, 3<<20)}
	for rel, b := range files {
		s3o.put(t, "weights", "m/"+rel, b)
		gcso.put("weights", "m/"+rel, b)
	}
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, "service_account.json"), serviceAccountKey(t), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := `
model_cache:
  - repo_id: s3://weights/m
    use_volume: true
    volume_folder: from-s3
    runtime_secret_name: aws_creds
  - repo_id: gs://weights/m
    use_volume: true
    volume_folder: from-gcs
`
	env := append(append(s3Env(s3o.srv.URL), gcsEnv(gcso.host)...), s3SecretEnv("aws_creds"))
	sock := filepath.Join(t.TempDir(), "control.sock")
	args := []string{"--data-dir", dataDir, "--log-level", "debug", "--control-addr", "unix:" + sock}
	secrets := append(saKeySecrets(t), s3Secrets...)
	m := mustMount(t, nil, mountOpts{config: cfg, env: env, args: args})
	for _, vol := range []string{"from-s3", "from-gcs"} {
		checkSameFiles(t, vol, treeSums(t, m.path(vol)), sumsOf(files))
	}
	// Nor in what the control endpoint serves.
	ctl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	for _, path := range []string{"/status", "/metrics", "/readyz"} {
		resp, err := ctl.Get("http://weightfs" + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || (path == "/status" && !bytes.Contains(body, []byte("from-gcs"))) {
			t.Errorf("GET %s: %s\n%s", path, resp.Status, body)
		}
		checkCleanOutput(t, string(body), secrets...)
	}
	if !s3o.sawKey(testAccessKeyID) {
		t.Error("S3 requests were not signed with the secret's keys")
	}
	m.stop()
	out := m.stderr.String()
	if !strings.Contains(out, "level=DEBUG") {
		t.Errorf("no debug lines: the check would prove little:\n%s", out)
	}
	checkCleanOutput(t, out, secrets...)

	lsOut, err := runWeightfs(t, env, "ls", "--config", writeConfig(t, cfg), "--cache-dir", t.TempDir(),
		"--secrets-dir", t.TempDir(), "--data-dir", dataDir, "--log-level", "debug")
	if err != nil || !strings.Contains(lsOut, "model.safetensors") {
		t.Errorf("weightfs ls: %v\n%s", err, lsOut)
	}
	checkCleanOutput(t, lsOut, secrets...)
}
