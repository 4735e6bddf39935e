package bucket

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/fetch/s3src"
)

const (
	testKeyID  = "AKIATESTKEYID0000001"
	testSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzzSECRET"
)

// fakeS3 is gofakes3 (in memory) behind httptest, counting conditional PUTs.
type fakeS3 struct {
	backend     *s3mem.Backend
	srv         *httptest.Server
	conditional atomic.Int64
}

func newFakeS3(t *testing.T, buckets ...string) *fakeS3 {
	t.Helper()
	f := &fakeS3{backend: s3mem.New()}
	h := gofakes3.New(f.backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.Header.Get("If-None-Match") == "*" {
			f.conditional.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	for _, b := range buckets {
		if err := f.backend.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func s3Opts(endpoint string) s3src.Options {
	return s3src.Options{
		Credentials: &s3src.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret, From: "test"},
		Region:      "us-east-1", RegionFrom: "test",
		Endpoint: endpoint, EndpointFrom: "test",
		PageSize: 2, // List pages
	}
}

func newTestS3(t *testing.T, f *fakeS3, bucket, prefix string) *S3 {
	t.Helper()
	s, err := NewS3(bucket, prefix, s3Opts(f.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestS3RoundTrip(t *testing.T) {
	f := newFakeS3(t, "fleet")
	s := newTestS3(t, f, "fleet", "org/acme")
	testRoundTrip(t, s, true)
	if f.conditional.Load() == 0 {
		t.Fatal("no PUT carried If-None-Match: *")
	}
	// Every name lives under the prefix: nothing outside it was written,
	// and a store with another prefix sees none of it.
	var outside []string
	objs, err := f.backend.ListBucket("fleet", nil, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs.Contents {
		if !strings.HasPrefix(o.Key, "org/acme/") {
			outside = append(outside, o.Key)
		}
	}
	if len(outside) > 0 {
		t.Fatalf("objects outside the prefix: %q", outside)
	}
	other := newTestS3(t, f, "fleet", "org/acme2")
	if got := names(t, other, ""); len(got) != 0 {
		t.Fatalf("another prefix lists %q", got)
	}
	if s.String() != "s3://fleet/org/acme" {
		t.Fatalf("String() = %q", s.String())
	}
}

func TestS3NoPrefix(t *testing.T) {
	f := newFakeS3(t, "fleet")
	testRoundTrip(t, newTestS3(t, f, "fleet", ""), true)
}

func TestS3RacingTiersFetchOnce(t *testing.T) {
	f := newFakeS3(t, "fleet")
	testRacingTiers(t, newTestS3(t, f, "fleet", "org/acme"))
}

// Errors of the store map to the kinds the tier acts on, and never carry
// the secret.
func TestS3Errors(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		op     string
		want   error
	}{
		{412, "PreconditionFailed", "put", shared.ErrExists},
		{409, "ConditionalRequestConflict", "put", shared.ErrExists},
		{507, "InsufficientStorage", "put", shared.ErrFull},
		{400, "EntityTooLarge", "put", shared.ErrFull},
		{403, "QuotaExceeded", "put", shared.ErrFull},
		{403, "AccessDenied", "put", shared.ErrReadOnly},
		{404, "NoSuchKey", "open", shared.ErrNotFound},
		{404, "NoSuchKey", "delete", nil},
		{404, "NoSuchBucket", "open", errOther},
		{403, "AccessDenied", "open", errOther},
		{500, "InternalError", "open", errOther},
		{503, "SlowDown", "put", errOther},
	} {
		t.Run(fmt.Sprintf("%s-%d-%s", tc.op, tc.status, tc.code), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(tc.status)
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>scripted</Message></Error>`, tc.code)
			}))
			defer srv.Close()
			s, err := NewS3("b", "p", s3Opts(srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			switch tc.op {
			case "put":
				err = s.Put(ctx, "x", [][]byte{[]byte("data")}, true)
			case "open":
				_, _, err = s.Open(ctx, "x")
			case "delete":
				err = s.Delete(ctx, "x")
			}
			checkKind(t, err, tc.want)
			if err != nil && strings.Contains(err.Error(), testSecret) {
				t.Fatalf("error leaks the secret: %v", err)
			}
		})
	}
}

// errOther is an error of none of the shared kinds.
var errOther = errors.New("other")

func checkKind(t *testing.T, err, want error) {
	t.Helper()
	kinds := []error{shared.ErrExists, shared.ErrFull, shared.ErrReadOnly, shared.ErrNotFound}
	switch {
	case want == nil:
		if err != nil {
			t.Fatalf("err %v, want none", err)
		}
	case want == errOther:
		if err == nil {
			t.Fatal("no error")
		}
		for _, k := range kinds {
			if errors.Is(err, k) {
				t.Fatalf("err %v is %v, want none of the kinds", err, k)
			}
		}
	default:
		if !errors.Is(err, want) {
			t.Fatalf("err %v, want %v", err, want)
		}
	}
}

// What a hostile or broken server sends never panics or allocates by its
// word: no Content-Length, a negative size, a listing that never ends.
func TestS3HostileServer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		op      string
	}{
		{"no content length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Transfer-Encoding", "chunked")
			w.(http.Flusher).Flush()
			w.Write([]byte("abc"))
		}, "open"},
		{"endless listing", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/xml")
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><IsTruncated>true</IsTruncated><NextContinuationToken>same</NextContinuationToken><Contents><Key>p/chunks/x</Key><Size>-5</Size></Contents><Contents><Key>elsewhere/x</Key><Size>1</Size></Contents></ListBucketResult>`)
		}, "list"},
		{"garbage", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(500)
			w.Write([]byte("<<<\x00\xff"))
		}, "list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			s, err := NewS3("b", "p", s3Opts(srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*1e9)
			defer cancel()
			switch tc.op {
			case "open":
				r, size, err := s.Open(ctx, "x")
				if err == nil {
					r.Close()
					t.Fatalf("Open accepted a body of unknown size (%d)", size)
				}
			case "list":
				var got []shared.BlobInfo
				err := s.List(ctx, "chunks/", func(bi shared.BlobInfo) error { got = append(got, bi); return nil })
				if err == nil {
					t.Fatal("no error")
				}
				for _, bi := range got {
					if bi.Name != "chunks/x" || bi.Size < 0 {
						t.Fatalf("listed %+v", bi)
					}
				}
			}
		})
	}
}

// A cancelled or expired ctx ends every call.
func TestS3HonoursContext(t *testing.T) {
	url := hungServer(t)
	s, err := NewS3("b", "p", s3Opts(url))
	if err != nil {
		t.Fatal(err)
	}
	testHonoursContext(t, s)
}

// A store that pages forever with fresh tokens, or sends a page larger
// than any it should, is cut off with an error.
func TestS3ListBounded(t *testing.T) {
	defer func(n int64) { maxPages = n }(maxPages)
	maxPages = 5
	var pages atomic.Int64
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"fresh tokens forever", func(w http.ResponseWriter, r *http.Request) {
			n := pages.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><IsTruncated>true</IsTruncated><NextContinuationToken>t%d</NextContinuationToken></ListBucketResult>`, n)
		}, "past any bound"},
		{"huge page", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/xml")
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>`)
			pad := strings.Repeat("x", 1<<20)
			for i := 0; i < 20; i++ {
				fmt.Fprint(w, pad)
			}
			fmt.Fprint(w, `</Name></ListBucketResult>`)
		}, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			s, err := NewS3("b", "p", s3Opts(srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			err = s.List(context.Background(), "", func(shared.BlobInfo) error { return nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("List: %v, want %q", err, tc.want)
			}
		})
	}
	if n := pages.Load(); n != 5 {
		t.Fatalf("%d pages asked for, want the bound 5", n)
	}
}
