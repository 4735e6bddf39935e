package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/chunkcache/shared"
)

// The fleet's shared cache (chunkcache/shared): mount reads through it,
// gc cleans it.
var (
	sharedCacheFlag = &cli.StringFlag{Name: "shared-cache", EnvVars: []string{"WEIGHTFS_SHARED_CACHE"},
		Usage: "a chunk store the fleet shares, between this node's cache and the origin: a directory on a shared filesystem " +
			"(NFS, EFS, CephFS, JuiceFS, a SeaweedFS mount), s3://bucket/prefix or gs://bucket/prefix (the region's bucket, " +
			"with the AWS chain / AWS_ENDPOINT_URL or ADC / STORAGE_EMULATOR_HOST). One per organisation"}
	sharedTimeoutFlag = positiveDuration(&cli.DurationFlag{Name: "shared-cache-timeout", Value: 20 * time.Second,
		Usage: "deadline of one request to the shared cache; past it, reads go to the origin and the shared cache is tried again after a backoff"})
	sharedLeaseFlag = durationIn(&cli.DurationFlag{Name: "shared-lease-ttl", Value: 10 * time.Second,
		Usage: "how long a node's claim to fetch a chunk for the fleet lasts unless renewed (a crashed node's chunks are taken over after this)"},
		time.Second, time.Hour, "")
)

// openSharedTier opens --shared-cache, or returns nil when it is not set.
func openSharedTier(ctx context.Context, c *cli.Context, log *slog.Logger) (*shared.Tier, error) {
	spec := strings.TrimSpace(c.String("shared-cache"))
	if spec == "" {
		return nil, nil
	}
	b, err := openBlobs(ctx, c, spec, log)
	if err != nil {
		return nil, err
	}
	log.Info("shared cache", "store", b.String())
	return shared.New(b, shared.Options{OpTimeout: c.Duration("shared-cache-timeout"), LeaseTTL: c.Duration("shared-lease-ttl"), Logger: log}), nil
}

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "remove from --shared-cache what no node has used for --unused-for (never what is under a live lease or being written)",
		Flags: []cli.Flag{
			logLevelFlag, sharedCacheFlag, sharedCredsFlag, sharedEndpointFlag,
			&cli.StringFlag{Name: "unused-for", Value: "14d", Usage: "age of last use past which an object goes: a Go duration, or days as 14d"},
			&cli.BoolFlag{Name: "dry-run", Usage: "report what would go, remove nothing"},
		},
		Action: runGC,
	}
}

func runGC(c *cli.Context) error {
	log := newLogger(c)
	unused, err := parseAge(c.String("unused-for"))
	if err != nil {
		return err
	}
	spec := strings.TrimSpace(c.String("shared-cache"))
	if spec == "" {
		return fmt.Errorf("gc: --shared-cache is not set: give the directory or bucket the fleet shares")
	}
	ctx, cancel := context.WithTimeout(c.Context, 6*time.Hour)
	defer cancel()
	b, err := openBlobs(ctx, c, spec, log)
	if err != nil {
		return err
	}
	rep, err := shared.GC(ctx, b, shared.GCOptions{UnusedFor: unused, DryRun: c.Bool("dry-run")})
	if err != nil {
		return err
	}
	verb := "removed"
	if c.Bool("dry-run") {
		verb = "would remove"
	}
	fmt.Fprintf(c.App.Writer, "%s: %d objects; %s %d (%s) unused for %s; kept %d under lease; %s %d stale temporary files, %d lapsed leases, %d records of gone nodes\n",
		b, rep.Objects, verb, rep.Removed, humanBytes(rep.BytesRemoved), c.String("unused-for"), rep.KeptLeased, verb, rep.TempRemoved, rep.LeasesRemoved, rep.NodesRemoved)
	return nil
}

// parseAge is a Go duration, or a whole number of days ("14d").
func parseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 36500 {
			return 0, fmt.Errorf("--unused-for %q: days must be a whole number from 1 to 36500, as 14d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--unused-for %q: give a positive duration (36h) or days (14d)", s)
	}
	return d, nil
}
