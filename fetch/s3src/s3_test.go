package s3src

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weightfs/weightfs/fetch"
)

// model is the content of the fake bucket "models".
var model = map[string][]byte{
	"llama/config.json":                 []byte(`{"hidden_size": 4096}`),
	"llama/model-00001.safetensors":     randBytes(1, 300_001),
	"llama/model-00002.safetensors":     randBytes(2, 70_000),
	"llama/sub/tokenizer.json":          []byte(`{"tok": true}`),
	"llama/README.md":                   []byte("# llama\n"),
	"llama/sub/":                        nil, // console "folder" marker
	"llama2/other.safetensors":          []byte("not under llama/"),
	"llama/a//b.bin":                    []byte("empty segment"),
	"unrelated/llama/config.json":       []byte("{}"),
	"llama/deep/er/still/weights.bin":   randBytes(3, 4096),
	"llama/.cache/huggingface/lock.txt": []byte("x"),
}

func modelFake(t *testing.T) *fakeS3 {
	f := newFakeS3(t)
	f.bucket(t, "models")
	for k, v := range model {
		f.put(t, "models", k, v)
	}
	return f
}

func paths(m *fetch.Manifest) []string {
	var out []string
	for _, f := range m.Files {
		out = append(out, f.Path)
	}
	return out
}

func TestListAndReadRanges(t *testing.T) {
	fk := modelFake(t)
	ctx := t.Context()
	for _, repo := range []string{"s3://models/llama", "s3://models/llama/"} {
		src := New(entry(repo, nil, nil), testOpts(fk.srv.URL))
		m, err := src.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{".cache/huggingface/lock.txt", "README.md", "config.json", "deep/er/still/weights.bin",
			"model-00001.safetensors", "model-00002.safetensors", "sub/tokenizer.json"}
		if got := paths(m); !slices.Equal(got, want) {
			t.Fatalf("%s: paths\n got %q\nwant %q", repo, got, want)
		}
		if m.Kind != "s3" || m.RepoID != repo || m.Revision != "" || m.Commit != "" || m.Volume != "m" || m.Resolved.Location() != time.UTC {
			t.Errorf("manifest header: %+v", m)
		}
		for _, f := range m.Files {
			content := model["llama/"+f.Path]
			if f.Size != int64(len(content)) {
				t.Errorf("%s: size %d, want %d", f.Path, f.Size, len(content))
			}
			if want := (fetch.Checksum{Algo: fetch.AlgoMD5, Value: md5hex(content)}); f.Checksum != want {
				t.Errorf("%s: checksum %v, want %v", f.Path, f.Checksum, want)
			}
			if normETag(f.Version) != md5hex(content) || f.Extra[ExtraRegion] != "us-east-1" {
				t.Errorf("%s: version %q extra %v", f.Path, f.Version, f.Extra)
			}
		}
	}

	src := New(entry("s3://models/llama", []string{"*.safetensors"}, nil), testOpts(fk.srv.URL))
	m, err := src.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := m.Files[0]
	content := model["llama/"+f.Path]
	for _, r := range []struct{ off, n int64 }{{0, 1}, {0, f.Size}, {f.Size - 1, 1}, {12345, 65536}, {f.Size - 1000, 1000}} {
		p := make([]byte, r.n)
		if err := src.ReadRange(ctx, f, r.off, p); err != nil {
			t.Fatalf("range %d+%d: %v", r.off, r.n, err)
		}
		if sha256.Sum256(p) != sha256.Sum256(content[r.off:r.off+r.n]) {
			t.Errorf("range %d+%d: bytes differ", r.off, r.n)
		}
	}
	// Outside the file: permanent, nothing sent.
	err = src.ReadRange(ctx, f, f.Size-1, make([]byte, 2))
	if !fetch.IsPermanent(err) || !strings.Contains(err.Error(), "outside") {
		t.Errorf("past end: %v", err)
	}
	// Requests carried If-Match, path-style addressing and a SigV4 signature.
	fk.mu.Lock()
	defer fk.mu.Unlock()
	var gets int
	for _, r := range fk.requests {
		if r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "" {
			gets++
			if r.Header.Get("If-Match") != f.Version || !strings.HasPrefix(r.URL.Path, "/models/llama/") ||
				!strings.Contains(r.Header.Get("Authorization"), "Credential="+testKeyID+"/") {
				t.Errorf("GET %s: If-Match %q Authorization %q", r.URL.Path, r.Header.Get("If-Match"), r.Header.Get("Authorization"))
			}
		}
	}
	if gets != 5 {
		t.Errorf("%d GETs, want 5", gets)
	}
}

