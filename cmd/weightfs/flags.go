package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// Range checks on flag values. Each runs as the flag's Action, which
// urfave/cli calls only for a flag that was set (on the command line or
// through its environment variable), before the command runs: a bad value
// stops the command with one line naming the flag and what it accepts,
// instead of being taken silently (a --workers 0 mount that never fetches,
// a negative --read-timeout that fails every read at once).

// The upper bounds are far above any useful value; they exist so that a
// typo (an extra zero or two) fails here rather than as an out-of-memory
// kill, and so that MiB values cannot overflow when shifted to bytes.
const (
	maxWorkers  = 1024
	maxChunkMB  = 1024    // 1 GiB per chunk or range
	maxBudgetMB = 1 << 20 // 1 TiB of memory or readahead
	maxRetries  = 100
	maxDuration = 24 * time.Hour
)

// inRange is the one message for a number flag outside [lo, hi].
func inRange[T int | int64](name string, v, lo, hi T) error {
	if v < lo || v > hi {
		return fmt.Errorf("--%s %d: must be from %d to %d", name, v, lo, hi)
	}
	return nil
}

// intIn makes f refuse values outside [lo, hi].
func intIn(f *cli.IntFlag, lo, hi int) *cli.IntFlag {
	f.Action = func(_ *cli.Context, v int) error { return inRange(f.Name, v, lo, hi) }
	return f
}

// int64In makes f refuse values outside [lo, hi].
func int64In(f *cli.Int64Flag, lo, hi int64) *cli.Int64Flag {
	f.Action = func(_ *cli.Context, v int64) error { return inRange(f.Name, v, lo, hi) }
	return f
}

// durationIn makes f refuse durations outside [lo, hi]; zeroMeans, when
// not empty, says what 0 does in the message (lo is then 0).
func durationIn(f *cli.DurationFlag, lo, hi time.Duration, zeroMeans string) *cli.DurationFlag {
	f.Action = func(_ *cli.Context, v time.Duration) error {
		if v >= lo && v <= hi {
			return nil
		}
		if lo == 0 && zeroMeans != "" {
			return fmt.Errorf("--%s %s: must be from 0 (%s) to %s", f.Name, v, zeroMeans, hi)
		}
		return fmt.Errorf("--%s %s: must be more than 0 and at most %s", f.Name, v, hi)
	}
	return f
}

// positiveDuration refuses 0, negatives and values over maxDuration.
func positiveDuration(f *cli.DurationFlag) *cli.DurationFlag {
	return durationIn(f, time.Nanosecond, maxDuration, "")
}

// logLevels are what --log-level accepts (slog's names).
var logLevels = []string{"debug", "info", "warn", "error"}

func checkLogLevel(_ *cli.Context, v string) error {
	for _, l := range logLevels {
		if strings.EqualFold(v, l) {
			return nil
		}
	}
	return fmt.Errorf("--log-level %q: must be one of %s", v, strings.Join(logLevels, ", "))
}
