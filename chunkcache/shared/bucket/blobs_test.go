package bucket

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weightfs/weightfs/chunkcache/shared"
)

// Tests common to every bucket store, run on each fake.

func payload(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func read(t *testing.T, b shared.Blobs, name string) ([]byte, error) {
	t.Helper()
	r, size, err := b.Open(context.Background(), name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	if int64(len(got)) != size {
		t.Fatalf("%s: Open said %d bytes, read %d", name, size, len(got))
	}
	return got, nil
}

func names(t *testing.T, b shared.Blobs, prefix string) []string {
	t.Helper()
	var out []string
	if err := b.List(context.Background(), prefix, func(bi shared.BlobInfo) error {
		out = append(out, bi.Name)
		if bi.ModTime.IsZero() || bi.Temp {
			t.Errorf("listed %+v", bi)
		}
		return nil
	}); err != nil {
		t.Fatalf("List %q: %v", prefix, err)
	}
	sort.Strings(out)
	return out
}

// testRoundTrip: Put of slices and Open give the same bytes; ifAbsent
// twice is ErrExists and keeps the first bytes; a missing name is
// ErrNotFound; Delete (twice) removes; List sees only its prefix.
func testRoundTrip(t *testing.T, b shared.Blobs, exclusive bool) {
	ctx := context.Background()
	big := payload(1, 3<<20+17)
	for _, tc := range []struct {
		name string
		data [][]byte
	}{
		{"chunks/ab/one/1048576/0", [][]byte{[]byte("WFSCHK1\n0123456789abcdef"), big}},
		{"chunks/ab/one/1048576/1", [][]byte{big[:5], nil, big[5:100], big[100:]}},
		{"access/ab/one", [][]byte{[]byte(`{"holder":"h"}`)}},
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := bytes.Join(tc.data, nil)
			if err := b.Put(ctx, tc.name, tc.data, true); err != nil {
				t.Fatalf("Put: %v", err)
			}
			got, err := read(t, b, tc.name)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Open: %d bytes, err %v; want %d bytes", len(got), err, len(want))
			}
			if exclusive {
				err := b.Put(ctx, tc.name, [][]byte{[]byte("other")}, true)
				if !errors.Is(err, shared.ErrExists) {
					t.Fatalf("second Put ifAbsent: %v, want ErrExists", err)
				}
				if got, _ := read(t, b, tc.name); !bytes.Equal(got, want) {
					t.Fatal("a refused Put changed the object")
				}
			}
		})
	}
	// A plain Put replaces.
	if err := b.Put(ctx, "access/ab/one", [][]byte{[]byte("v2")}, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(t, b, "access/ab/one"); string(got) != "v2" {
		t.Fatalf("after replace: %q", got)
	}
	if _, err := read(t, b, "chunks/ab/missing/1/0"); !errors.Is(err, shared.ErrNotFound) {
		t.Fatalf("Open missing: %v, want ErrNotFound", err)
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"chunks/", []string{"chunks/ab/one/1048576/0", "chunks/ab/one/1048576/1"}},
		{"chunks/ab/one/1048576/1", []string{"chunks/ab/one/1048576/1"}},
		{"access/", []string{"access/ab/one"}},
		{"leases/", nil},
		{"", []string{"access/ab/one", "chunks/ab/one/1048576/0", "chunks/ab/one/1048576/1", "empty"}},
	} {
		if got := names(t, b, tc.prefix); !equal(got, tc.want) {
			t.Errorf("List %q = %q, want %q", tc.prefix, got, tc.want)
		}
	}
	for i := 0; i < 2; i++ { // an absent name is no error
		if err := b.Delete(ctx, "chunks/ab/one/1048576/0"); err != nil {
			t.Fatalf("Delete #%d: %v", i, err)
		}
	}
	if _, err := read(t, b, "chunks/ab/one/1048576/0"); !errors.Is(err, shared.ErrNotFound) {
		t.Fatalf("Open deleted: %v", err)
	}
	if got := names(t, b, "chunks/"); !equal(got, []string{"chunks/ab/one/1048576/1"}) {
		t.Fatalf("after Delete: %q", got)
	}
	if n, err := b.Free(ctx); n != -1 || err != nil {
		t.Fatalf("Free = %d, %v", n, err)
	}
	if b.ExclusiveCreate() != true {
		t.Fatal("a bucket's create is exclusive")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// testRacingTiers: 8 nodes on one store, racing to fill one chunk, fetch
// it from the origin once between them and all get its bytes.
func testRacingTiers(t *testing.T, b shared.Blobs) {
	data := payload(7, 1<<20)
	var calls atomic.Int64
	const key = "0123456789abcdef0123456789abcdef"
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tier := shared.New(b, shared.Options{})
			buf := make([]byte, len(data))
			r := shared.Request{Volume: "v", Key: key, Index: 2, ChunkSize: int64(len(data)), Buf: buf,
				Mode: shared.Readahead, OriginTime: time.Minute,
				Origin: func(ctx context.Context) error {
					calls.Add(1)
					time.Sleep(200 * time.Millisecond) // the origin is slow: others wait on the lease
					copy(buf, data)
					return nil
				}}
			<-start
			f, err := tier.Fill(context.Background(), r)
			if err != nil {
				errs <- err
				return
			}
			tier.Publish(r, f)
			if !bytes.Equal(buf, data) {
				errs <- errors.New("wrong bytes")
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("origin fetched %d times by 8 racing nodes, want 1", n)
	}
	if got := names(t, b, "leases/"); len(got) != 0 {
		t.Fatalf("leases left behind: %q", got)
	}
	if got := names(t, b, "chunks/"); len(got) != 1 {
		t.Fatalf("chunks: %q", got)
	}
}

// hungServer answers no request until its client gives up.
func hungServer(t *testing.T) string {
	t.Helper()
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hang) }) // runs first
	return srv.URL
}

// testHonoursContext checks that every call of b on a hung server ends at
// its ctx's deadline.
func testHonoursContext(t *testing.T, b shared.Blobs) {
	t.Helper()
	for _, op := range []string{"open", "put", "delete", "list"} {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		var err error
		switch op {
		case "open":
			_, _, err = b.Open(ctx, "x")
		case "put":
			err = b.Put(ctx, "x", [][]byte{[]byte("d")}, true)
		case "delete":
			err = b.Delete(ctx, "x")
		case "list":
			err = b.List(ctx, "", func(shared.BlobInfo) error { return nil })
		}
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v, want the deadline", op, err)
		}
	}
}
