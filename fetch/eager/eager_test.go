package eager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weightfs/weightfs/fetch"
)

// fakeOrigin serves files from memory and can misbehave.
type fakeOrigin struct {
	files map[string][]byte

	mu      sync.Mutex
	order   []string // "path@off" of each read, in order
	reads   atomic.Int64
	bytes   atomic.Int64
	corrupt map[string]int // path -> reads still to corrupt (-1: always)
	failAt  int64          // if > 0, every read after this many fails permanently
}

func (o *fakeOrigin) ReadRange(ctx context.Context, f fetch.File, off int64, p []byte) error {
	if len(p) == 1 && f.Size > 1 { // a primer: recorded, but not counted as a range
		o.mu.Lock()
		o.order = append(o.order, f.Path+"@prime")
		o.mu.Unlock()
		return nil
	}
	n := o.reads.Add(1)
	if o.failAt > 0 && n > o.failAt {
		return fetch.Permanent(errors.New("origin gone"))
	}
	b, ok := o.files[f.Path]
	if !ok || off+int64(len(p)) > int64(len(b)) {
		return fetch.Permanent(fmt.Errorf("no such range of %s", f.Path))
	}
	copy(p, b[off:])
	o.bytes.Add(int64(len(p)))
	o.mu.Lock()
	o.order = append(o.order, fmt.Sprintf("%s@%d", f.Path, off))
	if left := o.corrupt[f.Path]; left != 0 && len(p) > 0 {
		p[0] ^= 0xff
		if left > 0 {
			o.corrupt[f.Path] = left - 1
		}
	}
	o.mu.Unlock()
	return nil
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func checksum(t *testing.T, algo string, b []byte) fetch.Checksum {
	t.Helper()
	v, err := fetch.Digest(algo, bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return fetch.Checksum{Algo: algo, Value: v}
}

const testChunk = 1 << 10

// fixture: files of awkward sizes (empty, one byte, exactly one range, many
// ranges with a short last one), one per checksum kind and one without.
func fixture(t *testing.T) (*fakeOrigin, []fetch.File) {
	o := &fakeOrigin{files: map[string][]byte{}, corrupt: map[string]int{}}
	specs := []struct {
		path string
		size int
		algo string
	}{
		{"empty.txt", 0, fetch.AlgoGitSHA1},
		{"one.bin", 1, fetch.AlgoMD5},
		{"exact.json", testChunk, fetch.AlgoCRC32C},
		{"sub/dir/big.safetensors", 9*testChunk + 17, fetch.AlgoSHA256},
		{"nosum.bin", 3*testChunk - 1, ""},
	}
	var files []fetch.File
	for i, s := range specs {
		b := randBytes(uint64(i), s.size)
		o.files[s.path] = b
		f := fetch.File{Path: s.path, Size: int64(s.size), Version: "v1"}
		if s.algo != "" {
			f.Checksum = checksum(t, s.algo, b)
		}
		files = append(files, f)
	}
	return o, files
}

func targetsFor(root string, o *fakeOrigin, files []fetch.File, ledger *Ledger) []Target {
	var ts []Target
	for _, f := range files {
		ts = append(ts, Target{File: f, Reader: o, Path: filepath.Join(root, filepath.FromSlash(f.Path)), Ledger: ledger})
	}
	return ts
}

func run(t *testing.T, ts []Target, o Options) (*Downloader, error) {
	t.Helper()
	if o.ChunkSize == 0 {
		o.ChunkSize = testChunk
	}
	if o.Retry.Attempts == 0 {
		o.Retry = fetch.RetryPolicy{Attempts: 2, AttemptTimeout: 5 * time.Second, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	}
	d, err := New(ts, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return d, d.Run(ctx)
}

func assertTree(t *testing.T, root string, o *fakeOrigin, files []fetch.File) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f.Path))
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, o.files[f.Path]) {
			t.Errorf("%s: content differs from the origin", f.Path)
		}
		for _, leftover := range []string{p + ".part", p + ".part" + ProgressSuffix} {
			if _, err := os.Stat(leftover); err == nil {
				t.Errorf("%s left behind", leftover)
			}
		}
	}
}

