package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/chunkcache"
	"github.com/weightfs/weightfs/cmd/weightfs/control"
	"github.com/weightfs/weightfs/fetch"
)

// Exit codes of `weightfs wait`.
const (
	exitWaitTimeout   = 1 // --timeout passed (or the daemon never answered)
	exitWaitFailed    = 2 // a file failed verification for good: it will never be served
	exitWaitStalled   = 3 // a file makes no progress and keeps failing (or the daemon went away)
	exitWaitServedBad = 4 // all done, but some file's bytes reached readers before it failed verification
)

// defaultStallTimeout bounds how long `wait` watches a file that is not
// moving and keeps failing: it exits within this plus one --poll of the
// file's last progress, well under the 5 minutes a deployment may allow
// for a stuck start.
const defaultStallTimeout = 2 * time.Minute

func waitCommand() *cli.Command {
	return &cli.Command{
		Name: "wait",
		Usage: "block until every file of a running mount is cached and verified (Truss's block_until_download_complete); " +
			"exit 1 on --timeout, 2 if a file failed verification, 3 if a file makes no progress for --stall-timeout, " +
			"4 if a file was served before it failed verification (its readers must reload)",
		Flags: []cli.Flag{
			controlAskFlag,
			durationIn(&cli.DurationFlag{Name: "timeout", Usage: "give up after this long; 0: no overall limit, like Truss (a stuck file still ends the wait after --stall-timeout)"}, 0, 30*24*time.Hour, "no limit"),
			positiveDuration(&cli.DurationFlag{Name: "poll", Value: 500 * time.Millisecond, Usage: "how often the daemon is asked"}),
			durationIn(&cli.DurationFlag{Name: "progress-every", Value: 10 * time.Second, Usage: "how often progress is printed to stderr (0: never)"}, 0, maxDuration, "never"),
			positiveDuration(&cli.DurationFlag{Name: "stall-timeout", Value: defaultStallTimeout,
				Usage: "exit 3 when a file has stored nothing for this long while its fetches fail (or the daemon stops answering this long)"}),
		},
		Action: func(c *cli.Context) error {
			return runWait(c.Context, control.NewClient(c.String("control-addr")), waitOptions{
				timeout: c.Duration("timeout"), poll: c.Duration("poll"), progressEvery: c.Duration("progress-every"),
				stall: c.Duration("stall-timeout"),
			}, os.Stderr)
		},
	}
}

type waitOptions struct {
	timeout       time.Duration // 0: forever
	poll          time.Duration
	progressEvery time.Duration // 0: no progress lines
	stall         time.Duration // default defaultStallTimeout
}

