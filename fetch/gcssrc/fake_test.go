package gcssrc

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
)

// fakeGCS is fake-gcs-server's handler behind our own httptest server, so
// requests can be counted; sources reach it as STORAGE_EMULATOR_HOST.
type fakeGCS struct {
	server *fakestorage.Server
	srv    *httptest.Server
	host   string // host:port, the STORAGE_EMULATOR_HOST value
	lists  atomic.Int32
}

func newFakeGCS(t *testing.T) *fakeGCS {
	t.Helper()
	server, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true,
		PublicHost: "127.0.0.1"}) // XML reads arrive at 127.0.0.1:port/bucket/object
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(server.Stop)
	f := &fakeGCS{server: server}
	h := server.HTTPHandler()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/o") {
			f.lists.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	f.host = strings.TrimPrefix(f.srv.URL, "http://")
	return f
}

func (f *fakeGCS) put(bucket, name string, data []byte) {
	f.server.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: name}, Content: data})
}

func (f *fakeGCS) generation(t *testing.T, bucket, name string) int64 {
	t.Helper()
	o, err := f.server.GetObject(bucket, name)
	if err != nil {
		t.Fatal(err)
	}
	return o.Generation
}

func entry(repo string, allow, ignore []string) config.Entry {
	return config.Entry{Index: 1, RepoID: repo, Kind: config.KindGCS, UseVolume: true, VolumeFolder: "m",
		AllowPatterns: allow, IgnorePatterns: ignore, SecretName: "gcs_sa"}
}

func emuOpts(host string) Options {
	return Options{Emulator: host, SecretName: "gcs_sa", Retry: fetch.RetryPolicy{Attempts: 1}}
}

func randBytes(seed uint64, n int) []byte {
	r := mrand.New(mrand.NewPCG(seed, ^seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

var (
	keyOnce sync.Once
	keyPEM  string
)

// testKeyPEM is a real (small, test-only) RSA key, so the auth library
// accepts the service account and signs with it.
func testKeyPEM(t *testing.T) string {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	})
	return keyPEM
}

// serviceAccountJSON is a key file; tokenURI is where tokens are fetched.
func serviceAccountJSON(t *testing.T, tokenURI string, drop ...string) string {
	m := map[string]any{
		"type": "service_account", "project_id": "p", "private_key_id": "kid0123456789",
		"private_key": testKeyPEM(t), "client_email": "loader@p.iam.gserviceaccount.com",
		"client_id": "1", "token_uri": tokenURI,
	}
	for _, k := range drop {
		delete(m, k)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// scripted serves fn and records requests (headers and URL only).
type scripted struct {
	mu   sync.Mutex
	seen []*http.Request // GUARDED_BY(mu)
}

func newScripted(t *testing.T, fn func(w http.ResponseWriter, r *http.Request)) (*scripted, *httptest.Server) {
	s := &scripted{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.Clone(r.Context()))
		s.mu.Unlock()
		fn(w, r)
	}))
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *scripted) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.seen...)
}

// gcsErr writes a JSON API error.
func gcsErr(w http.ResponseWriter, status int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%d,"message":%q,"errors":[{"reason":%q,"message":%q}]}}`, status, msg, reason, msg)
}

func fakestoragebucket(name string) fakestorage.CreateBucketOpts {
	return fakestorage.CreateBucketOpts{Name: name}
}
