package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weightfs/weightfs/integration/hubemu"
)

// Columns of the table, in order. The reference a baseline is compared with
// is the weightfs configuration that reads the same origin.
const (
	colHF       = "weightfs-hf"
	colS3       = "weightfs-s3"
	colRclone   = "rclone-s3"
	colS3fs     = "s3fs-s3"
	colDownload = "download"
	colFetch    = "weightfs-fetch"
)

// bench holds the origins and the results of one run.
type bench struct {
	s          settings
	work       string // caches, mountpoints, downloads
	originRoot string
	hub        *hubemu.Server
	s3         *s3Origin
	main       *origin
	res        *results
	env        envInfo
	logSeq     int
	lean       *leanResult // the -lean-size-mb row, when run
}

func newBench(s settings) (*bench, error) {
	b := &bench{s: s, res: newResults()}
	var err error
	if b.work, err = os.MkdirTemp(s.workDir, "weightfs-bench-"); err != nil {
		return nil, err
	}
	if b.originRoot, err = os.MkdirTemp(s.originDir, "weightfs-bench-origin-"); err != nil {
		return nil, err
	}
	b.env = collectEnv(s)
	opts := hubemu.Options{PerConnBytesPerSec: s.perConn, AggregateBytesPerSec: s.aggregate, TTFB: s.ttfb}
	if b.hub, err = hubemu.New(opts); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if b.main, err = b.addOrigin(s.sizeMB); err != nil {
		return nil, err
	}
	step("generated a %d-shard %d MiB model (%d files, %d bytes) in %s, served by the Hub emulator at %s",
		len(b.main.model.Safetensors), s.sizeMB, len(b.main.files), b.main.total, since(t0), b.hub.URL())
	if b.s3, err = newS3Origin(opts); err != nil {
		return nil, err
	}
	if err := b.s3.add(b.main, "model"); err != nil {
		return nil, err
	}
	step("S3 emulator (gofakes3, same throttle) at %s, bucket %s, prefix model/", b.s3.url, s3Bucket)
	return b, nil
}

func (b *bench) addOrigin(sizeMB int64) (*origin, error) {
	o, err := newOrigin(b.originRoot, sizeMB, b.s.shards)
	if err != nil {
		return nil, err
	}
	return o, b.hub.AddRepo(hubemu.Repo{ID: o.repoID, Dir: o.dir})
}

func (b *bench) close() {
	b.hub.Close()
	b.s3.close()
	b.env.loadAfter = loadAvg()
	if !b.s.keep {
		os.RemoveAll(b.work)
		os.RemoveAll(b.originRoot)
	}
}

// remove deletes a run's files unless -keep.
func (b *bench) remove(path string) {
	if !b.s.keep {
		os.RemoveAll(path)
	}
}

func (b *bench) skip(col string) bool { return b.s.skip[col] }

// run measures every configuration on the main model, then weightfs-hf on
// the extra sizes.
func (b *bench) run() {
	o := b.main
	b.res.limit(rowTTFT, b.loadLimit(firstTensorBytes(o)))
	b.res.limit(rowColdFile, b.loadLimit(o.total))
	b.res.limit(rowColdTF, b.loadLimit(o.shardBytes()))
	for _, t := range []*tool{b.weightfsTool("hf", o), b.weightfsTool("s3", o), b.rcloneTool(o), b.s3fsTool(o)} {
		if !b.skip(t.name) {
			b.runTool(t, o, true)
		}
	}
	if !b.skip(colDownload) {
		b.runEager(colDownload, o, func(ctx context.Context, dst string) (string, error) {
			return dst, download(ctx, b.hub.URL(), o.repoID, o.files, dst, b.s.dlRanges, b.s.dlRangeMB<<20)
		})
	}
	if help, ok := b.fetchCommand(); ok && !b.skip(colFetch) {
		b.res.hasFetch = true
		b.runEager(colFetch, o, func(ctx context.Context, dst string) (string, error) { return b.runFetch(ctx, help, o, dst) })
	}
	for _, size := range b.s.rssSizesMB {
		if size == b.s.sizeMB || b.skip(colHF) {
			continue
		}
		t0 := time.Now()
		eo, err := b.addOrigin(size)
		if err != nil {
			b.res.fail(rowRSS(size), colHF, err)
			continue
		}
		step("generated a %d MiB model for the RSS check in %s", size, since(t0))
		b.runTool(b.weightfsTool("hf", eo), eo, false)
		os.RemoveAll(eo.dir)
	}
	b.runLean()
}

