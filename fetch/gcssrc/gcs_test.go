package gcssrc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
)

var model = map[string][]byte{
	"llama/config.json":               []byte(`{"hidden_size": 4096}`),
	"llama/model-00001.safetensors":   randBytes(1, 300_001),
	"llama/model-00002.safetensors":   randBytes(2, 70_000),
	"llama/sub/tokenizer.json":        []byte(`{"tok": true}`),
	"llama/sub/":                      {}, // "folder" placeholder
	"llama2/other.safetensors":        []byte("not under llama/"),
	"llama/a//b.bin":                  []byte("empty segment"),
	"llama/deep/er/still/weights.bin": randBytes(3, 4096),
}

func modelFake(t *testing.T) *fakeGCS {
	f := newFakeGCS(t)
	f.server.CreateBucketWithOpts(fakestoragebucket("models"))
	for k, v := range model {
		f.put("models", k, v)
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
	for _, repo := range []string{"gs://models/llama", "gs://models/llama/"} {
		m, err := New(entry(repo, nil, nil), emuOpts(fk.host)).List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"config.json", "deep/er/still/weights.bin", "model-00001.safetensors", "model-00002.safetensors", "sub/tokenizer.json"}
		if got := paths(m); !slices.Equal(got, want) {
			t.Fatalf("%s: paths\n got %q\nwant %q", repo, got, want)
		}
		if m.Kind != "gcs" || m.RepoID != repo || m.Revision != "" || m.Commit != "" || m.Volume != "m" || m.Resolved.Location() != time.UTC {
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
			if f.Version != strconv.FormatInt(fk.generation(t, "models", "llama/"+f.Path), 10) {
				t.Errorf("%s: version %q", f.Path, f.Version)
			}
		}
	}

	// JSON API reads (emulators) and XML API reads (what GCS itself gets).
	for _, xml := range []bool{false, true} {
		o := emuOpts(fk.host)
		o.xmlReads = xml
		src := New(entry("gs://models/llama", []string{"*.safetensors"}, nil), o)
		m, err := src.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f := m.Files[0]
		content := model["llama/"+f.Path]
		for _, r := range []struct{ off, n int64 }{{0, 1}, {0, f.Size}, {f.Size - 1, 1}, {12345, 65536}, {f.Size - 1000, 1000}} {
			p := make([]byte, r.n)
			if err := src.ReadRange(ctx, f, r.off, p); err != nil {
				t.Fatalf("xml=%v range %d+%d: %v", xml, r.off, r.n, err)
			}
			if sha256.Sum256(p) != sha256.Sum256(content[r.off:r.off+r.n]) {
				t.Errorf("xml=%v range %d+%d: bytes differ", xml, r.off, r.n)
			}
		}
		if err := src.ReadRange(ctx, f, f.Size-1, make([]byte, 2)); !fetch.IsPermanent(err) || !strings.Contains(err.Error(), "outside") {
			t.Errorf("past end: %v", err)
		}
	}
}

