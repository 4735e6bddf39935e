package integration

// Object-store origins for the real-mount tests: gofakes3 (in memory) and
// fake-gcs-server, each behind an httptest server of ours so requests can be
// counted, and the helpers the S3 and GCS tests share.

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/weightfs/weightfs/integration/modelgen"
)

// Credential values handed to the daemon in these tests. None may ever show
// up in its output.
const (
	testAccessKeyID  = "AKIAWEIGHTFSTEST0001"
	testSecretKey    = "wfsSecretKey/Do+Not+Print/0123456789abcd"
	testSessionToken = "wfsSessionToken//NeverLogMe==zzzz"
)

// s3Origin is gofakes3 (s3mem) behind an httptest server that counts
// requests.
type s3Origin struct {
	backend *s3mem.Backend
	srv     *httptest.Server
	gets    atomic.Int64 // GetObject requests (content), listings excluded
	lists   atomic.Int64 // ListObjectsV2 requests
	denyGet atomic.Bool  // answer GetObject with 403 AccessDenied (a policy without s3:GetObject)

	mu   sync.Mutex
	keys map[string]bool // GUARDED_BY(mu); access key IDs seen in Authorization
}

// wrap, if given, goes in front of gofakes3 (inside the counting), e.g. a
// faultproxy.Proxy's Wrap.
func newS3Origin(t *testing.T, wrap ...func(http.Handler) http.Handler) *s3Origin {
	t.Helper()
	o := &s3Origin{backend: s3mem.New(), keys: map[string]bool{}}
	h := gofakes3.New(o.backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server()
	for _, w := range wrap {
		h = w(h)
	}
	o.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			if r.URL.Query().Has("list-type") {
				o.lists.Add(1)
			} else if strings.Count(strings.Trim(r.URL.Path, "/"), "/") >= 1 { // /bucket/key
				o.gets.Add(1)
				if o.denyGet.Load() {
					w.Header().Set("Content-Type", "application/xml")
					w.WriteHeader(http.StatusForbidden)
					io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`)
					return
				}
			}
		}
		if _, rest, ok := strings.Cut(r.Header.Get("Authorization"), "Credential="); ok {
			id, _, _ := strings.Cut(rest, "/")
			o.mu.Lock()
			o.keys[id] = true
			o.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	// gofakes3 complains on the server log when a client hangs up early
	// (weightfs drops the body of a changed object unread).
	o.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	o.srv.Start()
	t.Cleanup(o.srv.Close)
	return o
}

func (o *s3Origin) bucket(t *testing.T, name string) {
	t.Helper()
	if err := o.backend.CreateBucket(name); err != nil {
		t.Fatal(err)
	}
}

func (o *s3Origin) put(t *testing.T, bucket, key string, data []byte) {
	t.Helper()
	if _, err := o.backend.PutObject(bucket, key, map[string]string{}, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
}

// putTree uploads every file under dir as prefix+<relative path>.
func (o *s3Origin) putTree(t *testing.T, bucket, prefix, dir string) {
	t.Helper()
	for rel, data := range readTree(t, dir) {
		o.put(t, bucket, prefix+rel, data)
	}
}

func (o *s3Origin) sawKey(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.keys[id]
}

// s3Env points the daemon at endpoint and shuts out every ambient AWS
// setting: no profile, no shared files, no instance metadata.
func s3Env(endpoint string) []string {
	return []string{
		"AWS_ENDPOINT_URL_S3=" + endpoint, "AWS_ENDPOINT_URL=", "AWS_REGION=us-east-1", "AWS_DEFAULT_REGION=",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=",
		"AWS_PROFILE=", "AWS_CONFIG_FILE=/nonexistent/aws-config", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent/aws-credentials",
	}
}

// s3SecretEnv hands the test keys to the daemon as the Truss secret name,
// in the secret spelling.
func s3SecretEnv(name string) string {
	b, _ := json.Marshal(map[string]string{"access_key_id": testAccessKeyID, "secret_access_key": testSecretKey,
		"session_token": testSessionToken, "region": "us-east-1"})
	return "TRUSS_SECRET_" + name + "=" + string(b)
}

// gcsOrigin is fake-gcs-server behind an httptest server that counts
// requests; the daemon reaches it as STORAGE_EMULATOR_HOST.
type gcsOrigin struct {
	server *fakestorage.Server
	srv    *httptest.Server
	host   string       // host:port
	media  atomic.Int64 // object content downloads
	lists  atomic.Int64 // objects.list requests
}

// wrap, if given, goes in front of fake-gcs-server (inside the counting).
func newGCSOrigin(t *testing.T, wrap ...func(http.Handler) http.Handler) *gcsOrigin {
	t.Helper()
	server, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true, Scheme: "http", PublicHost: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(server.Stop)
	o := &gcsOrigin{server: server}
	h := server.HTTPHandler()
	for _, w := range wrap {
		h = w(h)
	}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			switch {
			case r.URL.Query().Get("alt") == "media" || strings.HasPrefix(r.URL.Path, "/download/"):
				o.media.Add(1)
			case strings.HasSuffix(r.URL.Path, "/o"):
				o.lists.Add(1)
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(o.srv.Close)
	o.host = strings.TrimPrefix(o.srv.URL, "http://")
	return o
}

func (o *gcsOrigin) bucket(name string) {
	o.server.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: name})
}

func (o *gcsOrigin) put(bucket, name string, data []byte) {
	o.server.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: name}, Content: data})
}

func (o *gcsOrigin) putTree(t *testing.T, bucket, prefix, dir string) {
	t.Helper()
	for rel, data := range readTree(t, dir) {
		o.put(bucket, prefix+rel, data)
	}
}

// gcsEnv points the daemon at the emulator and shuts out Application
// Default Credentials.
func gcsEnv(host string) []string {
	return []string{"STORAGE_EMULATOR_HOST=" + host, "GOOGLE_APPLICATION_CREDENTIALS=/nonexistent/adc.json",
		"CLOUDSDK_CONFIG=/nonexistent/gcloud", "GCE_METADATA_HOST=127.0.0.1:9"}
}

var (
	saKeyOnce sync.Once
	saKeyPEM  string
)

// serviceAccountKey returns a service account key file (a real, test-only
// RSA key) without the fields named in drop.
func serviceAccountKey(t *testing.T, drop ...string) []byte {
	t.Helper()
	saKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		saKeyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	})
	m := map[string]string{
		"type": "service_account", "project_id": "weightfs-test", "private_key_id": "kid0f1e2d3c4b5a69788796a5b4c3d2e1f0",
		"private_key": saKeyPEM, "client_email": "loader@weightfs-test.iam.gserviceaccount.com",
		"client_id": "1234567890", "token_uri": "http://127.0.0.1:9/token",
	}
	for _, k := range drop {
		delete(m, k)
	}
	b, _ := json.Marshal(m)
	return b
}

// saKeySecrets are the parts of the service account key that must never be
// printed: its id and each line of the key body.
func saKeySecrets(t *testing.T) []string {
	serviceAccountKey(t)
	out := []string{"kid0f1e2d3c4b5a69788796a5b4c3d2e1f0"}
	for _, line := range strings.Split(saKeyPEM, "\n") {
		if len(line) >= 32 && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	return out
}

// readTree returns every regular file under dir by relative path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// genModel writes a modelgen model into a temp dir.
func genModel(t *testing.T, spec modelgen.Spec) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := modelgen.Generate(dir, spec); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sumsOf maps each file's relative path to its sha256.
func sumsOf(files map[string][]byte) map[string]string {
	out := map[string]string{}
	for p, b := range files {
		out[p] = sha256Sum(b)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkSameFiles fails unless got and want have the same paths and values.
func checkSameFiles[V comparable](t *testing.T, what string, got, want map[string]V) {
	t.Helper()
	if g, w := strings.Join(sortedKeys(got), ","), strings.Join(sortedKeys(want), ","); g != w {
		t.Fatalf("%s: files\n got %s\nwant %s", what, g, w)
	}
	for p, v := range want {
		if got[p] != v {
			t.Errorf("%s: %s: got %v, want %v", what, p, got[p], v)
		}
	}
}

// readEveryFileMmap reads each file of want under dir through mmap and
// checks its sha256.
func readEveryFileMmap(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	for rel, data := range want {
		b, err := readMmap(filepath.Join(dir, rel), int64(len(data)))
		if err != nil {
			t.Fatalf("mmap %s: %v", rel, err)
		}
		if sha256Sum(b) != sha256Sum(data) {
			t.Errorf("mmap %s: sha256 differs from the origin", rel)
		}
	}
}

// checkCleanOutput fails if the daemon output holds a stack trace or any of
// the credential values.
func checkCleanOutput(t *testing.T, out string, secrets ...string) {
	t.Helper()
	for _, bad := range []string{"panic", "goroutine "} {
		if strings.Contains(out, bad) {
			t.Errorf("output contains %q:\n%s", bad, out)
		}
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("output contains the credential value %q", s)
		}
	}
}

// badInputCase is a config and environment a mount must refuse, with the
// fragments its message must contain.
type badInputCase struct {
	name   string
	config string
	env    []string
	args   []string
	want   []string
}

// runBadInput runs each case as a subtest: the mount fails quickly, with a
// clean message naming what is wrong, and no secret in it.
func runBadInput(t *testing.T, cases []badInputCase, secrets ...string) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			msg := mountFails(t, mountOpts{config: tc.config, env: tc.env, args: tc.args}, secrets...)
			checkAll(t, msg, tc.want...)
			t.Log(msg)
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("the mount took %s to fail", d)
			}
		})
	}
}

// mountFails starts a mount that must fail, and returns its message after
// checking it is clean.
func mountFails(t *testing.T, o mountOpts, secrets ...string) string {
	t.Helper()
	m, err := startMount(t, nil, o)
	if err == nil {
		m.stop()
		t.Fatalf("mount succeeded; want a clear error:\n%s", m.stderr.String())
	}
	msg := err.Error()
	checkCleanOutput(t, msg, secrets...)
	return msg
}

// checkAll fails for each of want that msg lacks.
func checkAll(t *testing.T, msg string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("message lacks %q:\n%s", w, msg)
		}
	}
}

// readAtErr reads n bytes at off of the file at p.
func readAtErr(p string, off int64, n int) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	k, err := f.ReadAt(b, off)
	if errors.Is(err, io.EOF) && k == n {
		err = nil
	}
	return b[:k], err
}

func isEIO(err error) bool { return errors.Is(err, syscall.EIO) }