// runTool measures one FUSE filesystem. Each cold measurement gets its own
// daemon, a fresh cache directory and an empty page cache; full adds the
// listing, first-tensor and warm rows (the extra sizes only need the loads).
func (b *bench) runTool(t *tool, o *origin, full bool) {
	col := t.name
	base := filepath.Join(b.work, fmt.Sprintf("%s-%dMiB", col, o.sizeMB))
	mp := filepath.Join(base, "mnt")
	defer b.remove(base)
	coldFile, coldTF := rowColdFile, rowColdTF
	if !full {
		coldFile, coldTF = rowColdFileAt(o.sizeMB), rowColdTFAt(o.sizeMB)
		b.res.limit(coldFile, b.loadLimit(o.total))
		b.res.limit(coldTF, b.loadLimit(o.shardBytes()))
	}
	var peak int64
	var peakErr error
	notePeak := func(m *mount) {
		if n, err := peakRSS(m.cmd.Process.Pid); err != nil {
			peakErr = err
		} else {
			peak = max(peak, n)
		}
	}

	if full {
		step("%s: mount to listing", col)
		b.session(t, mp, filepath.Join(base, "cache-listing"), true, []string{rowListing, rowStat}, func(m *mount) {
			b.res.set(rowListing, col, cell{d: m.ready.Sub(m.start)})
			err := m.guard(b.s.stepTimeout, func(context.Context) error { return statAll(m.root(), o.files) })
			b.res.set(rowStat, col, cell{d: time.Since(m.start), err: err})
		})
		step("%s: time to first tensor x%d", col, b.s.ttftRuns)
		b.res.set(rowTTFT, col, b.repeat(t, mp, b.s.ttftRuns, rowTTFT, func(int) string { return filepath.Join(base, "cache-ttft") },
			func(i int, m *mount) cell {
				var n int64
				err := m.guard(b.s.stepTimeout, func(context.Context) (err error) {
					n, err = firstTensor(filepath.Join(m.root(), o.model.Safetensors[0]))
					return err
				})
				c := cell{d: time.Since(m.ready), bytes: n, err: err}
				b.diagRun(m, fmt.Sprintf("first tensor %d/%d", i+1, b.s.ttftRuns), n)
				return c
			}))
		if b.s.ttftOnly {
			return
		}
	}

	// Cold loads vary from run to run on this VM as much as first tensors
	// do: the full comparison takes the median of -cold-runs.
	runs := 1
	if full {
		runs = b.s.coldRuns
	}
	warmCache := filepath.Join(base, "cache-file")
	step("%s: cold load in file order (%d MiB) x%d", col, o.sizeMB, runs)
	fileCache := func(i int) string {
		if i == 0 {
			return warmCache // kept for the warm row
		}
		return filepath.Join(base, "cache-file-more")
	}
	b.res.set(coldFile, col, b.repeat(t, mp, runs, coldFile, fileCache, func(i int, m *mount) cell {
		var n int64
		err := m.guard(b.s.stepTimeout, func(context.Context) (err error) { n, err = loadFileOrder(m.root(), o.files); return err })
		c := cell{d: time.Since(m.ready), bytes: n, err: err}
		notePeak(m)
		b.diagRun(m, fmt.Sprintf("cold file-order load %d/%d, %d MiB", i+1, runs, o.sizeMB), n)
		if err == nil && i == 0 {
			// Correctness, outside the timed part: every byte read
			// through this mount equals the origin's.
			b.res.verify(fmt.Sprintf("%s (%d MiB)", col, o.sizeMB), m.guard(b.s.stepTimeout, func(context.Context) error {
				return verifySums(m.root(), o.files, o.sums)
			}))
			if full {
				b.awaitComplete(m)
			}
		}
		return c
	}))
	os.RemoveAll(fileCache(1))

	step("%s: cold load in transformers order (%d MiB) x%d", col, o.sizeMB, runs)
	b.res.set(coldTF, col, b.repeat(t, mp, runs, coldTF, func(int) string { return filepath.Join(base, "cache-tf") },
		func(i int, m *mount) cell {
			var n int64
			err := m.guard(b.s.stepTimeout, func(ctx context.Context) (err error) {
				n, err = loadTransformersProc(ctx, m.root(), o.model.Safetensors, b.s.threads)
				return err
			})
			c := cell{d: time.Since(m.ready), bytes: n, err: err}
			notePeak(m)
			b.diagRun(m, fmt.Sprintf("cold transformers-order load %d/%d, %d MiB", i+1, runs, o.sizeMB), n)
			return c
		}))
	b.res.set(rowRSS(o.sizeMB), col, cell{mem: peak, err: peakErr})

	if !full {
		return
	}
	// Warm reads hit the local disk, whose speed on this VM swings by 2x
	// from one read to the next (the host caches too): take the median of
	// several runs, alternating with the direct read the row is compared to.
	step("%s: warm reload (new daemon, same cache) x%d", col, b.s.warmRuns)
	var warm, direct []cell
	for i := 0; i < b.s.warmRuns; i++ {
		c := cell{}
		err := b.session(t, mp, warmCache, false, nil, func(m *mount) {
			var n int64
			err := m.guard(b.s.stepTimeout, func(context.Context) (err error) { n, err = loadFileOrder(m.root(), o.files); return err })
			c = cell{d: time.Since(m.ready), bytes: n, err: err}
			b.diagRun(m, fmt.Sprintf("warm file-order load %d/%d", i+1, b.s.warmRuns), n)
		})
		if err != nil {
			c = cell{err: err}
		}
		warm = append(warm, c)
		if col == colHF {
			// The warm row's limit: the same bytes read straight from the
			// cache directory's files, page cache dropped.
			if err := dropCaches(); err != nil {
				b.res.note(err.Error())
			}
			t0 := time.Now()
			n, err := readCacheDir(warmCache)
			direct = append(direct, cell{d: time.Since(t0), bytes: n, err: err})
		}
	}
	b.res.set(rowWarm, col, median(warm))
	b.res.diag(fmt.Sprintf("%s, warm file-order loads: %s", col, spread(warm)))
	if col == colHF {
		m := median(direct)
		b.res.limit(rowWarm, limit{d: m.d, bytes: m.bytes, err: m.err,
			how: "the same bytes read directly from the cache dir's objects/*/*.data, page cache dropped (" + m.note + ")"})
		b.res.diag(fmt.Sprintf("direct reads of the weightfs-hf cache dir: %s", spread(direct)))
	}
}