func TestPatterns(t *testing.T) {
	fk := modelFake(t)
	cases := []struct {
		allow, ignore, want []string
	}{
		{[]string{"*.json"}, nil, []string{"config.json", "sub/tokenizer.json"}},
		{nil, []string{"sub/", "deep/*", "*00002*"}, []string{"config.json", "model-00001.safetensors"}},
		{[]string{"*.safetensors"}, []string{"model-0000[1].safetensors"}, []string{"model-00002.safetensors"}},
	}
	for _, c := range cases {
		m, err := New(entry("gs://models/llama", c.allow, c.ignore), emuOpts(fk.host)).List(t.Context())
		if err != nil {
			t.Fatalf("allow %q ignore %q: %v", c.allow, c.ignore, err)
		}
		if got := paths(m); !slices.Equal(got, c.want) {
			t.Errorf("allow %q ignore %q: got %q want %q", c.allow, c.ignore, got, c.want)
		}
	}
	_, err := New(entry("gs://models/llama", []string{"*.gguf"}, []string{"*.md"}), emuOpts(fk.host)).List(t.Context())
	if !errors.Is(err, ErrNoMatchingFiles) || !fetch.IsPermanent(err) {
		t.Fatal(err)
	}
	for _, s := range []string{"model_cache[1] (gs://models/llama)", `bucket "models"`, `prefix "llama/"`, `["*.gguf"]`, `["*.md"]`, "(5 objects there)"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
}

func TestPagination(t *testing.T) {
	fk := newFakeGCS(t)
	fk.server.CreateBucketWithOpts(fakestoragebucket("b"))
	var want []string
	for i := range 11 {
		p := fmt.Sprintf("f%02d.bin", i)
		want = append(want, p)
		fk.put("b", "pre/"+p, []byte(p))
	}
	fk.put("b", "other/x.bin", []byte("x"))
	o := emuOpts(fk.host)
	o.PageSize = 3
	m, err := New(entry("gs://b/pre", nil, nil), o).List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := paths(m); !slices.Equal(got, want) {
		t.Errorf("got %q", got)
	}
	if n := fk.lists.Load(); n != 4 {
		t.Errorf("%d list pages, want 4", n)
	}
}

func TestGenerationPinned(t *testing.T) {
	fk := modelFake(t)
	src := New(entry("gs://models/llama", []string{"config.json"}, nil), emuOpts(fk.host))
	m, err := src.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // the fake's generations come from the clock
	fk.put("models", "llama/config.json", []byte(strings.ToUpper(string(model["llama/config.json"]))))
	if g := fk.generation(t, "models", "llama/config.json"); strconv.FormatInt(g, 10) == m.Files[0].Version {
		t.Fatalf("the fake kept generation %d", g)
	}
	o := emuOpts(fk.host)
	o.xmlReads = true
	p := make([]byte, 4)
	for _, src := range []*Source{src, New(entry("gs://models/llama", nil, nil), o)} {
		err = src.ReadRange(t.Context(), m.Files[0], 0, p)
		if !errors.Is(err, fetch.ErrChanged) || !fetch.IsPermanent(err) {
			t.Fatalf("got %v, want permanent ErrChanged", err)
		}
	}
	if string(p) != "\x00\x00\x00\x00" {
		t.Errorf("bytes of the new generation were copied into p: %q", p)
	}
	if !strings.Contains(err.Error(), `model_cache[1] (gs://models/llama): object "config.json" at gs://models/llama/config.json`) ||
		!strings.Contains(err.Error(), "changed") {
		t.Errorf("message: %v", err)
	}
}

func TestNoSuchBucketEmulated(t *testing.T) {
	fk := modelFake(t)
	_, err := New(entry("gs://nope/llama", nil, nil), emuOpts(fk.host)).List(t.Context())
	if !errors.Is(err, ErrNoSuchBucket) || !fetch.IsPermanent(err) || !strings.Contains(err.Error(), `bucket "nope" does not exist at the GCS emulator at `+fk.host) {
		t.Fatalf("got %v", err)
	}
}

func TestChecksumOf(t *testing.T) {
	data := []byte("123456789")
	crc := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)) // 0xe3069283
	md5sum := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 255}
	cases := []struct {
		attrs storage.ObjectAttrs
		want  fetch.Checksum
	}{
		{storage.ObjectAttrs{CRC32C: crc}, fetch.Checksum{Algo: fetch.AlgoCRC32C, Value: "e3069283"}},
		{storage.ObjectAttrs{CRC32C: 0x1f}, fetch.Checksum{Algo: fetch.AlgoCRC32C, Value: "0000001f"}},
		{storage.ObjectAttrs{CRC32C: crc, MD5: md5sum[:]}, fetch.Checksum{Algo: fetch.AlgoMD5, Value: "0102030405060708090a0b0c0d0e0fff"}},
	}
	for _, c := range cases {
		if got := checksumOf(&c.attrs); got != c.want {
			t.Errorf("%+v: got %v want %v", c.attrs, got, c.want)
		}
	}
}

