package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weightfs/weightfs/integration/modelgen"
)

// s3Secrets are the values no daemon output may contain.
var s3Secrets = []string{testSecretKey, testSessionToken, testAccessKeyID}

// objStoreModels fills bucket "weights" through put with a diffusers-like
// model under models/sdxl/ and an LLM under org/team/llm/, plus decoys a
// prefix listing must not pick up. It returns what each volume must serve.
func objStoreModels(t *testing.T, put func(key string, data []byte)) (sdxl, llm map[string][]byte) {
	t.Helper()
	sdxl = readTree(t, genModel(t, modelgen.Spec{TotalSize: 12 << 20, Layout: "diffusers", Seed: 11}))
	llmAll := readTree(t, genModel(t, modelgen.Spec{TotalSize: 8 << 20, Shards: 2, Seed: 12}))
	llmAll["model.gguf"] = []byte("GGUF not wanted")
	llmAll["onnx/model.onnx"] = []byte("onnx not wanted")
	llmAll["onnx/config.json"] = []byte(`{"nested": "json"}`) // "*.json" crosses '/'
	for rel, b := range sdxl {
		put("models/sdxl/"+rel, b)
	}
	put("models/sdxl/", nil) // a console "folder" marker
	put("models/sdxl-refiner/unet/decoy.safetensors", []byte("a sibling prefix, not under sdxl/"))
	put("org/team/other/config.json", []byte("{}"))
	llm = map[string][]byte{}
	for rel, b := range llmAll {
		put("org/team/llm/"+rel, b)
		keep := strings.HasSuffix(rel, ".json") || strings.HasSuffix(rel, ".safetensors")
		if keep && !strings.HasPrefix(rel, "tokenizer") {
			llm[rel] = b
		}
	}
	return sdxl, llm
}

// objStoreConfig mounts the two prefixes objStoreModels fills; scheme is
// s3 or gs.
func objStoreConfig(scheme, extra string) string {
	return fmt.Sprintf(`
model_cache:
  - repo_id: %[1]s://weights/models/sdxl
    use_volume: true
    volume_folder: sdxl%[2]s
  - repo_id: %[1]s://weights/org/team/llm/
    use_volume: true
    volume_folder: llm
    allow_patterns: ["*.json", "*.safetensors"]
    ignore_patterns: ["tokenizer*"]%[2]s
`, scheme, extra)
}

func sizesOf(files map[string][]byte) map[string]int64 {
	out := map[string]int64{}
	for p, b := range files {
		out[p] = int64(len(b))
	}
	return out
}

// checkVolumes checks a mount of objStoreConfig end to end: the listing
// (paths relative to each prefix, patterns applied) is served before any
// content request, then every file reads back by sha256, first cold (mmap
// for one volume, read(2) for the other), then warm the other way round.
func checkVolumes(t *testing.T, m *mount, sdxl, llm map[string][]byte, contentRequests func() int64) {
	t.Helper()
	checkSameFiles(t, "sdxl listing", treeSizes(t, m.path("sdxl")), sizesOf(sdxl))
	checkSameFiles(t, "llm listing", treeSizes(t, m.path("llm")), sizesOf(llm))
	for _, d := range []string{"unet", "vae", "text_encoder"} {
		if info, err := os.Stat(m.path("sdxl", d)); err != nil || !info.IsDir() {
			t.Errorf("sdxl/%s: %v %v", d, info, err)
		}
	}
	if n := contentRequests(); n != 0 {
		t.Fatalf("listing and stat made %d content requests, want 0", n)
	}
	readEveryFileMmap(t, m.path("llm"), llm)
	checkSameFiles(t, "sdxl read(2)", treeSums(t, m.path("sdxl")), sumsOf(sdxl))
	if contentRequests() == 0 {
		t.Fatal("reads made no content request")
	}
	checkSameFiles(t, "llm read(2)", treeSums(t, m.path("llm")), sumsOf(llm))
	readEveryFileMmap(t, m.path("sdxl"), sdxl)
}

