package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Rows of the table.
const (
	rowListing  = "mount → listing served"
	rowStat     = "mount → every file stat'ed"
	rowTTFT     = "first tensor, cold (from listing)"
	rowColdFile = "cold load, file order"
	rowColdTF   = "cold load, transformers order (mmap, 4 threads)"
	rowWarm     = "warm reload, file order (new daemon, median)"
)

func rowRSS(sizeMB int64) string {
	return fmt.Sprintf("daemon peak RSS, cold loads, %d MiB model", sizeMB)
}
func rowColdFileAt(sizeMB int64) string {
	return fmt.Sprintf("cold load, file order, %d MiB model", sizeMB)
}
func rowColdTFAt(sizeMB int64) string {
	return fmt.Sprintf("cold load, transformers order, %d MiB model", sizeMB)
}

var fixedRows = []string{rowListing, rowStat, rowTTFT, rowColdFile, rowColdTF, rowWarm}

// cell is one measurement: a duration (with the bytes it read), or a memory
// size for the RSS rows, or the error that stopped it.
type cell struct {
	d     time.Duration
	bytes int64
	mem   int64
	err   error
	note  string
}

// limit is the origin's bound for a row.
type limit struct {
	d     time.Duration
	bytes int64
	err   error
	how   string
}

type results struct {
	mu       sync.Mutex
	order    []string                   // GUARDED_BY(mu); rows in order of first appearance
	cells    map[string]map[string]cell // GUARDED_BY(mu); row -> column -> cell
	limits   map[string]limit           // GUARDED_BY(mu)
	diags    []string                   // GUARDED_BY(mu)
	notes    []string                   // GUARDED_BY(mu)
	verified []string                   // GUARDED_BY(mu)
	hasFetch bool
}

func newResults() *results {
	return &results{cells: map[string]map[string]cell{}, limits: map[string]limit{}}
}

func (r *results) set(row, col string, c cell) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cells[row] == nil {
		r.cells[row] = map[string]cell{}
		r.order = append(r.order, row)
	}
	r.cells[row][col] = c
	if c.err != nil {
		r.notes = append(r.notes, fmt.Sprintf("%s / %s: %v", col, row, c.err))
	}
	fmt.Printf("         %-18s %-52s %s\n", col, row, c.String())
}

func (r *results) fail(row, col string, err error) { r.set(row, col, cell{err: err}) }

func (r *results) limit(row string, l limit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.limits[row] = l
}

func (r *results) diag(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.diags = append(r.diags, s)
	fmt.Println("         " + s)
}

func (r *results) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, s)
}

func (r *results) verify(what string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.verified = append(r.verified, fmt.Sprintf("%s: FAILED: %v", what, err))
	} else {
		r.verified = append(r.verified, what+": every file's sha256 equals the origin's")
	}
	fmt.Println("         sha256 " + r.verified[len(r.verified)-1])
}

func (c cell) String() string {
	switch {
	case c.err != nil:
		msg := strings.Join(strings.Fields(c.err.Error()), " ")
		if len(msg) > 70 {
			msg = msg[:67] + "..."
		}
		return "error: " + msg
	case c.mem > 0:
		return mib(c.mem)
	case c.d == 0:
		return "—"
	case c.bytes > 0 && c.d > 100*time.Millisecond:
		return fmt.Sprintf("%s · %s/s", dur(c.d), mb(float64(c.bytes)/c.d.Seconds()))
	}
	return dur(c.d)
}

func (c cell) value() float64 {
	if c.err != nil {
		return 0
	}
	if c.mem > 0 {
		return float64(c.mem)
	}
	return c.d.Seconds()
}

func (l limit) String() string {
	if l.err != nil {
		return "error: " + l.err.Error()
	}
	if l.d == 0 {
		return "—"
	}
	return dur(l.d)
}

// columns: the weightfs reference, then each baseline with the column it is
// compared with (the weightfs configuration that reads the same origin).
type column struct{ key, title, ref string }

func (r *results) columns() []column {
	cols := []column{
		{colS3, "weightfs (S3)", ""},
		{colRclone, "rclone mount (S3)", colS3},
		{colS3fs, "s3fs (S3)", colS3},
		{colDownload, "download, then load (Hub)", colHF},
	}
	if r.hasFetch {
		cols = append(cols, column{colFetch, "weightfs fetch, then load (Hub)", colHF})
	}
	return cols
}

