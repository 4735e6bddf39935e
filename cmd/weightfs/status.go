package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/cmd/weightfs/control"
	"github.com/weightfs/weightfs/fetch"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show how much of a running mount is cached: per volume files, bytes, percent, rate and ETA",
		Flags: []cli.Flag{
			controlAskFlag,
			&cli.BoolFlag{Name: "json", Usage: "print the daemon's /status JSON as is (every file, its state and error)"},
		},
		Action: func(c *cli.Context) error {
			ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
			defer cancel()
			cl := control.NewClient(c.String("control-addr"))
			st, raw, err := cl.Status(ctx)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				_, err := os.Stdout.Write(raw)
				return err
			}
			return printStatus(os.Stdout, st)
		},
	}
}

// printStatus writes the human table: one row per volume, then a total.
func printStatus(w io.Writer, st *control.Status) error {
	if !st.Ready {
		fmt.Fprintf(w, "not ready: the daemon is listing the models (up %s)\n", secondsString(st.UptimeSeconds))
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VOLUME\tREPO\tFILES\tDONE\tFAILED\tCACHED\tTOTAL\tPERCENT\tRATE\tETA")
	for _, v := range st.Volumes {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%.1f%%\t%s\t%s\n", fetch.QuoteName(v.Folder), fetch.EscapeControl(repoAt(v)), v.Files, v.DoneFiles, v.FailedFiles,
			humanBytes(v.CachedBytes), humanBytes(v.TotalBytes), v.Percent, rateString(v.Rate), etaString(v.ETASeconds))
	}
	if len(st.Volumes) > 1 {
		t := st.Totals
		fmt.Fprintf(tw, "total\t\t%d\t%d\t%d\t%s\t%s\t%.1f%%\t%s\t%s\n", t.Files, t.DoneFiles, t.FailedFiles,
			humanBytes(t.CachedBytes), humanBytes(t.TotalBytes), t.Percent, rateString(st.Prefetch.Rate), etaString(st.Prefetch.ETASeconds))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	state := "running"
	switch {
	case st.Prefetch.Complete:
		state = "complete: every file cached and verified"
	case !st.Prefetch.Enabled:
		state = "off (only reads fill the cache)"
	}
	fmt.Fprintf(w, "prefetch %s; up %s\n", state, secondsString(st.UptimeSeconds))
	for _, v := range st.Volumes {
		for _, f := range v.FileList {
			name := fetch.QuoteName(v.Folder + "/" + f.Path)
			if f.State == "bad" || f.Error != "" {
				fmt.Fprintf(w, "%s: %s: %s\n", name, f.State, fetch.EscapeControl(f.Error))
			}
			if f.ServedBad {
				fmt.Fprintf(w, "%s: served_bad: bytes reached readers before it failed verification; processes that read it then must reload it\n", name)
			}
		}
	}
	return nil
}

func repoAt(v control.VolumeStatus) string {
	s := v.Kind + ":" + v.Repo
	if len(v.Commit) >= 12 {
		return s + "@" + v.Commit[:12]
	}
	if v.Revision != "" {
		return s + "@" + v.Revision
	}
	return s
}

func rateString(r float64) string {
	if r <= 0 {
		return "-"
	}
	return humanBytes(int64(r)) + "/s"
}

func etaString(e *float64) string {
	switch {
	case e == nil:
		return "unknown"
	case *e == 0:
		return "done"
	}
	return secondsString(*e)
}
