package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/fetch"
)

func lsCommand() *cli.Command {
	return &cli.Command{
		Name:  "ls",
		Usage: "print the resolved manifest of every entry (commit, files, sizes) without downloading content",
		Flags: []cli.Flag{configFlag, cacheDirFlag, secretsDirFlag, dataDirFlag, refreshFlag, logLevelFlag,
			listingTimeoutFlag(), listingRetriesFlag()},
		Action: func(c *cli.Context) error {
			log := newLogger(c)
			rs, _, done, err := resolveConfig(c, log)
			if err != nil {
				return err
			}
			defer done()
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			for _, r := range rs {
				m := r.manifest
				// Names and checksums come from the origin: quoted where they
				// hold anything a terminal would act on.
				q := fetch.QuoteName
				fmt.Fprintf(os.Stdout, "# %s  repo=%s revision=%s commit=%s folder=%s files=%d size=%d (%s)\n",
					fetch.EscapeControl(r.entry.Name()), q(m.RepoID), q(m.Revision), q(m.Commit), q(r.entry.VolumeFolder), len(m.Files), m.TotalSize(), humanBytes(m.TotalSize()))
				for _, f := range m.Files {
					fmt.Fprintf(w, "%14d\t%s\t%s\n", f.Size, q(f.Path), q(f.Checksum.String()))
				}
				w.Flush()
			}
			return nil
		},
	}
}