// repeat runs a cold measurement n times, each on a new
// daemon and the emptied cache dir cache(i), and returns the median run;
// a mount that fails counts as a failed run.
func (b *bench) repeat(t *tool, mp string, n int, row string, cache func(i int) string, run func(i int, m *mount) cell) cell {
	var cells []cell
	for i := 0; i < n; i++ {
		var c cell
		if err := b.session(t, mp, cache(i), true, []string{row}, func(m *mount) { c = run(i, m) }); err != nil {
			c = cell{err: err}
		}
		cells = append(cells, c)
	}
	return median(cells)
}

// median is the run with the median duration, noting the spread; an error
// wins when no run succeeded.
func median(cs []cell) cell {
	var ok []cell
	for _, c := range cs {
		if c.err == nil {
			ok = append(ok, c)
		}
	}
	if len(ok) == 0 {
		if len(cs) == 0 {
			return cell{err: fmt.Errorf("no runs")}
		}
		return cs[0]
	}
	sort.Slice(ok, func(i, j int) bool { return ok[i].d < ok[j].d })
	m := ok[len(ok)/2]
	if len(cs) > 1 {
		m.note = fmt.Sprintf("median of %d: %s", len(cs), spread(cs))
	}
	return m
}

// spread lists the durations of runs.
func spread(cs []cell) string {
	var parts []string
	for _, c := range cs {
		if c.err != nil {
			parts = append(parts, "error")
		} else {
			parts = append(parts, dur(c.d))
		}
	}
	return strings.Join(parts, ", ")
}