func TestPatterns(t *testing.T) {
	fk := modelFake(t)
	cases := []struct {
		allow, ignore []string
		want          []string
	}{
		{[]string{"*.json"}, nil, []string{"config.json", "sub/tokenizer.json"}},
		{nil, []string{"sub/", ".cache/", "*.md", "deep/*"}, []string{"config.json", "model-00001.safetensors", "model-00002.safetensors"}},
		{[]string{"model-0000[2-9].safetensors", "README.md"}, nil, []string{"README.md", "model-00002.safetensors"}},
		{[]string{"*.safetensors"}, []string{"*00001*"}, []string{"model-00002.safetensors"}},
	}
	for _, c := range cases {
		m, err := New(entry("s3://models/llama", c.allow, c.ignore), testOpts(fk.srv.URL)).List(t.Context())
		if err != nil {
			t.Fatalf("allow %q ignore %q: %v", c.allow, c.ignore, err)
		}
		if got := paths(m); !slices.Equal(got, c.want) {
			t.Errorf("allow %q ignore %q: got %q want %q", c.allow, c.ignore, got, c.want)
		}
	}

	for _, repo := range []string{"s3://models/llama", "s3://models/nothing-here"} {
		_, err := New(entry(repo, []string{"*.gguf"}, []string{"*.md"}), testOpts(fk.srv.URL)).List(t.Context())
		if !errors.Is(err, ErrNoMatchingFiles) || !fetch.IsPermanent(err) {
			t.Fatalf("%s: %v", repo, err)
		}
		for _, s := range []string{"model_cache[0] (" + repo + ")", `bucket "models"`, `prefix "` + strings.TrimPrefix(repo, "s3://models/") + `/"`, `["*.gguf"]`, `["*.md"]`} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q lacks %q", repo, err, s)
			}
		}
	}
}

func TestPagination(t *testing.T) {
	fk := newFakeS3(t)
	fk.bucket(t, "b")
	var want []string
	for i := range 23 {
		p := fmt.Sprintf("f%02d.bin", i)
		want = append(want, p)
		fk.put(t, "b", "pre/"+p, []byte(p))
	}
	fk.put(t, "b", "other/x.bin", []byte("x"))
	o := testOpts(fk.srv.URL)
	o.PageSize = 5
	m, err := New(entry("s3://b/pre", nil, nil), o).List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := paths(m); !slices.Equal(got, want) {
		t.Errorf("got %q", got)
	}
	if n := fk.lists.Load(); n != 5 {
		t.Errorf("%d list pages, want 5", n)
	}
}

func TestObjectReplacedAfterListing(t *testing.T) {
	fk := modelFake(t)
	src := New(entry("s3://models/llama", []string{"config.json"}, nil), testOpts(fk.srv.URL))
	m, err := src.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Same size, other bytes: only the version check can tell.
	old := model["llama/config.json"]
	fk.put(t, "models", "llama/config.json", bytes.ToUpper(old))
	p := make([]byte, 4)
	err = src.ReadRange(t.Context(), m.Files[0], 0, p)
	if !errors.Is(err, fetch.ErrChanged) || !fetch.IsPermanent(err) {
		t.Fatalf("got %v, want permanent ErrChanged", err)
	}
	if !strings.Contains(err.Error(), `object "config.json"`) || !strings.Contains(err.Error(), "changed since it was listed") {
		t.Errorf("message: %v", err)
	}
	if !bytes.Equal(p, make([]byte, 4)) {
		t.Errorf("bytes of the new version were copied into p: %q", p)
	}
}

func TestNoSuchBucketEmulated(t *testing.T) {
	fk := modelFake(t)
	_, err := New(entry("s3://nope/llama", nil, nil), testOpts(fk.srv.URL)).List(t.Context())
	if !errors.Is(err, ErrNoSuchBucket) || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), `bucket "nope" does not exist`) {
		t.Fatalf("got %v", err)
	}
	var st *fetch.StatusError
	if !errors.As(err, &st) || st.Status != 404 || st.Code != "NoSuchBucket" {
		t.Errorf("status error: %+v", st)
	}
}

