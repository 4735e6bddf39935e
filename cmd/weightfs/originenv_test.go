package main

import (
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/fetch"
)

// Every command's listings get a deadline from its own flags. Fails before
// this change: sourceEnv set no retry policy, so listings took
// fetch.DefaultRetryPolicy (30 s per attempt) whatever --fetch-timeout said.
func TestListingRetryFollowsEachCommandsFlags(t *testing.T) {
	cases := []struct {
		name string
		cmd  *cli.Command
		args []string
		want fetch.RetryPolicy
	}{
		{"mount", mountCommand(), []string{"--fetch-timeout", "2s", "--fetch-retries", "3"}, fetch.RetryPolicy{Attempts: 3, AttemptTimeout: 2 * time.Second}},
		{"mount defaults", mountCommand(), nil, fetch.RetryPolicy{Attempts: 4, AttemptTimeout: 30 * time.Second}},
		{"ls", lsCommand(), []string{"--fetch-timeout", "1500ms", "--fetch-retries", "2"}, fetch.RetryPolicy{Attempts: 2, AttemptTimeout: 1500 * time.Millisecond}},
		{"ls defaults", lsCommand(), nil, fetch.RetryPolicy{Attempts: 4, AttemptTimeout: 30 * time.Second}},
		{"fetch", fetchCommand(), []string{"--range-timeout", "10s", "--retries", "7"}, fetch.RetryPolicy{Attempts: 7, AttemptTimeout: 10 * time.Second}},
		{"fetch defaults: capped at 30s", fetchCommand(), nil, fetch.RetryPolicy{Attempts: 5, AttemptTimeout: 30 * time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got fetch.RetryPolicy
			tc.cmd.Action = func(c *cli.Context) error { got = sourceEnv(c, nil).Retry; return nil }
			app := &cli.App{Name: "weightfs", Commands: []*cli.Command{tc.cmd}}
			if err := app.Run(append([]string{"weightfs", tc.cmd.Name, "--config", "c.yaml"}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			if got.Attempts != tc.want.Attempts || got.AttemptTimeout != tc.want.AttemptTimeout {
				t.Errorf("listing policy %d attempts of %s, want %d of %s", got.Attempts, got.AttemptTimeout, tc.want.Attempts, tc.want.AttemptTimeout)
			}
		})
	}
}
