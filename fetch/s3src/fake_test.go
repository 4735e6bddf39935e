package s3src

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
)

// Test credentials: the secret must never show up in an error or a log.
const (
	testKeyID  = "AKIATESTKEYID0000001"
	testSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzzSECRET"
)

// fakeS3 is gofakes3 (in-memory) behind httptest, with a request log.
type fakeS3 struct {
	backend *s3mem.Backend
	srv     *httptest.Server

	mu       sync.Mutex
	requests []*http.Request // GUARDED_BY(mu); headers and URL only
	lists    atomic.Int32
}

func newFakeS3(t *testing.T) *fakeS3 {
	t.Helper()
	f := &fakeS3{backend: s3mem.New()}
	faker := gofakes3.New(f.backend, gofakes3.WithLogger(gofakes3.DiscardLog()))
	h := faker.Server()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Clone(r.Context()))
		f.mu.Unlock()
		if r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2" {
			f.lists.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeS3) bucket(t *testing.T, name string) {
	t.Helper()
	if err := f.backend.CreateBucket(name); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeS3) put(t *testing.T, bucket, key string, data []byte) {
	t.Helper()
	if _, err := f.backend.PutObject(bucket, key, map[string]string{}, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
}

// entry is an s3 model_cache entry.
func entry(repo string, allow, ignore []string) config.Entry {
	return config.Entry{Index: 0, RepoID: repo, Kind: config.KindS3, UseVolume: true, VolumeFolder: "m",
		AllowPatterns: allow, IgnorePatterns: ignore, SecretName: "aws_creds"}
}

// testOpts points a Source at endpoint with static credentials and no retries.
func testOpts(endpoint string) Options {
	return Options{
		Credentials:  &Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret, From: "secret aws_creds (file /secrets/aws_creds)"},
		Region:       "us-east-1",
		RegionFrom:   "AWS_REGION",
		Endpoint:     endpoint,
		EndpointFrom: "AWS_ENDPOINT_URL",
		SecretName:   "aws_creds",
		Retry:        fetch.RetryPolicy{Attempts: 1},
	}
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
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

// s3Handler is a scripted S3 endpoint for answers gofakes3 cannot give:
// errors, checksums, broken ranges. It records the requests it saw.
type s3Handler struct {
	mu   sync.Mutex
	seen []*http.Request // GUARDED_BY(mu)
	fn   func(w http.ResponseWriter, r *http.Request)
}

func newScripted(t *testing.T, fn func(w http.ResponseWriter, r *http.Request)) (*s3Handler, *httptest.Server) {
	h := &s3Handler{fn: fn}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.seen = append(h.seen, r.Clone(r.Context()))
		h.mu.Unlock()
		fn(w, r)
	}))
	t.Cleanup(srv.Close)
	return h, srv
}

func (h *s3Handler) requests() []*http.Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*http.Request(nil), h.seen...)
}

// s3Err writes an S3 XML error document.
func s3Err(w http.ResponseWriter, r *http.Request, status int, code string, hdr ...string) {
	for i := 0; i+1 < len(hdr); i += 2 {
		w.Header().Set(hdr[i], hdr[i+1])
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>scripted</Message><RequestId>R1</RequestId></Error>`, code)
	}
}

// listXML answers ListObjectsV2 with the given <Contents> bodies.
func listXML(w http.ResponseWriter, contents ...string) {
	w.Header().Set("Content-Type", "application/xml")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><KeyCount>%d</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>%s</ListBucketResult>`,
		len(contents), strings.Join(contents, ""))
}

func contentsXML(key string, size int, etag, extra string) string {
	return fmt.Sprintf(`<Contents><Key>%s</Key><Size>%d</Size><ETag>&quot;%s&quot;</ETag>%s</Contents>`, key, size, etag, extra)
}