// rows in display order: the fixed rows, the RSS rows, then the rest.
func (r *results) rows() []string {
	out := append([]string{}, fixedRows...)
	for _, row := range r.order {
		if strings.HasPrefix(row, "daemon peak RSS") {
			out = append(out, row)
		}
	}
	for _, row := range r.order {
		if !contains(out, row) {
			out = append(out, row)
		}
	}
	return out
}

// table is the grid of strings both outputs print.
func (r *results) table() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	head := []string{"row", "weightfs (Hub)", "origin limit", "weightfs ÷ limit"}
	cols := r.columns()
	for _, c := range cols {
		head = append(head, c.title)
	}
	grid := [][]string{head}
	for _, row := range r.rows() {
		cells := r.cells[row]
		hf, hasHF := cells[colHF]
		lim := r.limits[row]
		line := []string{row, "—", lim.String(), "—"}
		if hasHF {
			line[1] = hf.String()
			if lim.d > 0 && hf.err == nil && hf.d > 0 {
				line[3] = fmt.Sprintf("%.2f", hf.d.Seconds()/lim.d.Seconds())
			}
		}
		for _, c := range cols {
			v, ok := cells[c.key]
			s := "—"
			if ok {
				s = v.String()
				if ref, ok := cells[c.ref]; ok && c.ref != "" && ref.value() > 0 && v.value() > 0 {
					s += fmt.Sprintf(" (×%.1f)", v.value()/ref.value())
				}
			}
			line = append(line, s)
		}
		grid = append(grid, line)
	}
	return grid
}

// report is the finished run: settings, table, checks and diagnostics.
type report struct {
	b *bench
	r *results
}

func (b *bench) report() *report { return &report{b: b, r: b.res} }