// TestErrors drives each failure through a scripted JSON API endpoint.
func TestErrors(t *testing.T) {
	const gen = 1700000000000001
	file := fetch.File{Path: "w.bin", Size: 100, Version: strconv.Itoa(gen)}
	media := func(cr string, g int64, n int, body string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", cr)
			w.Header().Set("X-Goog-Generation", strconv.FormatInt(g, 10))
			w.Header().Set("Content-Length", strconv.Itoa(n))
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
		{"no such bucket", false, func(w http.ResponseWriter, r *http.Request) {
			gcsErr(w, 404, "notFound", "The specified bucket does not exist.")
		},
			ErrNoSuchBucket, true, []string{`bucket "b" does not exist`}},
		{"access denied", false, func(w http.ResponseWriter, r *http.Request) {
			gcsErr(w, 403, "forbidden", "Anonymous caller does not have storage.objects.list access")
		}, ErrAccessDenied, true, []string{"access denied using no credentials (anonymous): GCS says: Anonymous caller", "set the gcs_sa secret", "HTTP 403 forbidden"}},
		{"throttled", false, func(w http.ResponseWriter, r *http.Request) { gcsErr(w, 429, "rateLimitExceeded", "slow down") },
			ErrThrottled, false, []string{"throttled"}},
		{"server error", false, func(w http.ResponseWriter, r *http.Request) { gcsErr(w, 503, "backendError", "oops") },
			nil, false, []string{"failed, will retry", "HTTP 503"}},
		{"requester pays", false, func(w http.ResponseWriter, r *http.Request) {
			gcsErr(w, 400, "required", "Bucket is a requester pays bucket")
		},
			nil, true, []string{"refused by", "requester pays"}},
		{"generation gone", true, func(w http.ResponseWriter, r *http.Request) { gcsErr(w, 404, "notFound", "No such object") },
			fetch.ErrChanged, true, []string{`object "w.bin"`, "listed generation no longer exists"}},
		{"range not satisfiable", true, func(w http.ResponseWriter, r *http.Request) { gcsErr(w, 416, "invalid", "range") },
			fetch.ErrChanged, true, []string{"changed size"}},
		{"read denied", true, func(w http.ResponseWriter, r *http.Request) { gcsErr(w, 403, "forbidden", "no get") },
			ErrAccessDenied, true, []string{"access denied"}},
		{"size changed", true, media("bytes 0-9/101", gen, 10, "0123456789"),
			fetch.ErrChanged, true, []string{"101 bytes, 100 when listed"}},
		{"wrong offset", true, media("bytes 5-14/100", gen, 10, "0123456789"),
			ErrBadResponse, false, []string{"answer starts at 5"}},
		{"ok", true, media("bytes 0-9/100", gen, 10, "0123456789"), nil, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, srv := newScripted(t, c.handler)
			o := Options{Endpoint: srv.URL + "/storage/v1/", Anonymous: true, SecretName: "gcs_sa", Retry: fetch.RetryPolicy{Attempts: 1}}
			src := New(entry("gs://b/p", nil, nil), o)
			p := make([]byte, 10)
			var err error
			if c.read {
				err = src.ReadRange(t.Context(), file, 0, p)
			} else {
				_, err = src.List(t.Context())
			}
			if c.contains == nil {
				if err != nil || string(p) != "0123456789" {
					t.Fatalf("got %v, %q", err, p)
				}
				r := h.requests()[0]
				if r.URL.Query().Get("generation") != file.Version || r.Header.Get("Range") != "bytes=0-9" {
					t.Errorf("read sent %s Range %q", r.URL, r.Header.Get("Range"))
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
			if n := len(h.requests()); n != 1 {
				t.Errorf("%d requests, want 1 (the library must not retry)", n)
			}
		})
	}
}

// TestCutStream: the storage library resumes a ranged read whose body was
// cut, from the byte it reached and on the same generation (so versions
// cannot mix); when that fails too, the error is retryable.
func TestCutStream(t *testing.T) {
	const body = "0123456789"
	for _, resumeOK := range []bool{true, false} {
		var calls atomic.Int32
		h, srv := newScripted(t, func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) == 1 {
				w.Header().Set("Content-Range", "bytes 0-9/100")
				w.Header().Set("Content-Length", "10")
				w.WriteHeader(http.StatusPartialContent)
				w.Write([]byte(body[:5])) // then the connection drops
				return
			}
			if !resumeOK {
				gcsErr(w, 503, "backendError", "down")
				return
			}
			if r.Header.Get("Range") != "bytes=5-9" {
				gcsErr(w, 400, "invalid", "unexpected range "+r.Header.Get("Range"))
				return
			}
			w.Header().Set("Content-Range", "bytes 5-9/100")
			w.WriteHeader(http.StatusPartialContent)
			w.Write([]byte(body[5:]))
		})
		src := New(entry("gs://b/p", nil, nil), Options{Endpoint: srv.URL + "/storage/v1/", Anonymous: true})
		p := make([]byte, 10)
		err := src.ReadRange(t.Context(), fetch.File{Path: "w.bin", Size: 100, Version: "77"}, 0, p)
		if resumeOK {
			if err != nil || string(p) != body {
				t.Fatalf("resumed: %v, %q", err, p)
			}
		} else if err == nil || fetch.IsPermanent(err) || !strings.Contains(err.Error(), "reading the body of bytes 0-9") {
			t.Fatalf("resume failed: got %v, want a retryable body error", err)
		}
		for _, r := range h.requests() {
			if r.URL.Query().Get("generation") != "77" {
				t.Errorf("request %s is not pinned to generation 77", r.URL)
			}
		}
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
	src := New(entry("gs://b/p", nil, nil), Options{Endpoint: srv.URL + "/storage/v1/", Anonymous: true})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := src.ReadRange(ctx, fetch.File{Path: "w.bin", Size: 100, Version: "5"}, 0, make([]byte, 10))
	if !errors.Is(err, context.DeadlineExceeded) || fetch.IsPermanent(err) || time.Since(start) > 5*time.Second {
		t.Fatalf("got %v after %v", err, time.Since(start))
	}
}

