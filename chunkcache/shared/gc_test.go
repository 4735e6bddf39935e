package shared_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/chunkcache/shared/sharedtest"
)

// GC removes what nobody used for UnusedFor, and keeps what was used since
// and whatever is under a live lease, however old.
func TestGC(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	store := sharedtest.NewMem()
	type obj struct {
		key    string
		age    time.Duration
		lease  time.Duration // remaining lease life; 0 none, negative expired
		remove bool
	}
	objs := []obj{
		{key: "aa" + fmt.Sprintf("%030d", 1), age: 20 * 24 * time.Hour, remove: true},
		{key: "ab" + fmt.Sprintf("%030d", 2), age: 2 * 24 * time.Hour},
		{key: "ac" + fmt.Sprintf("%030d", 3), age: 20 * 24 * time.Hour, lease: time.Minute},
		{key: "ad" + fmt.Sprintf("%030d", 4), age: 20 * 24 * time.Hour, lease: -time.Minute, remove: true},
	}
	for _, o := range objs {
		for i := 0; i < 3; i++ {
			name := fmt.Sprintf("chunks/%s/%s/1048576/%d", o.key[:2], o.key, i)
			store.Put(ctx, name, [][]byte{[]byte("x")}, false)
			store.SetModTime(name, now.Add(-o.age))
		}
		acc := fmt.Sprintf("access/%s/%s", o.key[:2], o.key)
		store.Put(ctx, acc, [][]byte{[]byte("{}")}, false)
		store.SetModTime(acc, now.Add(-o.age))
		if o.lease != 0 {
			doc := fmt.Sprintf(`{"holder":"n","expires_unix_ms":%d}`, now.Add(o.lease).UnixMilli())
			store.Put(ctx, fmt.Sprintf("leases/%s/%s/1048576/1", o.key[:2], o.key), [][]byte{[]byte(doc)}, false)
		}
	}
	for _, dry := range []bool{true, false} {
		rep, err := shared.GC(ctx, store, shared.GCOptions{UnusedFor: 14 * 24 * time.Hour, Now: now, DryRun: dry})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Objects != 4 || rep.Removed != 2 || rep.KeptLeased != 1 {
			t.Fatalf("dry %v: report %+v", dry, rep)
		}
	}
	for _, o := range objs {
		left := len(store.Names("chunks/"+o.key[:2]+"/"+o.key+"/")) + len(store.Names("access/"+o.key[:2]+"/"+o.key))
		if o.remove && left != 0 {
			t.Errorf("%s: %d objects left, want none", o.key, left)
		}
		if !o.remove && left != 4 {
			t.Errorf("%s: %d objects left, want 4", o.key, left)
		}
	}
}

// GC removes what crashed nodes leave: leases and takeover claims that
// lapsed over TempAge ago, and nodes/ records unwritten that long. It keeps
// a lease written lately, one that has not expired however old, and a
// fresh record.
func TestGCSweepsStale(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	lease := func(expires time.Duration) string {
		return fmt.Sprintf(`{"holder":"node-7","expires_unix_ms":%d}`, now.Add(expires).UnixMilli())
	}
	const l = "leases/ab/ab0000/8388608/"
	cases := []struct {
		name, doc string
		age       time.Duration // since it was last written
		remove    bool
	}{
		{l + "0", lease(-2 * time.Hour), 2 * time.Hour, true},                             // its holder was killed
		{l + "1" + ".takeover-1700000000000", lease(-3 * time.Hour), 3 * time.Hour, true}, // so was its claimant
		{l + "2", "not a lease", 2 * time.Hour, true},                                     // garbled
		{l + "3", lease(-time.Minute), time.Minute, false},                                // lapsed just now: left to the takeover
		{l + "4", lease(48 * time.Hour), 2 * time.Hour, false},                            // old, but set to last
		{"nodes/node-3", `{"holder":"node-3"}`, 2 * time.Hour, true},
		{"nodes/node-4", `{"holder":"node-4"}`, time.Minute, false},
	}
	for _, dry := range []bool{true, false} {
		store := sharedtest.NewMem()
		for _, c := range cases {
			store.Put(ctx, c.name, [][]byte{[]byte(c.doc)}, false)
			store.SetModTime(c.name, now.Add(-c.age))
		}
		rep, err := shared.GC(ctx, store, shared.GCOptions{UnusedFor: 14 * 24 * time.Hour, Now: now, DryRun: dry})
		if err != nil {
			t.Fatal(err)
		}
		if rep.LeasesRemoved != 3 || rep.NodesRemoved != 1 {
			t.Errorf("dry %v: report %+v, want 3 leases and 1 node record", dry, rep)
		}
		for _, c := range cases {
			left := len(store.Names(c.name)) == 1
			if want := dry || !c.remove; left != want {
				t.Errorf("dry %v: %s left %v, want %v", dry, c.name, left, want)
			}
		}
	}
}

// The POSIX store: atomic writes, exclusive create, private modes.
func TestDirBlobs(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir() + "/s"
	d, err := shared.OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, "chunks/ab/abc/1/0", [][]byte{[]byte("he"), []byte("llo")}, true); err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, "chunks/ab/abc/1/0", [][]byte{[]byte("x")}, true); !errorsIs(err, shared.ErrExists) {
		t.Fatalf("second exclusive put: %v", err)
	}
	r, size, err := d.Open(ctx, "chunks/ab/abc/1/0")
	if err != nil || size != 5 {
		t.Fatalf("open: %v size %d", err, size)
	}
	buf := make([]byte, 5)
	if _, err := r.Read(buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q %v", buf, err)
	}
	r.Close()
	for p, want := range map[string]os.FileMode{root: 0o700, root + "/chunks/ab/abc/1": 0o700, root + "/chunks/ab/abc/1/0": 0o600} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v (err %v), want %v: the shared cache holds gated weights", p, st.Mode().Perm(), err, want)
		}
	}
	if _, _, err := d.Open(ctx, "chunks/none"); !errorsIs(err, shared.ErrNotFound) {
		t.Fatalf("open missing: %v", err)
	}
	var names []string
	d.List(ctx, "chunks/ab/", func(bi shared.BlobInfo) error { names = append(names, bi.Name); return nil })
	if len(names) != 1 || names[0] != "chunks/ab/abc/1/0" {
		t.Fatalf("list: %v", names)
	}
	if err := d.Delete(ctx, "chunks/ab/abc/1/0"); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx, "chunks/ab/abc/1/0"); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
