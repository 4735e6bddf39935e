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

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/fetch/gcssrc"
)

// fakeGCS is fake-gcs-server's handler behind httptest, reached as
// STORAGE_EMULATOR_HOST, counting uploads with ifGenerationMatch=0.
//
// fake-gcs-server (v1.56) honours ifGenerationMatch on uploads (multipart,
// media and resumable), answering 412 when the object exists, so the
// ifAbsent assertions run; its memory backend checks and writes under one
// lock, so racing creates have one winner, as on GCS.
type fakeGCS struct {
	server      *fakestorage.Server
	srv         *httptest.Server
	host        string
	conditional atomic.Int64
}

func newFakeGCS(t *testing.T, buckets ...string) *fakeGCS {
	t.Helper()
	server, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true, PublicHost: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(server.Stop)
	f := &fakeGCS{server: server}
	h := server.HTTPHandler()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Query().Get("ifGenerationMatch") == "0" {
			f.conditional.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	f.host = strings.TrimPrefix(f.srv.URL, "http://")
	for _, b := range buckets {
		server.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	return f
}

func newTestGCS(t *testing.T, f *fakeGCS, bucket, prefix string) *GCS {
	t.Helper()
	g, err := NewGCS(bucket, prefix, gcssrc.Options{Emulator: f.host, PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGCSRoundTrip(t *testing.T) {
	f := newFakeGCS(t, "fleet")
	g := newTestGCS(t, f, "fleet", "org/acme")
	testRoundTrip(t, g, true)
	if f.conditional.Load() == 0 {
		t.Fatal("no upload carried ifGenerationMatch=0")
	}
	objs, _, err := f.server.ListObjectsWithOptions("fleet", fakestorage.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if !strings.HasPrefix(o.Name, "org/acme/") {
			t.Errorf("object outside the prefix: %q", o.Name)
		}
	}
	if got := names(t, newTestGCS(t, f, "fleet", "org/acme2"), ""); len(got) != 0 {
		t.Fatalf("another prefix lists %q", got)
	}
	if g.String() != "gs://fleet/org/acme" {
		t.Fatalf("String() = %q", g.String())
	}
}

func TestGCSRacingTiersFetchOnce(t *testing.T) {
	f := newFakeGCS(t, "fleet")
	testRacingTiers(t, newTestGCS(t, f, "fleet", "org/acme"))
}

func TestGCSMissingBucket(t *testing.T) {
	f := newFakeGCS(t)
	g := newTestGCS(t, f, "nobucket", "p")
	ctx := context.Background()
	err := g.Put(ctx, "x", [][]byte{[]byte("d")}, true)
	if err == nil || errors.Is(err, shared.ErrExists) || errors.Is(err, shared.ErrNotFound) {
		t.Fatalf("Put to a missing bucket: %v", err)
	}
}

func TestGCSHonoursContext(t *testing.T) {
	url := hungServer(t)
	g, err := NewGCS("b", "p", gcssrc.Options{Emulator: strings.TrimPrefix(url, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	testHonoursContext(t, g)
}

// Errors of GCS map to the kinds the tier acts on.
func TestGCSErrors(t *testing.T) {
	for _, tc := range []struct {
		status int
		reason string
		op     string
		want   error
	}{
		{412, "conditionNotMet", "put", shared.ErrExists},
		{403, "forbidden", "put", shared.ErrReadOnly},
		{401, "required", "put", shared.ErrReadOnly},
		{507, "", "put", shared.ErrFull},
		{403, "quotaExceeded", "put", shared.ErrFull},
		{404, "notFound", "open", shared.ErrNotFound},
		{404, "notFound", "delete", nil},
		{403, "forbidden", "open", errOther},
		{500, "backendError", "put", errOther},
		{429, "rateLimitExceeded", "open", errOther},
	} {
		t.Run(fmt.Sprintf("%s-%d-%s", tc.op, tc.status, tc.reason), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				fmt.Fprintf(w, `{"error":{"code":%d,"message":"scripted","errors":[{"reason":%q,"message":"scripted"}]}}`, tc.status, tc.reason)
			}))
			defer srv.Close()
			g, err := NewGCS("b", "p", gcssrc.Options{Emulator: strings.TrimPrefix(srv.URL, "http://")})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			switch tc.op {
			case "put":
				err = g.Put(ctx, "x", [][]byte{[]byte("data")}, true)
			case "open":
				_, _, err = g.Open(ctx, "x")
			case "delete":
				err = g.Delete(ctx, "x")
			}
			checkKind(t, err, tc.want)
		})
	}
}

// A listing that pages forever is cut off.
func TestGCSListBounded(t *testing.T) {
	defer func(n int64) { maxPages = n }(maxPages)
	maxPages = 5
	var pages atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := pages.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"kind":"storage#objects","nextPageToken":"t%d","items":[]}`, n)
	}))
	defer srv.Close()
	g, err := NewGCS("b", "p", gcssrc.Options{Emulator: strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	err = g.List(context.Background(), "", func(shared.BlobInfo) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "past any bound") {
		t.Fatalf("List: %v", err)
	}
	if n := pages.Load(); n != 5 {
		t.Fatalf("%d pages asked for, want the bound 5", n)
	}
}
