package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weightfs/weightfs/integration/modelgen"
)

// The loads below are what a model server does to a mounted model. Each
// returns the bytes it read; none holds a lock across a read, so a
// filesystem that serialises parallel reads shows it.

// statAll walks root and stats every file, checking that every file of want
// is there with its size.
func statAll(root string, want []fileInfo) error {
	got := map[string]int64{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		got[filepath.ToSlash(rel)] = st.Size()
		return nil
	})
	if err != nil {
		return err
	}
	for _, f := range want {
		if n, ok := got[f.rel]; !ok {
			return fmt.Errorf("%s missing from the listing (%d files listed)", f.rel, len(got))
		} else if n != f.size {
			return fmt.Errorf("%s: size %d, want %d", f.rel, n, f.size)
		}
	}
	return nil
}

// firstTensor does what a loader does first: open the shard, read the 8-byte
// length and the header, then the tensor stored first (lowest data offset).
func firstTensor(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h, err := modelgen.ParseHeader(f)
	if err != nil {
		return 0, err
	}
	order := h.Order()
	if len(order) == 0 {
		return 0, errors.New("no tensors")
	}
	t := h.Tensors[order[0]]
	buf := make([]byte, t.End-t.Begin)
	if _, err := f.ReadAt(buf, h.DataStart+t.Begin); err != nil {
		return 0, fmt.Errorf("tensor %s: %w", order[0], err)
	}
	return h.DataStart + int64(len(buf)), nil
}

// readSizes are the sizes of successive reads of a sequential load: a mix
// in the 1-4 MiB range, as buffered loaders issue.
var readSizes = []int{1 << 20, 2 << 20, 3 << 20, 4 << 20}

// loadFileOrder reads every file sequentially, one after the other in path
// order.
func loadFileOrder(root string, files []fileInfo) (int64, error) {
	buf := make([]byte, readSizes[len(readSizes)-1])
	var total int64
	for _, fi := range files {
		n, err := readSequential(filepath.Join(root, fi.rel), buf)
		total += n
		if err != nil {
			return total, fmt.Errorf("%s: %w", fi.rel, err)
		}
		if n != fi.size {
			return total, fmt.Errorf("%s: read %d bytes, want %d", fi.rel, n, fi.size)
		}
	}
	return total, nil
}

func readSequential(path string, buf []byte) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	for i := 0; ; i++ {
		k, err := f.Read(buf[:readSizes[i%len(readSizes)]])
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// loadTransformers loads like transformers 5: headers of every shard, then
// every tensor of every shard sorted by natural key (layers.2 before
// layers.10, which is not file order), materialised from mmaps of the shards
// by a pool of threads taking tensors from one shared queue in that order.
func loadTransformers(root string, shards []string, threads int) (int64, error) {
	type tensor struct {
		name       string
		shard      int
		begin, end int64 // file offsets
	}
	var tensors []tensor
	maps := make([][]byte, len(shards))
	defer func() {
		for _, m := range maps {
			if m != nil {
				syscall.Munmap(m)
			}
		}
	}()
	var total int64
	for i, rel := range shards {
		f, err := os.Open(filepath.Join(root, rel))
		if err != nil {
			return 0, err
		}
		h, err := modelgen.ParseHeader(f)
		if err != nil {
			f.Close()
			return 0, fmt.Errorf("%s: %w", rel, err)
		}
		st, err := f.Stat()
		if err == nil {
			maps[i], err = syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
		}
		f.Close() // the mapping outlives the descriptor
		if err != nil {
			return 0, fmt.Errorf("mmap %s: %w", rel, err)
		}
		total += h.DataStart
		for name, t := range h.Tensors {
			tensors = append(tensors, tensor{name, i, h.DataStart + t.Begin, h.DataStart + t.End})
		}
	}
	sort.Slice(tensors, func(a, b int) bool {
		if c := naturalCompare(tensors[a].name, tensors[b].name); c != 0 {
			return c < 0
		}
		return tensors[a].shard < tensors[b].shard
	})
	var next atomic.Int64
	var read atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, threads)
	for w := 0; w < threads; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A fault on a mapping whose filesystem died is a SIGBUS; make it
			// a recoverable panic, not a crash of the whole bench.
			debug.SetPanicOnFault(true)
			defer func() {
				if r := recover(); r != nil {
					errs <- fmt.Errorf("fault while copying from a mapped shard: %v", r)
				}
			}()
			var buf []byte
			for {
				i := int(next.Add(1) - 1)
				if i >= len(tensors) {
					return
				}
				t := tensors[i]
				n := int(t.end - t.begin)
				if cap(buf) < n {
					buf = make([]byte, n)
				}
				copy(buf[:n], maps[t.shard][t.begin:t.end])
				read.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return total + read.Load(), err
	}
	return total + read.Load(), nil
}