// runWait polls /status until the mount is complete. An unreachable daemon
// is retried until the timeout, because `wait` is often started alongside
// the daemon and may ask before it listens; one that answered and then
// stopped answering is given up on after the stall timeout.
func runWait(ctx context.Context, cl *control.Client, o waitOptions, stderr io.Writer) error {
	if o.poll <= 0 {
		o.poll = 500 * time.Millisecond
	}
	if o.stall <= 0 {
		o.stall = defaultStallTimeout
	}
	start := time.Now()
	var deadline <-chan time.Time
	if o.timeout > 0 {
		t := time.NewTimer(o.timeout)
		defer t.Stop()
		deadline = t.C
	}
	var progress <-chan time.Time
	if o.progressEvery > 0 {
		t := time.NewTicker(o.progressEvery)
		defer t.Stop()
		progress = t.C
	}
	var last *control.Status
	var lastErr error
	var lastOK time.Time
	watch := newStallWatch(o.stall)
	warnedPrefetch := false
	for {
		st, err := cl.StatusWithin(ctx, max(o.poll, 5*time.Second))
		if err == nil {
			last, lastErr, lastOK = st, nil, time.Now()
			done, code, msg := judge(st, watch, time.Now())
			if done {
				if code == 0 {
					fmt.Fprintf(stderr, "weightfs wait: %s in %s\n", msg, time.Since(start).Round(100*time.Millisecond))
					return nil
				}
				return cli.Exit(msg, code)
			}
			if st.Ready && !st.Prefetch.Enabled && !warnedPrefetch {
				warnedPrefetch = true
				fmt.Fprintln(stderr, "weightfs wait: the mount runs with --prefetch=false: only reads fill the cache, so this waits for readers to touch every byte")
			}
		} else {
			lastErr = err
			if last != nil && time.Since(lastOK) >= o.stall {
				return cli.Exit(fmt.Sprintf("the weightfs daemon at %s stopped answering %s ago (%v); is the mount still running?",
					cl.Addr(), time.Since(lastOK).Round(time.Second), err), exitWaitStalled)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return cli.Exit(timeoutMessage(o.timeout, cl.Addr(), last, lastErr), exitWaitTimeout)
		case <-progress:
			fmt.Fprintln(stderr, "weightfs wait: "+progressLine(last, lastErr))
		case <-time.After(o.poll):
		}
	}
}

// judge decides from one status whether waiting is over: done with code 0
// when every file is cached and verified; with exitWaitFailed when a file
// failed verification for good; with exitWaitServedBad when all are done
// but some file's bytes were served before it failed verification (and was
// healed); with exitWaitStalled when a file is stuck (see stallWatch).
func judge(st *control.Status, w *stallWatch, now time.Time) (done bool, code int, msg string) {
	if !st.Ready {
		return false, 0, ""
	}
	// A file that failed for good ends the wait once every other file is
	// settled too, so that what exits 2 leaves the rest verified (or names
	// them as stuck below).
	unsettled := filesWhere(st, func(f chunkcache.ObjectStats) bool {
		return f.State != "bad" && f.State != "verified" && f.State != "complete"
	})
	if st.Totals.FailedFiles > 0 && len(unsettled) == 0 {
		bad := filesWhere(st, func(f chunkcache.ObjectStats) bool { return f.State == "bad" })
		return true, exitWaitFailed, fmt.Sprintf("%d file(s) failed verification (content does not match its checksum; reads of them fail with EIO): %s",
			len(bad), strings.Join(bad, ", "))
	}
	if b := st.CacheBudget; b != nil && b.LimitBytes < st.Totals.TotalBytes && !st.Totals.Complete() {
		return true, exitWaitStalled, fmt.Sprintf("the model (%s) is larger than --cache-size (%s): it can never be cached whole, so waiting for it cannot end; "+
			"reads still work, fetching what was evicted again. Raise --cache-size above the model to use wait", humanBytes(st.Totals.TotalBytes), humanBytes(b.LimitBytes))
	}
	if st.Totals.Complete() {
		if served := filesWhere(st, func(f chunkcache.ObjectStats) bool { return f.ServedBad }); len(served) > 0 {
			return true, exitWaitServedBad, fmt.Sprintf("all %d files are now cached and verified, but %d of them had bytes served to readers "+
				"before they failed verification (they were fetched again since): processes that read them before verification must reload: %s",
				st.Totals.Files, len(served), strings.Join(served, ", "))
		}
		return true, 0, fmt.Sprintf("all %d files cached and verified (%s)", st.Totals.Files, humanBytes(st.Totals.TotalBytes))
	}
	if stuck := w.stuck(st, now); len(stuck) > 0 {
		return true, exitWaitStalled, fmt.Sprintf("%d file(s) made no progress for %s while their fetches fail; the daemon keeps retrying them, "+
			"but this wait gives up: %s", len(stuck), w.limit, strings.Join(stuck, "; "))
	}
	return false, 0, ""
}

// filesWhere names the files (volume/path, quoted if need be) that match.
func filesWhere(st *control.Status, match func(chunkcache.ObjectStats) bool) []string {
	var out []string
	for _, v := range st.Volumes {
		for _, f := range v.FileList {
			if match(f) {
				out = append(out, fetch.QuoteName(v.Folder+"/"+f.Path))
			}
		}
	}
	return out
}

// stallWatch tells a file that is stuck from one that is slow. A file is
// stuck when it is not done, its fetches or stores fail (an error, or
// failures counted since its last progress), and it has made no progress
// for the limit by both clocks: this wait saw neither its cached bytes, its
// state nor its last-progress time change, and the daemon's last-progress
// time (when it reports one) is as old. Either alone could mislead: a
// wait started late sees nothing change at first, and a daemon that heals
// chunks in place may store without growing the cached bytes.
type stallWatch struct {
	limit time.Duration
	seen  map[string]fileMark // by volume folder + NUL + path
}

type fileMark struct {
	cached       int64
	state        string
	lastProgress time.Time
	since        time.Time // wait's clock: when this mark was first seen
}

func newStallWatch(limit time.Duration) *stallWatch {
	return &stallWatch{limit: limit, seen: map[string]fileMark{}}
}

// stuck names the stuck files with their last error.
func (w *stallWatch) stuck(st *control.Status, now time.Time) []string {
	daemonNow := st.Now
	if daemonNow.IsZero() {
		daemonNow = now
	}
	var out []string
	for _, v := range st.Volumes {
		for _, f := range v.FileList {
			if f.State == "verified" || f.State == "complete" {
				continue
			}
			k := v.Folder + "\x00" + f.Path
			m, ok := w.seen[k]
			if !ok || m.cached != f.CachedBytes || m.state != f.State || !m.lastProgress.Equal(f.LastProgress) {
				m = fileMark{cached: f.CachedBytes, state: f.State, lastProgress: f.LastProgress, since: now}
				w.seen[k] = m
			}
			failing := f.Error != "" || f.Failures > 0
			if !failing || now.Sub(m.since) < w.limit {
				continue
			}
			if !f.LastProgress.IsZero() && daemonNow.Sub(f.LastProgress) < w.limit {
				continue
			}
			why := f.Error
			if why == "" {
				why = fmt.Sprintf("%d failed attempts", f.Failures)
			}
			out = append(out, fmt.Sprintf("%s (%s of %s cached): %s", fetch.QuoteName(v.Folder+"/"+f.Path),
				humanBytes(f.CachedBytes), humanBytes(f.Size), fetch.EscapeControl(why)))
		}
	}
	return out
}

// progressLine says how far the cache is, in bytes and files.
func progressLine(st *control.Status, err error) string {
	if st == nil {
		return fmt.Sprintf("waiting for the daemon: %v", err)
	}
	if !st.Ready {
		return "the daemon is listing the models; the mount is not ready yet"
	}
	t := st.Totals
	s := fmt.Sprintf("%s of %s cached (%.1f%%), %d of %d files left", humanBytes(t.CachedBytes), humanBytes(t.TotalBytes),
		t.Percent, t.Files-t.DoneFiles, t.Files)
	if st.Prefetch.Rate > 0 {
		s += fmt.Sprintf(", %s/s", humanBytes(int64(st.Prefetch.Rate)))
	}
	if e := st.Prefetch.ETASeconds; e != nil && *e > 0 {
		s += ", ETA " + secondsString(*e)
	}
	return s
}

// timeoutMessage is the one line `wait` ends with on timeout: how far the
// cache got and which files are left, or why the daemon never answered.
func timeoutMessage(timeout time.Duration, addr string, st *control.Status, err error) string {
	if st == nil {
		return fmt.Sprintf("timed out after %s: the weightfs daemon at %s never answered (%v); is `weightfs mount --control-addr %s` running?",
			timeout, addr, err, addr)
	}
	msg := fmt.Sprintf("timed out after %s: %s", timeout, progressLine(st, nil))
	if !st.Ready {
		return msg
	}
	var left []string
	for _, v := range st.Volumes {
		for _, f := range v.FileList {
			if f.State != "verified" && f.State != "complete" {
				left = append(left, fmt.Sprintf("%s (%s of %s)", fetch.QuoteName(v.Folder+"/"+f.Path), humanBytes(f.CachedBytes), humanBytes(f.Size)))
			}
		}
	}
	const show = 5
	if len(left) > show {
		left = append(left[:show], fmt.Sprintf("and %d more", len(left)-show))
	}
	if len(left) > 0 {
		msg += ": " + strings.Join(left, ", ")
	}
	if err != nil {
		msg += fmt.Sprintf(" (the daemon stopped answering: %v)", err)
	}
	return msg
}

func secondsString(sec float64) string {
	return time.Duration(sec * float64(time.Second)).Round(time.Second).String()
}
