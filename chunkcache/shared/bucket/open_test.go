package bucket

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weightfs/weightfs/chunkcache/shared"
)

func TestOpenParses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	env := func(k string) string { return "" }
	for _, tc := range []struct {
		spec    string
		kind    string // "dir", "s3", "gs", or "" for an error
		str     string // the store's String()
		errWant string // in the error
	}{
		{dir, "dir", dir, ""},
		{"s3://fleet/org/acme", "s3", "s3://fleet/org/acme", ""},
		{"s3://fleet/org/acme/", "s3", "s3://fleet/org/acme", ""},
		{"s3://fleet", "s3", "s3://fleet", ""},
		{"s3://fleet/", "s3", "s3://fleet", ""},
		{"gs://fleet/org", "gs", "gs://fleet/org", ""},
		{"gs://my_bucket.example/a/b", "gs", "gs://my_bucket.example/a/b", ""},
		{"", "", "", "--shared-cache is empty"},
		{"s3://", "", "", "no bucket"},
		{"s3:///prefix", "", "", "no bucket"},
		{"gs://", "", "", "no bucket"},
		{"s3://fleet/../other", "", "", "'..' segment"},
		{"s3://fleet/a/../b", "", "", "'..' segment"},
		{"gs://fleet/a//b", "", "", "empty"},
		{"gs://fleet/./b", "", "", "'.'"},
		{"s3://..", "", "", "not a bucket name"},
		{"s3://bad bucket/p", "", "", "not a bucket name"},
		{"s3://fleet/a\nb", "", "", "control character"},
		{"relative/dir", "", "", "not an absolute directory"},
		{"file:///mnt/x", "", "", "unknown scheme"},
		{"S3://fleet/p", "", "", "unknown scheme"},
		{"gcs://fleet/p", "", "", "unknown scheme"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			b, err := Open(context.Background(), tc.spec, Options{Getenv: env})
			if tc.kind == "" {
				if err == nil {
					t.Fatalf("accepted, as %v", b)
				}
				msg := err.Error()
				if !strings.Contains(msg, tc.errWant) || !strings.Contains(msg, "--shared-cache") {
					t.Fatalf("error %q, want it to contain %q and name the flag", msg, tc.errWant)
				}
				if !strings.Contains(msg, "s3://bucket/prefix") || !strings.Contains(msg, "gs://bucket/prefix") || !strings.Contains(msg, "absolute directory") {
					t.Fatalf("error %q does not name the three accepted forms", msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kind string
			switch b.(type) {
			case *shared.Dir:
				kind = "dir"
			case *S3:
				kind = "s3"
			case *GCS:
				kind = "gs"
			}
			if kind != tc.kind || b.String() != tc.str {
				t.Fatalf("got %s %q, want %s %q", kind, b.String(), tc.kind, tc.str)
			}
		})
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("directory store: %v %v", st, err)
	}
}

// The environment's endpoint and region reach the client; Options.Endpoint
// wins over it; a credentials file is the store's key, and Secrets gives
// its secret for redaction; a bad one fails at Open without quoting it.
func TestOpenCredentialsAndEndpoint(t *testing.T) {
	f := newFakeS3(t, "fleet")
	dir := t.TempDir()
	good := filepath.Join(dir, "creds.json")
	if err := os.WriteFile(good, []byte(`{"access_key_id":"`+testKeyID+`","secret_access_key":"`+testSecret+`","region":"eu-west-1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"access_key_id":"`+testKeyID+`","secret_access_key":"has `+testSecret+` spaces"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	envWith := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	ctx := context.Background()

	// AWS_ENDPOINT_URL from the environment, keys from the file.
	b, err := Open(ctx, "s3://fleet/org", Options{CredentialsFile: good, Getenv: envWith(map[string]string{"AWS_ENDPOINT_URL": f.srv.URL})})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "x", [][]byte{[]byte("hello")}, true); err != nil {
		t.Fatalf("Put through the environment's endpoint: %v", err)
	}
	if got, err := read(t, b, "x"); err != nil || string(got) != "hello" {
		t.Fatalf("read back %q %v", got, err)
	}
	if s := Secrets(b); len(s) == 0 || s[0] != testSecret {
		t.Fatal("Secrets does not give the file's secret")
	}

	// Options.Endpoint wins over a wrong environment.
	b, err = Open(ctx, "s3://fleet/org", Options{CredentialsFile: good, Endpoint: f.srv.URL,
		Getenv: envWith(map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:1"})})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := read(t, b, "x"); err != nil || string(got) != "hello" {
		t.Fatalf("read through Options.Endpoint: %q %v", got, err)
	}

	for _, tc := range []struct {
		name string
		spec string
		o    Options
		want string
	}{
		{"bad file", "s3://fleet/org", Options{CredentialsFile: bad}, "whitespace"},
		{"missing file", "s3://fleet/org", Options{CredentialsFile: filepath.Join(dir, "nope")}, "no such file"},
		{"not a service account", "gs://fleet/org", Options{CredentialsFile: good}, "type"},
		{"bad region", "s3://fleet/org", Options{Getenv: envWith(map[string]string{"AWS_REGION": "Not A Region"})}, "AWS_REGION"},
		{"bad endpoint", "s3://fleet/org", Options{Getenv: envWith(map[string]string{"AWS_ENDPOINT_URL": "ftp://x"})}, "AWS_ENDPOINT_URL"},
		{"bad emulator", "gs://fleet/org", Options{Getenv: envWith(map[string]string{"STORAGE_EMULATOR_HOST": "ftp://"})}, "STORAGE_EMULATOR_HOST"},
		{"endpoint on gs", "gs://fleet/org", Options{Endpoint: "http://x"}, "s3://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.o.Getenv == nil {
				tc.o.Getenv = envWith(nil)
			}
			_, err := Open(ctx, tc.spec, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Fatalf("error quotes the secret: %v", err)
			}
		})
	}

	// STORAGE_EMULATOR_HOST reaches the GCS client.
	g := newFakeGCS(t, "fleet")
	b, err = Open(ctx, "gs://fleet/org", Options{Getenv: envWith(map[string]string{"STORAGE_EMULATOR_HOST": g.host})})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "x", [][]byte{[]byte("hello")}, true); err != nil {
		t.Fatalf("Put through STORAGE_EMULATOR_HOST: %v", err)
	}
	if len(Secrets(b)) != 0 {
		t.Fatal("secrets without a key")
	}
}

// slices reads and seeks like the concatenation it stands for.
func TestSlicesReader(t *testing.T) {
	data := [][]byte{[]byte("ab"), nil, []byte("cdef"), []byte("g")}
	s := newSlices(data)
	buf := make([]byte, 3)
	var got []byte
	for {
		n, err := s.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	if string(got) != "abcdefg" {
		t.Fatalf("read %q", got)
	}
	for _, tc := range []struct {
		off    int64
		whence int
		want   string
	}{{3, 0, "defg"}, {-2, 2, "fg"}, {0, 0, "abcdefg"}, {10, 0, ""}} {
		if _, err := s.Seek(tc.off, tc.whence); err != nil {
			t.Fatal(err)
		}
		rest := make([]byte, 16)
		n, _ := s.Read(rest)
		if string(rest[:n]) != tc.want {
			t.Fatalf("after Seek(%d, %d): %q, want %q", tc.off, tc.whence, rest[:n], tc.want)
		}
	}
	if _, err := s.Seek(-1, 0); err == nil {
		t.Fatal("seek before the start accepted")
	}
}

// Whatever --shared-cache says, parsing never panics, and a bucket it
// accepts keys every name under its prefix, never outside it.
func FuzzParseBucketSpec(f *testing.F) {
	for _, s := range []string{"s3://b/p", "gs://b/a/b/", "s3://b", "s3://../x", "gs://b//", "s3://b/p/../..", "s3://b/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		for _, scheme := range []string{"s3", "gs"} {
			if !strings.HasPrefix(spec, scheme+"://") {
				continue
			}
			p, err := split(spec, scheme)
			if err != nil {
				continue
			}
			if p.bucket == "" || strings.Contains(p.bucket, "/") {
				t.Fatalf("%q: bucket %q", spec, p.bucket)
			}
			for _, seg := range strings.Split(p.prefix, "/") {
				if p.prefix != "" && (seg == "" || seg == "." || seg == "..") {
					t.Fatalf("%q: prefix %q", spec, p.prefix)
				}
			}
			k := p.key("chunks/ab/x")
			if n, ok := p.name(k); !ok || n != "chunks/ab/x" {
				t.Fatalf("%q: key %q names %q", spec, k, n)
			}
		}
	})
}
