package store

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"os"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// countingHash counts the bytes hashed, to tell a hash from the fetch
// buffer from one read back.
type countingHash struct {
	hash.Hash
	n *int64
}

func (c countingHash) Write(b []byte) (int, error) { *c.n += int64(len(b)); return c.Hash.Write(b) }

// The in-order hash ends up equal to the whole file's, whatever order the
// chunks come in; chunks put in order are hashed once each from the put
// buffer, early ones are read back at most maxCatchUp per put, and what is
// left is handed over at the right offset for the caller to finish.
func TestHashInOrder(t *testing.T) {
	const n = 12
	size := n*testChunk - 777
	content := randBytes(size, 7)
	want := sha256.Sum256(content)
	for _, tc := range []struct {
		name    string
		order   []int
		wantOff int64 // what TakeHash has covered
	}{
		// Chunk 0 stays a hole of zeros: nothing is hashed.
		{"in order", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, int64(size)},
		{"pairs swapped", []int{1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10}, int64(size)},
		{"reversed: catch-up is bounded", []int{11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0}, (1 + maxCatchUp) * testChunk},
		{"first chunk missing", []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := openTestDir(t, t.TempDir(), Options{MemoryBytes: -1})
			f := openTestFile(t, d, "cd01", int64(size))
			defer f.Close()
			var hashed int64
			for _, idx := range tc.order {
				f.HashInOrder(func() hash.Hash { return countingHash{sha256.New(), &hashed} })
				if _, err := f.Put(idx, chunkOf(content, idx), false); err != nil {
					t.Fatal(err)
				}
			}
			h, off := f.TakeHash()
			if off != tc.wantOff {
				t.Fatalf("hashed up to %d, want %d", off, tc.wantOff)
			}
			if hashed != off {
				t.Fatalf("%d bytes went through the hash for %d hashed: some twice", hashed, off)
			}
			if h == nil {
				if off != 0 {
					t.Fatal("no hash but an offset")
				}
				h = sha256.New()
			}
			rest := make([]byte, int64(size)-off)
			if k, _ := f.ReadStored(rest, off); k != len(rest) {
				t.Fatalf("read back %d of %d", k, len(rest))
			}
			h.Write(rest)
			want := want
			if off == 0 {
				stored, _ := os.ReadFile(f.Path())
				want = sha256.Sum256(stored)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != hex.EncodeToString(want[:]) {
				t.Fatalf("hash %s, want %s", got, hex.EncodeToString(want[:]))
			}
			// Taken: later puts do not hash, and a second take has nothing.
			if h, off := f.TakeHash(); h != nil || off != 0 {
				t.Fatalf("second TakeHash = %v, %d", h, off)
			}
		})
	}
}

// Puts of one file from many goroutines at once, as parallel fetches do,
// hash each byte at most once and in order.
func TestHashInOrderConcurrentPuts(t *testing.T) {
	const n = 32
	content := randBytes(n*testChunk, 8)
	want := sha256.Sum256(content)
	d := openTestDir(t, t.TempDir(), Options{MemoryBytes: -1})
	f := openTestFile(t, d, "cd02", int64(len(content)))
	defer f.Close()
	var mu sync.Mutex
	var hashed int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for idx := w; idx < n; idx += 8 {
				f.HashInOrder(func() hash.Hash { return lockedCount{sha256.New(), &mu, &hashed} })
				if _, err := f.Put(idx, chunkOf(content, idx), false); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	h, off := f.TakeHash()
	if h == nil {
		h = sha256.New()
	}
	if hashed != off {
		t.Fatalf("%d bytes hashed for %d covered", hashed, off)
	}
	t.Logf("covered %d of %d chunks", off/testChunk, n)
	rest := make([]byte, int64(len(content))-off)
	f.ReadStored(rest, off)
	h.Write(rest)
	if got := h.Sum(nil); string(got) != string(want[:]) {
		t.Fatalf("hash of concurrent puts differs from the file's (hashed to %d)", off)
	}
}

type lockedCount struct {
	hash.Hash
	mu *sync.Mutex
	n  *int64
}

func (c lockedCount) Write(b []byte) (int, error) {
	c.mu.Lock()
	*c.n += int64(len(b))
	c.mu.Unlock()
	return c.Hash.Write(b)
}

// Drop forgets the hash: the next generation starts from its first chunk.
func TestDropResetsHash(t *testing.T) {
	content := randBytes(2*testChunk, 9)
	d := openTestDir(t, t.TempDir(), Options{MemoryBytes: -1})
	f := openTestFile(t, d, "cd03", int64(len(content)))
	defer f.Close()
	bad := randBytes(testChunk, 10)
	f.HashInOrder(sha256.New)
	f.Put(0, bad, false)
	f.Drop()
	f.HashInOrder(sha256.New)
	for idx := 0; idx < 2; idx++ {
		f.Put(idx, chunkOf(content, idx), false)
	}
	h, off := f.TakeHash()
	want := sha256.Sum256(content)
	if off != int64(len(content)) || string(h.Sum(nil)) != string(want[:]) {
		t.Fatalf("after a drop: hashed to %d, equal %v", off, h != nil && string(h.Sum(nil)) == string(want[:]))
	}
}

// A verified file's pages leave the page cache once written back, so a
// cold load does not hold the model twice (the FUSE file's copy and this
// one). Measured with mincore on a mapping of the file.
func TestVerifiedPagesDropped(t *testing.T) {
	const n = 8
	content := randBytes(n*testChunk, 11)
	d := openTestDir(t, t.TempDir(), Options{MemoryBytes: -1})
	f := openTestFile(t, d, "cd04", int64(len(content)))
	for idx := 0; idx < n; idx++ {
		f.Put(idx, chunkOf(content, idx), false)
	}
	if got := residentPages(t, f.Path()); got == 0 {
		t.Skip("this filesystem keeps no page cache for the file (tmpfs keeps it always); nothing to measure")
	}
	f.MarkVerified()
	f.Close() // waits for the drop
	total := (len(content) + os.Getpagesize() - 1) / os.Getpagesize()
	if got := residentPages(t, f.Path()); got > total/10 {
		t.Fatalf("%d of %d pages still cached after the verdict", got, total)
	}
}

// residentPages counts the pages of path in the page cache.
func residentPages(t *testing.T, path string) int {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	m, err := unix.Mmap(int(fh.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	k := 0
	for _, v := range vec {
		k += int(v & 1)
	}
	return k
}