func TestS3MountServesPrefixesBySHA256(t *testing.T) {
	origin := newS3Origin(t)
	origin.bucket(t, "weights")
	sdxl, llm := objStoreModels(t, func(k string, b []byte) { origin.put(t, "weights", k, b) })
	m := mustMount(t, nil, mountOpts{
		config: objStoreConfig("s3", "\n    runtime_secret_name: aws_creds"),
		env:    append(s3Env(origin.srv.URL), s3SecretEnv("aws_creds")),
		args:   []string{"--prefetch=false"},
	})
	if origin.lists.Load() == 0 {
		t.Fatal("the mount made no ListObjectsV2 request")
	}
	checkVolumes(t, m, sdxl, llm, origin.gets.Load)
	if !origin.sawKey(testAccessKeyID) {
		t.Error("requests were not signed with the credentials of the aws_creds secret")
	}
	m.stop()
	checkCleanOutput(t, m.stderr.String(), s3Secrets...)
}

// An object replaced at the origin after the listing must never mix
// versions: what was cached keeps serving the old bytes, an uncached region
// fails with EIO (never the new bytes), and the log says which object
// changed.
func TestS3ObjectChangedMidReadGivesEIO(t *testing.T) {
	origin := newS3Origin(t)
	origin.bucket(t, "weights")
	v1 := bytes.Repeat([]byte("version-1 "), 800_000) // 8 MB: eight 1 MiB chunks
	origin.put(t, "weights", "llm/model.safetensors", v1)
	origin.put(t, "weights", "llm/config.json", []byte(`{"a": 1}`))
	m := mustMount(t, nil, mountOpts{
		config: "model_cache:\n  - repo_id: s3://weights/llm\n    use_volume: true\n    volume_folder: llm\n",
		env:    append(s3Env(origin.srv.URL), s3SecretEnv("hf_access_token")),
		args:   []string{"--prefetch=false", "--readahead-max-mb=0", "--memory-cache-mb=0", "--chunk-mb=1"},
	})
	checkObjectChanged(t, m, v1, func(v2 []byte) { origin.put(t, "weights", "llm/model.safetensors", v2) })
	checkCleanOutput(t, m.stderr.String(), s3Secrets...)
}

// checkObjectChanged reads the start of llm/model.safetensors (content v1),
// replaces the object through replace, and checks the mount never serves the
// new bytes.
func checkObjectChanged(t *testing.T, m *mount, v1 []byte, replace func(v2 []byte)) {
	t.Helper()
	p := m.path("llm", "model.safetensors")
	head, err := readAtErr(p, 0, 64<<10)
	if err != nil || !bytes.Equal(head, v1[:64<<10]) {
		t.Fatalf("first read: %v (bytes match %v)", err, bytes.Equal(head, v1[:64<<10]))
	}
	v2 := bytes.ReplaceAll(v1, []byte("version-1 "), []byte("version-2 ")) // same size
	replace(v2)

	const tailOff = 6 << 20
	for i := 0; i < 2; i++ { // a retry must not pick up the new version either
		b, err := readAtErr(p, tailOff, 64<<10)
		if !isEIO(err) {
			t.Fatalf("read %d of an uncached region after the change: err = %v (new bytes: %v), want EIO", i, err,
				len(b) > 0 && bytes.Equal(b, v2[tailOff:tailOff+len(b)]))
		}
	}
	if b, err := os.ReadFile(p); !isEIO(err) {
		t.Errorf("whole-file read after the change: err = %v (%d bytes), want EIO", err, len(b))
	}
	// The cached start still serves the listed version.
	if b, err := readAtErr(p, 0, 64<<10); err != nil || !bytes.Equal(b, v1[:64<<10]) {
		t.Errorf("cached region after the change: %v (old bytes %v)", err, bytes.Equal(b, v1[:64<<10]))
	}
	log := m.stderr.String()
	if !strings.Contains(log, "model.safetensors") || !strings.Contains(log, "changed") || !strings.Contains(log, "since it was listed") {
		t.Errorf("the log does not name the changed object:\n%s", log)
	}
}