func (rp *report) text() string {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	for _, line := range rp.r.table() {
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	tw.Flush()
	out := "\n" + rp.settings() + "\n" + buf.String() + "\n"
	if lr := rp.b.lean; lr != nil {
		buf.Reset()
		tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
		for _, line := range lr.table() {
			fmt.Fprintln(tw, strings.Join(line, "\t"))
		}
		tw.Flush()
		out += lr.heading() + "\n\n" + buf.String() + "\n" + lr.spreads() + "\n\n"
	}
	for _, v := range rp.r.verified {
		out += "sha256: " + v + "\n"
	}
	return out
}

func (rp *report) settings() string {
	s, e := rp.b.s, rp.b.env
	o := rp.b.main
	var b strings.Builder
	fmt.Fprintf(&b, "- command: `%s` (via `make bench`)\n", s.command)
	fmt.Fprintf(&b, "- date: %s; weightfs %s\n", e.date, e.commit)
	fmt.Fprintf(&b, "- machine: %s, %d cores, %s memory, kernel %s; load average before %s, after %s\n",
		e.cpu, runtime.NumCPU(), e.mem, e.kernel, e.loadBefore, e.loadAfter)
	fmt.Fprintf(&b, "- model: generated llama-like checkpoint, %d MiB requested, %d files, %s in all, %d safetensors shards (%s); extra sizes for the RSS check: %v MiB\n",
		s.sizeMB, len(o.files), mib(o.total), len(o.model.Safetensors), mib(o.shardBytes()), s.rssSizesMB)
	fmt.Fprintf(&b, "- origin throttle (Hub CDN and S3 alike): %.0f Mbit/s (%s/s) per connection, %.1f Gbit/s (%s/s) aggregate, %s to first byte; origin files on %s\n",
		float64(s.perConn)*8/1e6, mb(float64(s.perConn)), float64(s.aggregate)*8/1e9, mb(float64(s.aggregate)), s.ttfb, s.originDir)
	fmt.Fprintf(&b, "- weightfs mount: %s; extra flags: %q; extra environment: %q\n", e.weightfsDefaults, strings.Join(s.weightfsArgs, " "), strings.Join(s.weightfsEnv, " "))
	fmt.Fprintf(&b, "- rclone: %s, flags `%s`\n", e.rclone, strings.Join(rcloneSettings, " "))
	fmt.Fprintf(&b, "- s3fs: %s, `-o %s,use_cache=<dir>`\n", e.s3fs, s3fsSettings)
	fmt.Fprintf(&b, "- download baseline: %d ranged GETs of %d MiB in flight (resolve on the Hub, 302 to the CDN), written in place on local disk\n",
		s.dlRanges, s.dlRangeMB)
	fmt.Fprintf(&b, "- loads: file order = every file in path order, read sequentially with reads cycling 1, 2, 3, 4 MiB; transformers order = all tensors sorted by natural key, copied out of mmaps of the shards by %d threads sharing one queue; step deadline %s\n",
		s.threads, s.stepTimeout)
	fmt.Fprintf(&b, "- page cache dropped before every cold run: %v; then %s of memory touched and freed, untimed, so every run starts with memory the VM's host has not taken back (-prime-mb); %s\n", e.root, primeLabel(), e.goVersion)
	return b.String()
}

// generatedMarker separates the hand-written header of BENCHMARKS.md (kept
// across runs) from what the bench writes.
const generatedMarker = "<!-- Everything below this line is written by `make bench`; edit only the text above it. -->"

func (rp *report) writeMarkdown(path string) error {
	header := defaultHeader
	if old, err := os.ReadFile(path); err == nil {
		if i := bytes.Index(old, []byte(generatedMarker)); i >= 0 {
			header = string(old[:i])
		}
	}
	var b strings.Builder
	b.WriteString(strings.TrimRight(header, "\n") + "\n\n" + generatedMarker + "\n\n")
	b.WriteString("## Latest run\n\n" + rp.settings() + "\n")
	writeGrid(&b, rp.r.table())
	b.WriteString("\nOrigin limits: " + rp.limitNotes() + "\n")
	if lr := rp.b.lean; lr != nil {
		b.WriteString("\n### " + lr.heading() + "\n\n")
		writeGrid(&b, lr.table())
		b.WriteString("\nRuns: " + lr.spreads() + ".\n")
	}
	b.WriteString("\n### Correctness\n\n")
	for _, v := range rp.r.verified {
		b.WriteString("- sha256, " + v + "\n")
	}
	if len(rp.r.notes) > 0 {
		b.WriteString("\n### Errors and notes\n\n")
		for _, n := range rp.r.notes {
			b.WriteString("- " + strings.Join(strings.Fields(n), " ") + "\n")
		}
	}
	b.WriteString("\n### Per-run diagnostics\n\n")
	for _, d := range rp.r.diags {
		b.WriteString("- " + d + "\n")
	}
	b.WriteString("\n" + howToRead)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// writeGrid writes a table in Markdown, its first line the header.
func writeGrid(b *strings.Builder, grid [][]string) {
	for i, line := range grid {
		for j := range line {
			line[j] = strings.ReplaceAll(line[j], "|", `\|`)
		}
		b.WriteString("| " + strings.Join(line, " | ") + " |\n")
		if i == 0 {
			b.WriteString("|" + strings.Repeat(" --- |", len(line)) + "\n")
		}
	}
}

func (rp *report) limitNotes() string {
	var parts []string
	for _, row := range rp.r.rows() {
		if l, ok := rp.r.limits[row]; ok && l.how != "" {
			parts = append(parts, fmt.Sprintf("%s: %s", row, l.how))
		}
	}
	return strings.Join(parts, "; ") + "."
}

const howToRead = `### How to read

- Every cell is one measurement on this machine in this run; rerun before comparing with
  numbers from elsewhere. Lower is better everywhere.
- **origin limit** is the fastest any client could go against the emulated origin: one time to
  first byte plus the bytes the row reads divided by the aggregate bandwidth (the per-connection
  limit can be beaten by parallel ranges, the aggregate cannot). **weightfs ÷ limit** is 1.00 for a
  client that saturates the origin. For the warm row the limit is reading the cache directory's
  files directly, so the ratio is the cost of going through FUSE and the daemon.
- **×N** after a baseline's value is that baseline divided by weightfs on the same origin:
  rclone and s3fs are compared with weightfs over S3, the download baselines with weightfs over the
  Hub. ×3.0 means weightfs took a third of the time (or used a third of the memory).
- Cold rows start a new daemon on an empty cache directory with the page cache dropped, and are
  timed from the listing (weightfs: its "listing served" log line; rclone and s3fs: the mount
  appearing), so mount time is only in the first two rows. For the download baselines the
  listing rows are the download itself (nothing can be loaded before it ends), and the load rows
  are download time plus the load from local disk, run right after the download with its bytes
  still in the page cache, as in a pod.
- For each mounted configuration, the first-tensor row is the median of -ttft-runs cold runs
  and each cold load row the median of -cold-runs (each run on a new daemon and an empty cache,
  each in the diagnostics): on this 2-core VM one run varies by up to 2x with what the host is
  doing, and a single run said little. The download baselines run once.
- The warm row restarts the daemon on the cache the cold file-order load filled (weightfs is
  first left to finish verifying it, untimed, as a pod restarted after a finished load would
  find it), page cache dropped; for the download baselines it is re-reading the local files with the page cache
  dropped. It reads the local disk, whose speed swings about 2x from one read to the next on this
  VM, so it is the median of -warm-runs runs (each run is in the diagnostics).
- Peak RSS is VmHWM of the filesystem's process, taken right after each cold load; it should
  not grow with the model size.
`

// defaultHeader starts BENCHMARKS.md the first time; later runs keep
// whatever text is above the marker.
const defaultHeader = `# Benchmarks

Produced by ` + "`make bench`" + ` (integration/cmd/bench); not part of ` + "`make test`" + `.
`

// envInfo describes the machine and the tools.
type envInfo struct {
	date, kernel, cpu, mem, goVersion string
	rclone, s3fs, commit              string
	weightfsDefaults                  string
	loadBefore, loadAfter             string
	root                              bool
}

func collectEnv(s settings) envInfo {
	e := envInfo{date: time.Now().Format("2006-01-02 15:04 MST"), goVersion: runtime.Version(), root: os.Geteuid() == 0}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.kernel = strings.TrimSpace(string(b))
	}
	e.cpu = firstMatch("/proc/cpuinfo", `(?m)^model name\s*:\s*(.+)$`)
	if kb := firstMatch("/proc/meminfo", `(?m)^MemTotal:\s*(\d+) kB`); kb != "" {
		var n int64
		fmt.Sscan(kb, &n)
		e.mem = fmt.Sprintf("%.1f GiB", float64(n)/(1<<20))
	}
	e.rclone, _ = toolVersion("rclone", "version")
	e.s3fs, _ = toolVersion("s3fs", "--version")
	e.commit = gitCommit()
	e.weightfsDefaults = mountDefaults(s.bin)
	e.loadBefore = loadAvg()
	return e
}

func firstMatch(path, re string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if m := regexp.MustCompile(re).FindSubmatch(b); m != nil {
		return strings.TrimSpace(string(m[1]))
	}
	return ""
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "(commit unknown)"
	}
	c := "commit " + strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += " plus uncommitted changes"
	}
	return c
}

// mountDefaults reads the tuning defaults from `weightfs mount --help`, so
// the report shows what the binary really ran with.
func mountDefaults(bin string) string {
	out, err := exec.Command(bin, "mount", "--help").CombinedOutput()
	if err != nil {
		return "(mount --help failed)"
	}
	var parts []string
	for _, name := range []string{"chunk-mb", "workers", "readahead-max-mb", "memory-cache-mb", "prefetch", "passthrough", "fetch-timeout"} {
		re := regexp.MustCompile(`--` + name + `\b[^\n]*\(default: ([^)]*)\)`)
		if m := re.FindSubmatch(out); m != nil {
			parts = append(parts, fmt.Sprintf("--%s %s", name, m[1]))
		}
	}
	return strings.Join(parts, ", ") + " (defaults)"
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func dur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func mb(bytesPerSec float64) string {
	if bytesPerSec >= 1e9 {
		return fmt.Sprintf("%.2f GB", bytesPerSec/1e9)
	}
	return fmt.Sprintf("%.0f MB", bytesPerSec/1e6)
}

func tailString(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func primeLabel() string {
	if primeBytes <= 0 {
		return "nothing (priming off)"
	}
	return fmt.Sprintf("%d MiB", primeBytes>>20)
}