func TestFetchEveryKindOfFile(t *testing.T) {
	o, files := fixture(t)
	root := t.TempDir()
	d, err := run(t, targetsFor(root, o, files, OpenLedger(root)), Options{Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	assertTree(t, root, o, files)
	p := d.Progress()
	if p.FilesDone != len(files) || p.DoneBytes != p.TotalBytes || p.FetchedBytes != p.TotalBytes {
		t.Fatalf("progress %+v", p)
	}
	if _, err := os.Stat(filepath.Join(root, LedgerDir, LedgerFile)); err != nil {
		t.Fatalf("no ledger: %v", err)
	}
}

func TestSmallFilesFirstThenRangesInOrder(t *testing.T) {
	o, files := fixture(t)
	root := t.TempDir()
	if _, err := run(t, targetsFor(root, o, files, nil), Options{Workers: 1}); err != nil {
		t.Fatal(err)
	}
	want := []string{"one.bin@0", "exact.json@0", "nosum.bin@prime", "nosum.bin@0", "nosum.bin@1024", "nosum.bin@2048",
		"sub/dir/big.safetensors@prime"}
	for i := range 10 {
		want = append(want, fmt.Sprintf("sub/dir/big.safetensors@%d", i*testChunk))
	}
	if fmt.Sprint(o.order) != fmt.Sprint(want) {
		t.Fatalf("read order\n got %v\nwant %v", o.order, want)
	}
}

func TestRerunIsANoOpThanksToTheLedger(t *testing.T) {
	o, files := fixture(t)
	root := t.TempDir()
	if _, err := run(t, targetsFor(root, o, files, OpenLedger(root)), Options{}); err != nil {
		t.Fatal(err)
	}
	// Change bytes in place but keep size and mtime: only a rehash would
	// notice, so an untouched file proves the ledger was trusted.
	big := filepath.Join(root, "sub/dir/big.safetensors")
	info, _ := os.Stat(big)
	mangled := bytes.Clone(o.files["sub/dir/big.safetensors"])
	mangled[5] ^= 1
	os.WriteFile(big, mangled, 0o644)
	os.Chtimes(big, info.ModTime(), info.ModTime())

	reads := o.reads.Load()
	var placed atomic.Int32
	ts := targetsFor(root, o, files, OpenLedger(root))
	for i := range ts {
		ts[i].Placed = func() error { placed.Add(1); return nil }
	}
	d, err := run(t, ts, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := o.reads.Load() - reads; n != 0 {
		t.Fatalf("re-run made %d reads", n)
	}
	if got, _ := os.ReadFile(big); !bytes.Equal(got, mangled) {
		t.Fatal("re-run rewrote a file the ledger vouches for")
	}
	if int(placed.Load()) != len(files) || d.Progress().DoneBytes != d.Progress().TotalBytes {
		t.Fatalf("placed hooks %d, progress %+v", placed.Load(), d.Progress())
	}
}

func TestWithoutLedgerFilesInPlaceAreHashed(t *testing.T) {
	o, files := fixture(t)
	root := t.TempDir()
	if _, err := run(t, targetsFor(root, o, files, OpenLedger(root)), Options{}); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(root, LedgerDir))
	bad := filepath.Join(root, "sub/dir/big.safetensors")
	b, _ := os.ReadFile(bad)
	b[100] ^= 1
	os.WriteFile(bad, b, 0o644)

	o.mu.Lock()
	o.order = nil
	o.mu.Unlock()
	if _, err := run(t, targetsFor(root, o, files, OpenLedger(root)), Options{Workers: 1}); err != nil {
		t.Fatal(err)
	}
	assertTree(t, root, o, files)
	for _, r := range o.order {
		if r[:len("sub/dir/big.safetensors")] != "sub/dir/big.safetensors" {
			t.Errorf("a verified file was fetched again: %s", r)
		}
	}
	if len(o.order) != 11 { // a primer, then the ranges
		t.Fatalf("want the 10 ranges of the damaged file fetched again, got %v", o.order)
	}
}

func TestResumeFetchesOnlyMissingRanges(t *testing.T) {
	o, files := fixture(t)
	root := t.TempDir()
	o.failAt = 6 // the origin dies mid-way through the big file
	_, err := run(t, targetsFor(root, o, files, nil), Options{Workers: 1})
	var fe *FailedError
	if !errors.As(err, &fe) {
		t.Fatalf("want a FailedError, got %v", err)
	}
	big := filepath.Join(root, "sub/dir/big.safetensors")
	if _, err := os.Stat(big); err == nil {
		t.Fatal("a partial file is under its final name")
	}
	if _, err := os.Stat(big + ".part" + ProgressSuffix); err != nil {
		t.Fatalf("no progress record kept: %v", err)
	}
	first := o.bytes.Load()
	o.failAt = 0
	d, err := run(t, targetsFor(root, o, files, nil), Options{Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	assertTree(t, root, o, files)
	var total int64
	for _, f := range files {
		total += f.Size
	}
	second := o.bytes.Load() - first
	if second+first != total {
		t.Fatalf("first run %d + second run %d bytes, want %d in all (nothing fetched twice)", first, second, total)
	}
	if p := d.Progress(); p.FetchedBytes != second || p.DoneBytes != total {
		t.Fatalf("progress %+v", p)
	}
}

func TestResumeStartsOverForAnotherObject(t *testing.T) {
	o, files := fixture(t)
	root := t.TempDir()
	o.failAt = 6
	run(t, targetsFor(root, o, files, nil), Options{Workers: 1})
	o.failAt = 0
	// The origin now has another version of the big file.
	nb := randBytes(99, int(files[3].Size))
	o.files[files[3].Path] = nb
	files[3].Version = "v2"
	files[3].Checksum = checksum(t, fetch.AlgoSHA256, nb)
	if _, err := run(t, targetsFor(root, o, files, nil), Options{}); err != nil {
		t.Fatal(err)
	}
	assertTree(t, root, o, files)
}

func TestCorruptOriginFailsAndLeavesNothingUnderTheFinalName(t *testing.T) {
	o, files := fixture(t)
	root := t.TempDir()
	o.corrupt["sub/dir/big.safetensors"] = -1
	_, err := run(t, targetsFor(root, o, files, OpenLedger(root)), Options{})
	var fe *FailedError
	var me *MismatchError
	if !errors.As(err, &fe) || len(fe.Failures) != 1 || !errors.As(fe.Failures[0].Err, &me) {
		t.Fatalf("want one mismatch, got %v", err)
	}
	if me.Algo != fetch.AlgoSHA256 || me.Want != files[3].Checksum.Value || me.Got == me.Want {
		t.Fatalf("mismatch %+v", me)
	}
	wantMsg := fmt.Sprintf("1 of 5 files failed: sub/dir/big.safetensors: sha256 mismatch (want %s, got %s)", me.Want, me.Got)
	if err.Error() != wantMsg {
		t.Fatalf("message\n got %s\nwant %s", err, wantMsg)
	}
	big := filepath.Join(root, "sub/dir/big.safetensors")
	for _, p := range []string{big, big + ".part", big + ".part" + ProgressSuffix} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s exists after a mismatch", p)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "exact.json")); err != nil {
		t.Errorf("the other files should be in place: %v", err)
	}
}

func TestCorruptOnceIsFetchedAgain(t *testing.T) {
	o, files := fixture(t)
	root := t.TempDir()
	o.corrupt["sub/dir/big.safetensors"] = 1
	o.corrupt["one.bin"] = 1
	if _, err := run(t, targetsFor(root, o, files, nil), Options{}); err != nil {
		t.Fatal(err)
	}
	assertTree(t, root, o, files)
}

func TestInterruptKeepsPartsForTheNextRun(t *testing.T) {
	o, files := fixture(t)
	root := t.TempDir()
	slow := &slowOrigin{fakeOrigin: o, after: 4, started: make(chan struct{})}
	ts := targetsFor(root, o, files, nil)
	for i := range ts {
		ts[i].Reader = slow
	}
	d, err := New(ts, Options{Workers: 1, ChunkSize: testChunk, Drain: 100 * time.Millisecond}) // its reads block past the interrupt
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-slow.started; cancel() }()
	if err := d.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if _, err := run(t, targetsFor(root, o, files, nil), Options{}); err != nil {
		t.Fatal(err)
	}
	assertTree(t, root, o, files)
}

// slowOrigin blocks every read after the first few until ctx ends.
type slowOrigin struct {
	*fakeOrigin
	after   int64
	n       atomic.Int64
	started chan struct{}
	once    sync.Once
}

func (s *slowOrigin) ReadRange(ctx context.Context, f fetch.File, off int64, p []byte) error {
	if s.n.Add(1) > s.after {
		s.once.Do(func() { close(s.started) })
		<-ctx.Done()
		return ctx.Err()
	}
	return s.fakeOrigin.ReadRange(ctx, f, off, p)
}

func TestNewRejectsTwoFilesOnOnePath(t *testing.T) {
	o, files := fixture(t)
	ts := targetsFor(t.TempDir(), o, files, nil)
	ts = append(ts, ts[0])
	if _, err := New(ts, Options{}); err == nil {
		t.Fatal("want an error")
	}
}

func TestNotEnoughSpaceFailsFast(t *testing.T) {
	o := &fakeOrigin{files: map[string][]byte{}}
	root := t.TempDir()
	huge := fetch.File{Path: "huge.bin", Size: 1 << 60} // 1 EiB
	d, err := New([]Target{{File: huge, Reader: o, Path: filepath.Join(root, "huge.bin")}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(context.Background())
	if err == nil || o.reads.Load() != 0 {
		t.Fatalf("want a space error before any read, got %v after %d reads", err, o.reads.Load())
	}
}

// primedOrigin checks that no range of a file goes out before its primer
// returned (each would otherwise ask the Hub for its own redirect).
type primedOrigin struct {
	*fakeOrigin
	primed atomic.Bool
	early  atomic.Int32
}

func (o *primedOrigin) ReadRange(ctx context.Context, f fetch.File, off int64, p []byte) error {
	if len(p) == 1 && f.Size > 1 {
		time.Sleep(30 * time.Millisecond)
		o.primed.Store(true)
		return nil
	}
	if !o.primed.Load() {
		o.early.Add(1)
	}
	return o.fakeOrigin.ReadRange(ctx, f, off, p)
}

func TestRangesWaitForTheirPrimer(t *testing.T) {
	o, files := fixture(t)
	big := files[3]
	po := &primedOrigin{fakeOrigin: o}
	root := t.TempDir()
	ts := targetsFor(root, o, []fetch.File{big}, nil)
	ts[0].Reader = po
	if _, err := run(t, ts, Options{Workers: 8}); err != nil {
		t.Fatal(err)
	}
	if n := po.early.Load(); n != 0 || !po.primed.Load() {
		t.Fatalf("%d ranges went out before the primer returned", n)
	}
	assertTree(t, root, o, []fetch.File{big})
}