// session starts t over cache (emptied first when fresh) with the page cache
// dropped, runs f and stops the daemon. A mount that fails fails rows.
func (b *bench) session(t *tool, mp, cache string, fresh bool, rows []string, f func(m *mount)) error {
	if fresh {
		os.RemoveAll(cache)
	}
	if err := dropCaches(); err != nil {
		b.res.note(err.Error())
	}
	if t.counters != nil {
		t.counters.reset()
	}
	m, err := startMount(t, mp, cache, b.s.mountTimeout)
	if err != nil {
		for _, r := range rows {
			b.res.fail(r, t.name, err)
		}
		return err
	}
	defer func() {
		m.stop()
		b.saveLog(m)
	}()
	f(m)
	return nil
}

// awaitComplete lets a weightfs daemon finish verifying the cache before it
// is stopped, outside any timed step, so the warm row starts from a
// complete, verified cache (as a pod restarted after a finished load would)
// rather than measuring a daemon that verifies while it serves.
// prefetchOff reports whether weightfs flags turn the prefetch off, in any
// spelling the CLI takes (-prefetch=0, --prefetch=false, ...; a boolean flag
// takes no separate value).
func prefetchOff(args []string) bool {
	for _, a := range args {
		if v, ok := strings.CutPrefix(strings.TrimLeft(a, "-"), "prefetch="); ok {
			if on, err := strconv.ParseBool(v); err == nil && !on {
				return true
			}
		}
	}
	return false
}

func (b *bench) awaitComplete(m *mount) {
	const line = "prefetch complete"
	if !strings.HasPrefix(m.tool.name, "weightfs") || prefetchOff(b.s.weightfsArgs) {
		return // only a prefetching weightfs says when all is verified
	}
	t0 := time.Now()
	select {
	case <-m.logs.ch(line):
		b.res.diag(fmt.Sprintf("%s: cache verified %s after the sha256 pass", m.tool.name, time.Since(t0).Round(time.Millisecond)))
	case <-time.After(2 * time.Minute):
		b.res.note(fmt.Sprintf("%s: the cache was not verified 2 minutes after the load; the warm row measures a daemon still verifying", m.tool.name))
	case <-m.exited:
	}
}

// saveLog keeps the tail of a daemon's output under -daemon-logs.
func (b *bench) saveLog(m *mount) {
	if b.s.logDir == "" {
		return
	}
	b.logSeq++
	name := fmt.Sprintf("%02d-%s.log", b.logSeq, m.tool.name)
	os.MkdirAll(b.s.logDir, 0o755)
	if err := os.WriteFile(filepath.Join(b.s.logDir, name), m.logs.bytes(), 0o644); err != nil {
		b.res.note(err.Error())
	}
}

// diagRun records what one timed run cost: origin traffic, daemon CPU and
// memory, and when weightfs reported the whole model cached.
func (b *bench) diagRun(m *mount, what string, read int64) {
	d := fmt.Sprintf("%s, %s: read %s in %s", m.tool.name, what, mib(read), time.Since(m.ready).Round(time.Millisecond))
	if m.tool.counters != nil {
		reqs, bytes := m.tool.counters.read()
		d += fmt.Sprintf("; origin sent %s in %d requests", mib(bytes), reqs)
		if read > 0 {
			d += fmt.Sprintf(" (%.2f× the bytes read)", float64(bytes)/float64(read))
		}
	}
	if c := m.atReady.since(); c != "" {
		d += "; " + c
	}
	if cpu, err := cpuTime(m.cmd.Process.Pid); err == nil {
		d += fmt.Sprintf("; daemon CPU %s", cpu.Round(10*time.Millisecond))
	}
	if rss, err := peakRSS(m.cmd.Process.Pid); err == nil {
		d += fmt.Sprintf("; daemon peak RSS %s", mib(rss))
	}
	if at, ok := m.logs.seen("prefetch complete"); ok {
		d += fmt.Sprintf("; \"prefetch complete\" %s after the listing", at.Sub(m.ready).Round(time.Millisecond))
	}
	b.res.diag(d)
}

