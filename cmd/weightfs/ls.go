package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/chunkcache"
	"github.com/weightfs/weightfs/fetch/config"
)

func lsCommand() *cli.Command {
	return &cli.Command{
		Name:  "ls",
		Usage: "print the resolved manifest of every entry (commit, files, sizes) without downloading content",
		Flags: []cli.Flag{configFlag, cacheDirFlag, secretsDirFlag, dataDirFlag, refreshFlag, logLevelFlag},
		Action: func(c *cli.Context) error {
			log := newLogger(c)
			entries, err := config.Load(c.String("config"))
			if err != nil {
				return err
			}
			logWarnings(log, entries)
			cache, err := chunkcache.Open(chunkcache.Options{Dir: c.String("cache-dir"), MemoryBytes: -1, Logger: log})
			if err != nil {
				return err
			}
			defer cache.Close()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			env := sourceEnv(c, log)
			rs, err := resolveAll(ctx, entries, env, cache, c.Bool("refresh"))
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
			for _, r := range rs {
				m := r.manifest
				fmt.Fprintf(os.Stdout, "# %s  repo=%s revision=%s commit=%s folder=%s files=%d size=%d (%s)\n",
					r.entry.Name(), m.RepoID, m.Revision, m.Commit, r.entry.VolumeFolder, len(m.Files), m.TotalSize(), humanBytes(m.TotalSize()))
				for _, f := range m.Files {
					fmt.Fprintf(w, "%d\t  %s\t%s\t\n", f.Size, f.Checksum, f.Path)
				}
				w.Flush()
			}
			return nil
		},
	}
}