// Credentials that may list but not read (the seed's IAM policy without
// s3:GetObject): the mount comes up, a read fails with EIO, and the log says
// access was denied and with which credentials.
func TestS3ReadDeniedGivesEIOWithTheCredentialSource(t *testing.T) {
	origin := newS3Origin(t)
	origin.bucket(t, "weights")
	origin.put(t, "weights", "llm/model.safetensors", bytes.Repeat([]byte{1}, 1<<20))
	origin.denyGet.Store(true)
	m := mustMount(t, nil, mountOpts{
		config: "model_cache:\n  - repo_id: s3://weights/llm\n    use_volume: true\n    volume_folder: llm\n    runtime_secret_name: aws_creds\n",
		env:    append(s3Env(origin.srv.URL), s3SecretEnv("aws_creds")),
		args:   []string{"--prefetch=false", "--read-timeout", "5s"},
	})
	if _, err := os.ReadFile(m.path("llm", "model.safetensors")); !isEIO(err) {
		t.Fatalf("read with GetObject denied: err = %v, want EIO", err)
	}
	m.stop()
	checkAll(t, m.stderr.String(), "s3://weights/llm/model.safetensors", "access denied using secret aws_creds (env TRUSS_SECRET_aws_creds)", "s3:GetObject")
	checkCleanOutput(t, m.stderr.String(), s3Secrets...)
}