// runEager measures a download-then-load baseline: fetch everything into a
// local folder (page cache dropped before), then load from there. The loads
// run right after the download, with its bytes still in the page cache, as
// they would be in a pod; the warm row re-reads them with the cache dropped.
// fetch returns the folder the model's files ended up in.
func (b *bench) runEager(col string, o *origin, fetch func(ctx context.Context, dst string) (string, error)) {
	dst := filepath.Join(b.work, col)
	defer b.remove(dst)
	os.RemoveAll(dst)
	rows := []string{rowListing, rowStat, rowTTFT, rowColdFile, rowColdTF, rowWarm}
	if err := dropCaches(); err != nil {
		b.res.note(err.Error())
	}
	b.hub.ResetCounters()
	step("%s: download %d MiB", col, o.sizeMB)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Now()
	var root string
	err, _ := runWithin(b.s.stepTimeout, func() (err error) { root, err = fetch(ctx, dst); return err }, cancel)
	dl := time.Since(t0)
	if err != nil {
		for _, r := range rows {
			b.res.fail(r, col, fmt.Errorf("download: %w", err))
		}
		return
	}
	reqs, bytes := hubCounters{b.hub}.read()
	b.res.diag(fmt.Sprintf("%s: downloaded %s in %s (%s/s); origin sent %s in %d requests",
		col, mib(o.total), dl.Round(time.Millisecond), mb(float64(o.total)/dl.Seconds()), mib(bytes), reqs))
	b.res.set(rowListing, col, cell{d: dl, note: "= download"})
	b.res.set(rowStat, col, cell{d: dl, note: "= download"})

	local := func(row string, load func() (int64, error)) {
		t0 := time.Now()
		var n int64
		err, _ := runWithin(b.s.stepTimeout, func() (err error) { n, err = load(); return err }, cancel)
		b.res.set(row, col, cell{d: dl + time.Since(t0), bytes: n, err: err, note: "download + load"})
	}
	local(rowTTFT, func() (int64, error) { return firstTensor(filepath.Join(root, o.model.Safetensors[0])) })
	local(rowColdFile, func() (int64, error) { return loadFileOrder(root, o.files) })
	local(rowColdTF, func() (int64, error) { return loadTransformersProc(ctx, root, o.model.Safetensors, b.s.threads) })
	b.res.verify(fmt.Sprintf("%s (%d MiB)", col, o.sizeMB), verifySums(root, o.files, o.sums))

	var warm []cell
	for i := 0; i < b.s.warmRuns; i++ {
		if err := dropCaches(); err != nil {
			b.res.note(err.Error())
		}
		t0 = time.Now()
		n, err := loadFileOrder(root, o.files)
		warm = append(warm, cell{d: time.Since(t0), bytes: n, err: err})
	}
	b.res.set(rowWarm, col, median(warm))
	b.res.diag(fmt.Sprintf("%s, warm file-order loads from local disk: %s", col, spread(warm)))
}

// runFetch runs `weightfs fetch` into dst and returns where the files are.
func (b *bench) runFetch(ctx context.Context, help string, o *origin, dst string) (string, error) {
	cfg := filepath.Join(b.work, "config-fetch.yaml")
	text := fmt.Sprintf("model_cache:\n  - repo_id: %s\n    revision: main\n    use_volume: true\n    volume_folder: model\n", o.repoID)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		return "", err
	}
	args, err := fetchArgs(help, cfg, dst, filepath.Join(b.work, "fetch-cache"))
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, b.s.bin, args...)
	cmd.Env = append(cleanEnv(), "HF_ENDPOINT="+b.hub.URL())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, tailString(string(out), 400))
	}
	// The files may land in dst or in dst/<volume_folder>.
	for _, root := range []string{dst, filepath.Join(dst, "model")} {
		if _, err := os.Stat(filepath.Join(root, o.files[0].rel)); err == nil {
			return root, nil
		}
	}
	return "", fmt.Errorf("weightfs fetch succeeded but %s is neither in %s nor in its model/ folder", o.files[0].rel, dst)
}

// loadLimit is the origin's bound for reading n bytes: one time to first
// byte, then n at the aggregate limit.
func (b *bench) loadLimit(n int64) limit {
	return limit{d: b.s.ttfb + time.Duration(float64(n)/float64(b.s.aggregate)*float64(time.Second)), bytes: n,
		how: fmt.Sprintf("TTFB + %s ÷ aggregate", mib(n))}
}

// firstTensorBytes is what firstTensor reads from the first shard.
func firstTensorBytes(o *origin) int64 {
	h := o.model.Headers[o.model.Safetensors[0]]
	order := h.Order()
	if len(order) == 0 {
		return h.DataStart
	}
	t := h.Tensors[order[0]]
	return h.DataStart + t.End - t.Begin
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }
