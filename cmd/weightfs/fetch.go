package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/eager"
	"github.com/weightfs/weightfs/fetch/hfcache"
)

// exitInterrupted is the exit status of a fetch stopped by SIGINT/SIGTERM
// (128 + SIGINT, as a shell reports it); everything written so far is kept
// and the next run resumes it.
const exitInterrupted = 130

func fetchCommand() *cli.Command {
	return &cli.Command{
		Name:  "fetch",
		Usage: "download every file of the config to local disk now (no FUSE), verified, resumable",
		Description: `For hosts that cannot mount. use_volume: true entries go to <dest>/<volume_folder>/<path>;
use_volume: false entries go to the Hugging Face cache layout (HF_HUB_CACHE, else HF_HOME/hub,
else ~/.cache/huggingface/hub), so from_pretrained works with HF_HUB_OFFLINE=1; s3:// and gs://
entries with use_volume: false go to <dest>/<bucket>/<path>.
Exits 0 only when every file is in place and verified; 1 with a one-line reason otherwise;
130 when interrupted (run it again to resume).`,
		Flags: []cli.Flag{configFlag, cacheDirFlag, secretsDirFlag, dataDirFlag, refreshFlag, logLevelFlag,
			&cli.StringFlag{Name: "dest", Value: "/app/model_cache", EnvVars: []string{"WEIGHTFS_DEST"},
				Usage: "where use_volume: true entries (and s3/gs buckets) are written"},
			&cli.StringFlag{Name: "hf-cache", EnvVars: []string{"WEIGHTFS_HF_CACHE"},
				Usage: "Hugging Face hub cache for use_volume: false entries (default: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)"},
			intIn(&cli.IntFlag{Name: "workers", Value: 64, EnvVars: []string{"WEIGHTFS_FETCH_WORKERS"},
				Usage: "ranged reads in flight over all files (memory: workers × chunk-mb)"}, 1, maxWorkers),
			intIn(&cli.IntFlag{Name: "chunk-mb", Value: 8, Usage: "MiB per ranged read"}, 1, maxChunkMB),
			intIn(&cli.IntFlag{Name: "retries", Value: eager.DefaultRetry.Attempts, Usage: "attempts per range"}, 1, maxRetries),
			positiveDuration(&cli.DurationFlag{Name: "range-timeout", Value: eager.DefaultRetry.AttemptTimeout, Usage: "deadline of one attempt at one range"}),
			durationIn(&cli.DurationFlag{Name: "progress-interval", Value: 5 * time.Second,
				Usage: "how often progress is logged when stderr is not a terminal (0: never)"}, 0, maxDuration, "never"),
		},
		Action: runFetch,
	}
}

func runFetch(c *cli.Context) error {
	log := newLogger(c)
	if c.Int("workers") <= 0 || c.Int("chunk-mb") <= 0 {
		return fmt.Errorf("--workers and --chunk-mb must be positive")
	}
	rs, ctx, release, err := resolveConfig(c, log)
	if err != nil {
		return err
	}
	defer release()
	hfDir := c.String("hf-cache")
	if hfDir == "" {
		if hfDir, err = hfcache.Dir(os.Getenv); err != nil {
			return err
		}
	}
	lay := layout{dest: c.String("dest"), hfCache: hfDir, multi: len(rs) > 1, ledgers: map[string]*eager.Ledger{}}
	targets, err := lay.targets(rs)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if !r.entry.UseVolume && r.entry.Kind == config.KindHF {
			repo := hfcache.Repo{Cache: hfDir, ID: r.manifest.RepoID}
			rev := r.entry.Revision
			if rev == "" {
				rev = "main" // what both the Hub and from_pretrained default to
			}
			if err := repo.WriteRef(rev, r.manifest.Commit); err != nil {
				return err
			}
		}
	}
	d, err := eager.New(targets, eager.Options{
		Workers:   c.Int("workers"),
		ChunkSize: int64(c.Int("chunk-mb")) << 20,
		Retry: fetch.RetryPolicy{Attempts: c.Int("retries"), AttemptTimeout: c.Duration("range-timeout"),
			BaseBackoff: eager.DefaultRetry.BaseBackoff, MaxBackoff: eager.DefaultRetry.MaxBackoff},
		Logger: log,
	})
	if err != nil {
		return err
	}
	pr := d.Progress()
	log.Info("fetching", "files", pr.Files, "size", humanBytes(pr.TotalBytes), "dest", lay.where(rs),
		"workers", c.Int("workers"), "chunk", humanBytes(int64(c.Int("chunk-mb"))<<20))
	done := make(chan struct{})
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		reportFetch(d, done, c.Duration("progress-interval"), log)
	}()
	err = d.Run(ctx)
	close(done)
	<-reported
	pr = d.Progress()
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return cli.Exit(fmt.Sprintf("interrupted: %d of %d files in place (%s of %s); run again to resume",
				pr.FilesDone, pr.Files, humanBytes(pr.DoneBytes), humanBytes(pr.TotalBytes)), exitInterrupted)
		}
		return err
	}
	secs := max(pr.Elapsed.Seconds(), 1e-3)
	log.Info("fetch complete: every file in place and verified", "files", pr.Files, "size", humanBytes(pr.TotalBytes),
		"fetched", humanBytes(pr.FetchedBytes), "elapsed", pr.Elapsed.Round(time.Millisecond),
		"rate", humanBytes(int64(float64(pr.FetchedBytes)/secs))+"/s")
	return nil
}

// layout maps resolved manifests to download targets.
type layout struct {
	dest, hfCache string
	multi         bool                     // several entries: labels name the volume or repo
	ledgers       map[string]*eager.Ledger // by root
}

func (l *layout) ledger(root string) *eager.Ledger {
	if lg, ok := l.ledgers[root]; ok {
		return lg
	}
	lg := eager.OpenLedger(root)
	l.ledgers[root] = lg
	return lg
}

func (l *layout) where(rs []*resolved) string {
	var out []string
	for _, r := range rs {
		if !r.entry.UseVolume && r.entry.Kind == config.KindHF {
			out = append(out, hfcache.Repo{Cache: l.hfCache, ID: r.manifest.RepoID}.Dir())
		} else {
			out = append(out, l.dest)
		}
	}
	return strings.Join(dedupe(out), ",")
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// targets lists one target per final file. In the Hugging Face layout one
// blob may back several snapshot paths (identical files, or two entries of
// one repo): it is fetched once and linked from each.
func (l *layout) targets(rs []*resolved) ([]eager.Target, error) {
	var out []eager.Target
	byPath := map[string]int{} // final path -> index in out
	type link struct{ commit, file string }
	links := map[string][]link{} // blob path -> snapshot links
	for _, r := range rs {
		read := fetch.RangeReader(r.src)
		m := r.manifest
		hf := !r.entry.UseVolume && r.entry.Kind == config.KindHF
		if hf && m.Commit == "" {
			return nil, fmt.Errorf("%s: no commit was resolved; run again with --refresh", r.entry.Name())
		}
		for _, f := range m.Files {
			if !filepath.IsLocal(filepath.FromSlash(f.Path)) {
				return nil, fmt.Errorf("%s: refusing file %q: not a clean relative path", r.entry.Name(), f.Path)
			}
			t := eager.Target{File: f, Reader: read, Label: f.Path}
			switch {
			case hf:
				repo := hfcache.Repo{Cache: l.hfCache, ID: m.RepoID}
				t.Path = repo.BlobPath(hfcache.Etag(f))
				t.Ledger = l.ledger(repo.Dir())
				if l.multi {
					t.Label = m.RepoID + "/" + f.Path
				}
				links[t.Path] = append(links[t.Path], link{m.Commit, f.Path})
				if _, dup := byPath[t.Path]; !dup {
					path := t.Path
					t.Placed = func() error {
						for _, k := range links[path] {
							if err := repo.Link(k.commit, k.file, filepath.Base(path)); err != nil {
								return err
							}
						}
						return nil
					}
				}
			case r.entry.UseVolume:
				t.Path = filepath.Join(l.dest, r.entry.VolumeFolder, filepath.FromSlash(f.Path))
				t.Ledger = l.ledger(l.dest)
				if l.multi {
					t.Label = r.entry.VolumeFolder + "/" + f.Path
				}
			default: // s3:// or gs:// baked into <dest>/<bucket>, as the original does
				t.Path = filepath.Join(l.dest, r.entry.Bucket(), filepath.FromSlash(f.Path))
				t.Ledger = l.ledger(l.dest)
				if l.multi {
					t.Label = r.entry.Bucket() + "/" + f.Path
				}
			}
			if i, dup := byPath[t.Path]; dup {
				if prev := out[i].File; prev.Size != f.Size || prev.Checksum != f.Checksum {
					return nil, fmt.Errorf("%s and %s would both be written to %s with different content",
						out[i].Label, t.Label, t.Path)
				}
				continue
			}
			byPath[t.Path] = len(out)
			out = append(out, t)
		}
	}
	return out, nil
}

// reportFetch shows progress until done: a bar redrawn in place when stderr
// is a terminal, else one log line per interval.
func reportFetch(d *eager.Downloader, done <-chan struct{}, every time.Duration, log *slog.Logger) {
	if isTerminal(os.Stderr) {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		r := rate{}
		for {
			select {
			case <-done:
				fmt.Fprintf(os.Stderr, "\r\033[K%s\n", progressBar(d.Progress(), r.update(d.Progress()), terminalWidth(os.Stderr)))
				return
			case <-t.C:
				p := d.Progress()
				fmt.Fprintf(os.Stderr, "\r\033[K%s", progressBar(p, r.update(p), terminalWidth(os.Stderr)))
			}
		}
	}
	if every <= 0 {
		<-done
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	r := rate{}
	for {
		select {
		case <-done:
			return
		case <-t.C:
			p := d.Progress()
			bps := r.update(p)
			log.Info("fetch progress", "percent", percent(p), "done", humanBytes(p.DoneBytes), "total", humanBytes(p.TotalBytes),
				"rate", humanBytes(int64(bps))+"/s", "eta", eta(p, bps), "files_done", p.FilesDone, "files", p.Files,
				"files_failed", p.FilesFailed)
		}
	}
}

// rate is the fetch rate over a sliding window of a few seconds, so the
// ETA follows the link rather than the run's slow start.
type rate struct {
	samples []rateSample
}

type rateSample struct {
	at    time.Time
	bytes int64
}

func (r *rate) update(p eager.Progress) float64 {
	now := time.Now()
	r.samples = append(r.samples, rateSample{now, p.FetchedBytes})
	for len(r.samples) > 2 && now.Sub(r.samples[1].at) > 10*time.Second {
		r.samples = r.samples[1:]
	}
	first := r.samples[0]
	if dt := now.Sub(first.at).Seconds(); dt > 0 {
		return float64(p.FetchedBytes-first.bytes) / dt
	}
	if s := p.Elapsed.Seconds(); s > 0 {
		return float64(p.FetchedBytes) / s
	}
	return 0
}

func percent(p eager.Progress) float64 {
	return math.Round(float64(p.DoneBytes)*1000/float64(max(p.TotalBytes, 1))) / 10
}

func eta(p eager.Progress, bps float64) string {
	if p.DoneBytes >= p.TotalBytes {
		return "0s"
	}
	if bps <= 0 || p.Elapsed < 2*time.Second {
		return "unknown" // too early to tell
	}
	return time.Duration(float64(p.TotalBytes-p.DoneBytes) / bps * float64(time.Second)).Round(time.Second).String()
}

// progressBar is one line for a terminal; the bar takes what the text,
// padded to a steady width, leaves of it.
func progressBar(p eager.Progress, bps float64, width int) string {
	text := fmt.Sprintf(" %5.1f%% %10s/%-10s %10s/s  ETA %-8s %d/%d files", percent(p), humanBytes(p.DoneBytes),
		humanBytes(p.TotalBytes), humanBytes(int64(bps)), eta(p, bps), p.FilesDone, p.Files)
	if p.FilesFailed > 0 {
		text += fmt.Sprintf(" (%d failed)", p.FilesFailed)
	}
	bar := min(width-len(text)-3, 50)
	if bar < 10 {
		return text
	}
	fill := int(float64(bar) * float64(p.DoneBytes) / float64(max(p.TotalBytes, 1)))
	fill = min(max(fill, 0), bar)
	return "[" + strings.Repeat("=", fill) + strings.Repeat(" ", bar-fill) + "]" + text
}

// isTerminal reports whether f is a terminal (TCGETS succeeds).
func isTerminal(f *os.File) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}

func terminalWidth(f *os.File) int {
	var ws struct{ row, col, x, y uint16 }
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TIOCGWINSZ, uintptr(unsafe.Pointer(&ws)))
	if errno != 0 || ws.col == 0 {
		return 80
	}
	return int(ws.col)
}