func TestS3MountErrorsAreClear(t *testing.T) {
	origin := newS3Origin(t)
	origin.bucket(t, "weights")
	origin.put(t, "weights", "llm/config.json", []byte("{}"))
	origin.put(t, "weights", "llm/model.bin", []byte("weights"))
	denied := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>R1</RequestId></Error>`)
	}))
	t.Cleanup(denied.Close)

	dataDir := func(content string) string {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, "s3_credentials.json"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return d
	}
	olderSpelling := fmt.Sprintf(`{"aws_access_key_id": %q, "aws_secret_access_key": %q, "aws_region": "us-east-1"}`, testAccessKeyID, testSecretKey)
	noSecretKey := dataDir(fmt.Sprintf(`{"aws_access_key_id": %q, "aws_session_token": %q, "aws_region": "us-east-1"}`, testAccessKeyID, testSessionToken))
	noKeyID := dataDir(fmt.Sprintf(`{"aws_secret_access_key": %q}`, testSecretKey))
	entry := func(repo, extra string) string {
		return "model_cache:\n  - repo_id: " + repo + "\n    use_volume: true\n    volume_folder: v\n" + extra
	}
	cases := []badInputCase{
		{"no such bucket", entry("s3://no-such-bucket/llm", ""), s3Env(origin.srv.URL), nil,
			[]string{"model_cache[0]", `bucket "no-such-bucket" does not exist`, "check repo_id"}},
		{"access denied, secret", entry("s3://weights/llm", "    runtime_secret_name: aws_creds\n"),
			append(s3Env(denied.URL), s3SecretEnv("aws_creds")), nil,
			[]string{"access denied using secret aws_creds (env TRUSS_SECRET_aws_creds)", `bucket "weights"`, "s3:ListBucket"}},
		{"access denied, credentials file", entry("s3://weights/llm", ""), s3Env(denied.URL),
			[]string{"--data-dir", dataDir(olderSpelling)}, []string{"access denied using file ", "s3_credentials.json"}},
		{"access denied, no credentials", entry("s3://weights/llm", ""), s3Env(denied.URL), nil,
			[]string{"access denied using no credentials (the default AWS credential chain found none)", "hf_access_token"}},
		{"nothing left after patterns", entry("s3://weights/llm", "    allow_patterns: [\"*.gguf\"]\n    ignore_patterns: [\"*.bin\"]\n"),
			s3Env(origin.srv.URL), nil,
			[]string{"model_cache[0] (s3://weights/llm)", "no object matches", `"*.gguf"`, `"*.bin"`, "(2 objects there)"}},
		{"empty prefix", entry("s3://weights/not-there/", ""), s3Env(origin.srv.URL), nil,
			[]string{"no objects at all", `prefix "not-there/"`, "check repo_id"}},
		{"credentials file without the secret key", entry("s3://weights/llm", ""), s3Env(origin.srv.URL), []string{"--data-dir", noSecretKey},
			[]string{filepath.Join(noSecretKey, "s3_credentials.json"), "aws_secret_access_key", "missing"}},
		{"credentials file without the key id", entry("s3://weights/llm", ""), s3Env(origin.srv.URL), []string{"--data-dir", noKeyID},
			[]string{filepath.Join(noKeyID, "s3_credentials.json"), "aws_access_key_id", "missing"}},
		{"credentials file not JSON", entry("s3://weights/llm", ""), s3Env(origin.srv.URL),
			[]string{"--data-dir", dataDir(`aws_secret_access_key = ` + testSecretKey)},
			[]string{"s3_credentials.json", "not valid JSON"}},
		{"secret with a non-string field", entry("s3://weights/llm", "    runtime_secret_name: aws_creds\n"),
			append(s3Env(origin.srv.URL), `TRUSS_SECRET_aws_creds={"access_key_id": "`+testAccessKeyID+`", "secret_access_key": ["`+testSecretKey+`"]}`), nil,
			[]string{"secret aws_creds (env TRUSS_SECRET_aws_creds)", "secret_access_key must be a string"}},
	}
	runBadInput(t, cases, s3Secrets...)
}

// After a restart with the store gone, the listing comes from the saved
// manifest and what was cached still reads back.
func TestS3OfflineRestartServesCache(t *testing.T) {
	origin := newS3Origin(t)
	origin.bucket(t, "weights")
	files := readTree(t, genModel(t, modelgen.Spec{TotalSize: 8 << 20, Shards: 2, Seed: 13}))
	for rel, b := range files {
		origin.put(t, "weights", "team/llm/"+rel, b)
	}
	cfg := "model_cache:\n  - repo_id: s3://weights/team/llm\n    use_volume: true\n    volume_folder: llm\n    runtime_secret_name: aws_creds\n"
	env := append(s3Env(origin.srv.URL), s3SecretEnv("aws_creds"))
	cacheDir := t.TempDir()
	m := mustMount(t, nil, mountOpts{config: cfg, env: env, cacheDir: cacheDir, args: []string{"--prefetch=false", "--readahead-max-mb=0"}})
	cached := []string{"config.json", "model-00001-of-00002.safetensors"}
	for _, rel := range cached {
		if b, err := os.ReadFile(m.path("llm", rel)); err != nil || !bytes.Equal(b, files[rel]) {
			t.Fatalf("%s: %v", rel, err)
		}
	}
	m.stop()
	checkCleanOutput(t, m.stderr.String(), s3Secrets...)
	origin.srv.Close() // the store is gone: every request now fails

	m2 := mustMount(t, nil, mountOpts{config: cfg, env: env, cacheDir: cacheDir,
		args: []string{"--prefetch=false", "--read-timeout", "3s", "--fetch-timeout", "500ms", "--fetch-retries", "2"}})
	if !strings.Contains(m2.stderr.String(), "from_saved_manifest=true") {
		t.Errorf("restart did not use the saved manifest:\n%s", m2.stderr.String())
	}
	checkSameFiles(t, "offline listing", treeSizes(t, m2.path("llm")), sizesOf(files))
	for _, rel := range cached {
		if sum, err := modelgen.SHA256File(m2.path("llm", rel)); err != nil || sum != sha256Sum(files[rel]) {
			t.Errorf("%s offline: %v (sha256 match %v)", rel, err, sum == sha256Sum(files[rel]))
		}
	}
	start := time.Now()
	if _, err := os.ReadFile(m2.path("llm", "model-00002-of-00002.safetensors")); !isEIO(err) {
		t.Errorf("uncached file offline: err = %v, want EIO", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("uncached read took %s to fail; want about --read-timeout", d)
	}
	m2.stop()
	checkCleanOutput(t, m2.stderr.String(), s3Secrets...)
}
