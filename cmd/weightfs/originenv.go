package main

import (
	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/fetch"
)

// listingTimeoutFlag and listingRetriesFlag give `ls` the names `mount` uses
// for the deadline and attempts of every origin request, listings included.
func listingTimeoutFlag() cli.Flag {
	return positiveDuration(&cli.DurationFlag{Name: "fetch-timeout", Value: fetch.DefaultRetryPolicy.AttemptTimeout,
		Usage: "deadline of one listing request attempt (Hub revision and tree, S3 and GCS object listings)"})
}

func listingRetriesFlag() cli.Flag {
	return intIn(&cli.IntFlag{Name: "fetch-retries", Value: fetch.DefaultRetryPolicy.Attempts,
		Usage: "attempts per listing request before the listing fails"}, 1, maxRetries)
}

// listingRetry is the policy of each listing and metadata request to an
// origin: --fetch-timeout and --fetch-retries where the command has them
// (mount, ls); else fetch's --range-timeout and --retries, the deadline
// capped at the default 30 s, since a listing page is small and fetch's
// ranges may take 2 minutes. Zero fields take fetch.DefaultRetryPolicy's.
func listingRetry(c *cli.Context) fetch.RetryPolicy {
	p := fetch.RetryPolicy{Attempts: c.Int("fetch-retries"), AttemptTimeout: c.Duration("fetch-timeout")}
	if p.Attempts == 0 && p.AttemptTimeout == 0 {
		p.Attempts = c.Int("retries")
		if d := c.Duration("range-timeout"); d > 0 {
			p.AttemptTimeout = min(d, fetch.DefaultRetryPolicy.AttemptTimeout)
		}
	}
	return p
}