// TestServiceAccountUsed: the key from the secret signs a token request to
// its token_uri, and the token goes to the storage endpoint; a refusal
// names the secret, never the key.
func TestServiceAccountUsed(t *testing.T) {
	h, srv := newScripted(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"access_token":"ya29.test-token","token_type":"Bearer","expires_in":3600}`)
			return
		}
		gcsErr(w, 403, "forbidden", "loader@p.iam.gserviceaccount.com does not have storage.objects.list access")
	})
	dir := t.TempDir()
	sa := serviceAccountJSON(t, srv.URL+"/token")
	if err := os.WriteFile(filepath.Join(dir, "gcs_sa"), []byte(sa), 0o600); err != nil {
		t.Fatal(err)
	}
	e := entry("gs://b/p", nil, nil)
	o, err := OptionsFromEnv(e, config.Secrets{Dir: dir, Getenv: func(string) string { return "" }}, t.TempDir(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	o.Endpoint, o.Retry = srv.URL+"/storage/v1/", fetch.RetryPolicy{Attempts: 1}
	_, err = New(e, o).List(t.Context())
	want := "access denied using secret gcs_sa (file " + filepath.Join(dir, "gcs_sa") + "): GCS says: loader@"
	if !errors.Is(err, ErrAccessDenied) || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
	if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), "kid0123456789") {
		t.Errorf("error leaks the key: %v", err)
	}
	var sawToken bool
	for _, r := range h.requests() {
		if strings.HasPrefix(r.URL.Path, "/storage/v1/") {
			sawToken = r.Header.Get("Authorization") == "Bearer ya29.test-token"
		}
	}
	if !sawToken {
		t.Errorf("the storage request did not carry the service account's token")
	}
}