// TestErrors drives each S3 failure through List or ReadRange with a
// scripted endpoint and checks the classification and the message.
func TestErrors(t *testing.T) {
	file := fetch.File{Path: "w.bin", Size: 100, Version: `"0123456789abcdef0123456789abcdef"`}
	partial := func(cr, etag string, n int, body string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", cr)
			w.Header().Set("ETag", etag)
			w.Header().Set("Content-Length", fmt.Sprint(n))
			w.WriteHeader(http.StatusPartialContent)
			w.Write([]byte(body))
		}
	}
	cases := []struct {
		name      string
		read      bool
		handler   func(w http.ResponseWriter, r *http.Request)
		kind      error
		permanent bool
		contains  []string
	}{
		{"no such bucket", false, func(w http.ResponseWriter, r *http.Request) { s3Err(w, r, 404, "NoSuchBucket") },
			ErrNoSuchBucket, true, []string{`bucket "b" does not exist`, "HTTP 404 NoSuchBucket"}},
		{"access denied", false, func(w http.ResponseWriter, r *http.Request) { s3Err(w, r, 403, "AccessDenied") },
			ErrAccessDenied, true, []string{"access denied using secret aws_creds (file /secrets/aws_creds)", "s3:ListBucket", "HTTP 403 AccessDenied"}},
		{"bad key id", false, func(w http.ResponseWriter, r *http.Request) { s3Err(w, r, 403, "InvalidAccessKeyId") },
			ErrAccessDenied, true, []string{"access denied using secret aws_creds"}},
		{"bad signature", true, func(w http.ResponseWriter, r *http.Request) { s3Err(w, r, 403, "SignatureDoesNotMatch") },
			ErrAccessDenied, true, []string{`object "w.bin"`, "access denied"}},
		{"wrong region", false, func(w http.ResponseWriter, r *http.Request) {
			s3Err(w, r, 301, "PermanentRedirect", "X-Amz-Bucket-Region", "eu-west-1")
		}, ErrWrongRegion, true, []string{"is in region eu-west-1 but region us-east-1 was used (from AWS_REGION)", "AWS_REGION=eu-west-1"}},
		{"slow down", false, func(w http.ResponseWriter, r *http.Request) { s3Err(w, r, 503, "SlowDown") },
			ErrThrottled, false, []string{"throttled"}},
		{"internal error", true, func(w http.ResponseWriter, r *http.Request) { s3Err(w, r, 500, "InternalError") },
			nil, false, []string{"failed, will retry", "HTTP 500 InternalError"}},
		{"precondition failed", true, func(w http.ResponseWriter, r *http.Request) { s3Err(w, r, 412, "PreconditionFailed") },
			fetch.ErrChanged, true, []string{`model_cache[0] (s3://b/p): object "w.bin" at s3://b/p/w.bin`, "changed since it was listed"}},
		{"deleted", true, func(w http.ResponseWriter, r *http.Request) { s3Err(w, r, 404, "NoSuchKey") },
			fetch.ErrChanged, true, []string{"deleted since it was listed"}},
		{"range not satisfiable", true, func(w http.ResponseWriter, r *http.Request) { s3Err(w, r, 416, "InvalidRange") },
			fetch.ErrChanged, true, []string{"changed size"}},
		{"other 4xx", true, func(w http.ResponseWriter, r *http.Request) { s3Err(w, r, 400, "InvalidRequest") },
			nil, true, []string{"refused by"}},
		{"wrong range", true, partial("bytes 10-19/100", file.Version, 10, "0123456789"),
			ErrBadResponse, false, []string{`got Content-Range "bytes 10-19/100"`}},
		{"size changed", true, partial("bytes 0-9/101", file.Version, 10, "0123456789"),
			fetch.ErrChanged, true, []string{"101 bytes now, 100 when listed"}},
		{"etag changed, If-Match ignored", true, partial("bytes 0-9/100", `"ffffffffffffffffffffffffffffffff"`, 10, "0123456789"),
			fetch.ErrChanged, true, []string{"changed since it was listed"}},
		{"short body", true, partial("bytes 0-9/100", file.Version, 10, "01234"),
			ErrBadResponse, false, []string{"reading the body", "unexpected EOF"}},
		{"ok", true, partial("bytes 0-9/100", file.Version, 10, "0123456789"), nil, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, srv := newScripted(t, c.handler)
			src := New(entry("s3://b/p", nil, nil), testOpts(srv.URL))
			var err error
			p := make([]byte, 10)
			if c.read {
				err = src.ReadRange(t.Context(), file, 0, p)
			} else {
				_, err = src.List(t.Context())
			}
			if c.contains == nil {
				if err != nil || string(p) != "0123456789" {
					t.Fatalf("got %v, %q", err, p)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if c.kind != nil && !errors.Is(err, c.kind) {
				t.Errorf("errors.Is(%v) false for %v", c.kind, err)
			}
			if fetch.IsPermanent(err) != c.permanent {
				t.Errorf("permanent = %v, want %v: %v", fetch.IsPermanent(err), c.permanent, err)
			}
			for _, s := range c.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), testKeyID) {
				t.Errorf("error leaks a credential: %v", err)
			}
		})
	}
}

