package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/cmd/weightfs/control"
)

// Exit codes of `weightfs wait`.
const (
	exitWaitTimeout = 1 // --timeout passed (or the daemon never answered)
	exitWaitFailed  = 2 // a file failed verification: it will never be served
)

func waitCommand() *cli.Command {
	return &cli.Command{
		Name:  "wait",
		Usage: "block until every file of a running mount is cached and verified (Truss's block_until_download_complete); exit 1 on timeout, 2 if a file failed verification",
		Flags: []cli.Flag{
			controlAskFlag,
			&cli.DurationFlag{Name: "timeout", Usage: "give up after this long; 0 waits forever, like Truss"},
			&cli.DurationFlag{Name: "poll", Value: 500 * time.Millisecond, Usage: "how often the daemon is asked"},
			&cli.DurationFlag{Name: "progress-every", Value: 10 * time.Second, Usage: "how often progress is printed to stderr (0: never)"},
		},
		Action: func(c *cli.Context) error {
			return runWait(c.Context, control.NewClient(c.String("control-addr")), waitOptions{
				timeout: c.Duration("timeout"), poll: c.Duration("poll"), progressEvery: c.Duration("progress-every"),
			}, os.Stderr)
		},
	}
}

type waitOptions struct {
	timeout       time.Duration // 0: forever
	poll          time.Duration
	progressEvery time.Duration // 0: no progress lines
}

// runWait polls /status until the mount is complete. An unreachable daemon
// is retried until the timeout, because `wait` is often started alongside
// the daemon and may ask before it listens.
func runWait(ctx context.Context, cl *control.Client, o waitOptions, stderr io.Writer) error {
	if o.poll <= 0 {
		o.poll = 500 * time.Millisecond
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
	warnedPrefetch := false
	for {
		st, err := cl.StatusWithin(ctx, max(o.poll, 5*time.Second))
		if err == nil {
			last, lastErr = st, nil
			done, code, msg := judge(st)
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
// when every file is cached and verified, done with exitWaitFailed when a
// file failed verification for good.
func judge(st *control.Status) (done bool, code int, msg string) {
	if !st.Ready {
		return false, 0, ""
	}
	if st.Totals.FailedFiles > 0 {
		var bad []string
		for _, v := range st.Volumes {
			for _, f := range v.FileList {
				if f.State == "bad" {
					bad = append(bad, v.Folder+"/"+f.Path)
				}
			}
		}
		return true, exitWaitFailed, fmt.Sprintf("%d file(s) failed verification (content does not match its checksum; reads of them fail with EIO): %s",
			len(bad), strings.Join(bad, ", "))
	}
	if st.Totals.Complete() {
		return true, 0, fmt.Sprintf("all %d files cached and verified (%s)", st.Totals.Files, humanBytes(st.Totals.TotalBytes))
	}
	return false, 0, ""
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
				left = append(left, fmt.Sprintf("%s/%s (%s of %s)", v.Folder, f.Path, humanBytes(f.CachedBytes), humanBytes(f.Size)))
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