var digits = regexp.MustCompile(`\d+`)

// naturalCompare orders strings the way transformers' natural key does:
// runs of digits compare as numbers, everything else as text.
func naturalCompare(a, b string) int {
	as, bs := naturalKey(a), naturalKey(b)
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, y := as[i], bs[i]
		if x.isNum && y.isNum {
			if x.num != y.num {
				if x.num < y.num {
					return -1
				}
				return 1
			}
			continue
		}
		if x.text != y.text {
			if x.text < y.text {
				return -1
			}
			return 1
		}
	}
	return len(as) - len(bs)
}

type keyPart struct {
	text  string
	num   uint64
	isNum bool
}

func naturalKey(s string) []keyPart {
	var out []keyPart
	last := 0
	for _, loc := range digits.FindAllStringIndex(s, -1) {
		out = append(out, keyPart{text: s[last:loc[0]]})
		n, _ := strconv.ParseUint(s[loc[0]:loc[1]], 10, 64)
		out = append(out, keyPart{text: s[loc[0]:loc[1]], num: n, isNum: true})
		last = loc[1]
	}
	return append(out, keyPart{text: s[last:]})
}

// verifySums checks the sha256 of every file under root against the origin.
func verifySums(root string, files []fileInfo, sums map[string]string) error {
	var bad []string
	for _, f := range files {
		got, err := modelgen.SHA256File(filepath.Join(root, f.rel))
		if err != nil {
			return fmt.Errorf("%s: %w", f.rel, err)
		}
		if got != sums[f.rel] {
			bad = append(bad, f.rel)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d files differ from the origin: %v", len(bad), len(files), bad)
	}
	return nil
}

// readCacheDir reads weightfs's cache files directly (objects/*/*.data), in
// name order, with the same reads as loadFileOrder: what a warm mount would
// cost without FUSE in the way.
func readCacheDir(cache string) (int64, error) {
	paths, err := filepath.Glob(filepath.Join(cache, "objects", "*", "*.data"))
	if err != nil {
		return 0, err
	}
	if len(paths) == 0 {
		return 0, fmt.Errorf("no objects/*/*.data under %s", cache)
	}
	sort.Strings(paths)
	buf := make([]byte, readSizes[len(readSizes)-1])
	var total int64
	for _, p := range paths {
		n, err := readSequential(p, buf)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// childFlag runs the bench binary as the transformers-order loader alone.
const childFlag = "-transformers-load-child"

// loadTransformersProc runs loadTransformers in a child process. It must not
// run in the bench's own process: a goroutine blocked in a page fault on a
// FUSE mapping cannot be preempted, so the Go runtime's next stop-the-world
// waits for it, and with it the emulated origin in this process, which the
// fault is waiting for: a deadlock. A separate loader process, as a model
// server is, avoids that; ctx's end kills it.
func loadTransformersProc(ctx context.Context, root string, shards []string, threads int) (int64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	args := append([]string{childFlag, root, strconv.Itoa(threads)}, shards...)
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("loader process: %v: %s", err, tailString(stderr.String(), 300))
	}
	return strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
}

// transformersChild is the child's main: args are root, threads, shards...
func transformersChild(args []string) {
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: "+childFlag+" ROOT THREADS SHARD...")
		os.Exit(2)
	}
	threads, err := strconv.Atoi(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	n, err := loadTransformers(args[0], args[2:], threads)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(n)
}