func TestReadHonoursContext(t *testing.T) {
	release := make(chan struct{})
	_, srv := newScripted(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	src := New(entry("s3://b/p", nil, nil), testOpts(srv.URL))
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := src.ReadRange(ctx, fetch.File{Path: "w.bin", Size: 100, Version: `"x"`}, 0, make([]byte, 10))
	if !errors.Is(err, context.DeadlineExceeded) || fetch.IsPermanent(err) || time.Since(start) > 5*time.Second {
		t.Fatalf("got %v after %v", err, time.Since(start))
	}
}

func TestRegionDiscoveryAndChecksums(t *testing.T) {
	content := []byte("weights weights weights")
	sum := sha256.Sum256(content)
	h, srv := newScripted(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodHead && r.URL.Path == "/b":
			w.Header().Set("X-Amz-Bucket-Region", "eu-central-1")
		case r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2":
			listXML(w,
				contentsXML("p/a.bin", len(content), md5hex(content), "<ChecksumAlgorithm>SHA256</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType>"),
				contentsXML("p/b.bin", 5, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-3", "<ChecksumAlgorithm>SHA256</ChecksumAlgorithm><ChecksumType>COMPOSITE</ChecksumType>"),
				contentsXML("p/c.bin", 5, "cccccccccccccccccccccccccccccccc", ""),
				contentsXML("p/d.bin", 5, "dddddddddddddddddddddddddddddddd", ""),
				contentsXML("p/e.bin", 5, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", ""))
		case r.Method == http.MethodHead && r.URL.Path == "/b/p/c.bin":
			w.Header().Set("X-Amz-Server-Side-Encryption", "aws:kms")
		case r.Method == http.MethodHead && r.URL.Path == "/b/p/d.bin":
			s3Err(w, r, 500, "InternalError")
		case r.Method == http.MethodHead && r.URL.Path == "/b/p/e.bin":
			w.Header().Set("X-Amz-Server-Side-Encryption", "AES256")
		case r.Method == http.MethodHead && r.URL.Path == "/b/p/a.bin":
			if r.Header.Get("X-Amz-Checksum-Mode") != "ENABLED" || r.Header.Get("If-Match") == "" {
				s3Err(w, r, 400, "InvalidRequest")
				return
			}
			w.Header().Set("X-Amz-Checksum-Sha256", base64.StdEncoding.EncodeToString(sum[:]))
			w.Header().Set("X-Amz-Checksum-Type", "FULL_OBJECT")
		default:
			s3Err(w, r, 400, "InvalidRequest")
		}
	})
	o := testOpts(srv.URL)
	o.Region = ""
	m, err := New(entry("s3://b/p", nil, nil), o).List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := (fetch.Checksum{Algo: fetch.AlgoSHA256, Value: fmt.Sprintf("%x", sum)}); m.Files[0].Checksum != want {
		t.Errorf("a.bin checksum %v, want %v", m.Files[0].Checksum, want)
	}
	// b: multipart; c: SSE-KMS (the ETag is no MD5); d: HEAD failed.
	for i, want := range []fetch.Checksum{1: {}, 2: {}, 3: {}, 4: {Algo: fetch.AlgoMD5, Value: "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"}} {
		if i > 0 && m.Files[i].Checksum != want {
			t.Errorf("%s checksum %v, want %v", m.Files[i].Path, m.Files[i].Checksum, want)
		}
	}
	var heads int
	for _, r := range h.requests() {
		if r.Method == http.MethodHead && r.URL.Path != "/b" {
			heads++
		}
	}
	if heads != 4 { // a, c, d, e: not the multipart b
		t.Errorf("%d HeadObject calls, want 4", heads)
	}
	if m.Files[0].Extra[ExtraRegion] != "eu-central-1" {
		t.Errorf("region %v", m.Files[0].Extra)
	}
	for _, r := range h.requests() {
		if r.Method == http.MethodGet && !strings.Contains(r.Header.Get("Authorization"), "/eu-central-1/s3/aws4_request") {
			t.Errorf("list signed for the wrong region: %s", r.Header.Get("Authorization"))
		}
	}
}

// TestDefaultChain: with no static keys the SDK chain is used; when it finds
// nothing, requests go out unsigned and a refusal says so.
func TestDefaultChain(t *testing.T) {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	h, srv := newScripted(t, func(w http.ResponseWriter, r *http.Request) { s3Err(w, r, 403, "AccessDenied") })
	o := testOpts(srv.URL)
	o.Credentials = nil
	_, err := New(entry("s3://b/p", nil, nil), o).List(t.Context())
	if !errors.Is(err, ErrAccessDenied) || !strings.Contains(err.Error(), "using no credentials (the default AWS credential chain found none)") {
		t.Fatalf("anonymous: %v", err)
	}
	for _, r := range h.requests() {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("anonymous request was signed")
		}
	}

	t.Setenv("AWS_ACCESS_KEY_ID", testKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
	_, err = New(entry("s3://b/p", nil, nil), o).List(t.Context())
	if !errors.Is(err, ErrAccessDenied) || !strings.Contains(err.Error(), "using the default AWS credential chain") ||
		strings.Contains(err.Error(), testSecret) {
		t.Fatalf("env keys: %v", err)
	}
}
