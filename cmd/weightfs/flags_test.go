package main

import (
	"bytes"
	"strings"
	"testing"
)

// runApp runs the command line as main does, without exiting, and returns
// its error and everything it printed.
func runApp(t *testing.T, args ...string) (error, string) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	err := app.Run(append([]string{"weightfs"}, args...))
	return err, out.String()
}

// Fails before this change: every one of these values was taken silently
// (a --workers 0 mount never prefetched, --read-timeout -1s failed every
// read at once, --log-level bogus logged at info), and the command went on
// to read the config.
func TestInvalidFlagValuesAreRefusedNamingTheFlag(t *testing.T) {
	const cfg = "/nonexistent/config.yaml" // never read: the check comes first
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"mount", "-c", cfg, "--workers", "0"}, "--workers 0: must be from 1 to 1024"},
		{[]string{"mount", "-c", cfg, "--workers", "-3"}, "--workers -3: must be from 1 to 1024"},
		{[]string{"mount", "-c", cfg, "--chunk-mb", "-1"}, "--chunk-mb -1: must be from 1 to 1024"},
		{[]string{"mount", "-c", cfg, "--chunk-mb", "0"}, "--chunk-mb 0: must be from 1 to 1024"},
		{[]string{"mount", "-c", cfg, "--chunk-mb", "99999999"}, "--chunk-mb 99999999: must be from 1 to 1024"},
		{[]string{"mount", "-c", cfg, "--read-timeout", "-1s"}, "--read-timeout -1s: must be more than 0 and at most 24h0m0s"},
		{[]string{"mount", "-c", cfg, "--read-timeout", "0"}, "--read-timeout 0s: must be more than 0"},
		{[]string{"mount", "-c", cfg, "--fetch-timeout", "0s"}, "--fetch-timeout 0s: must be more than 0"},
		{[]string{"mount", "-c", cfg, "--fetch-retries", "0"}, "--fetch-retries 0: must be from 1 to 100"},
		{[]string{"mount", "-c", cfg, "--memory-cache-mb", "-1"}, "--memory-cache-mb -1: must be from 0 to 1048576"},
		{[]string{"mount", "-c", cfg, "--readahead-max-mb", "-5"}, "--readahead-max-mb -5: must be from 0 to 1048576"},
		{[]string{"mount", "-c", cfg, "--progress-every", "0s"}, "--progress-every 0s: must be more than 0"},
		{[]string{"mount", "-c", cfg, "--log-level", "bogus"}, `--log-level "bogus": must be one of debug, info, warn, error`},
		{[]string{"ls", "-c", cfg, "--log-level", "verbose"}, `--log-level "verbose": must be one of`},
		{[]string{"fetch", "-c", cfg, "--workers", "0"}, "--workers 0: must be from 1 to 1024"},
		{[]string{"fetch", "-c", cfg, "--chunk-mb", "-1"}, "--chunk-mb -1: must be from 1 to 1024"},
		{[]string{"fetch", "-c", cfg, "--retries", "0"}, "--retries 0: must be from 1 to 100"},
		{[]string{"fetch", "-c", cfg, "--range-timeout", "-1s"}, "--range-timeout -1s: must be more than 0"},
		{[]string{"fetch", "-c", cfg, "--progress-interval", "-1s"}, "--progress-interval -1s: must be from 0 (never) to 24h0m0s"},
		{[]string{"fetch", "-c", cfg, "--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"wait", "--poll", "0s"}, "--poll 0s: must be more than 0"},
		{[]string{"wait", "--timeout", "-1s"}, "--timeout -1s: must be from 0 (no limit) to 720h0m0s"},
		{[]string{"wait", "--stall-timeout", "0s"}, "--stall-timeout 0s: must be more than 0"},
		{[]string{"wait", "--progress-every", "-1s"}, "--progress-every -1s: must be from 0 (never)"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			err, out := runApp(t, tc.args...)
			if err == nil {
				t.Fatalf("accepted; output:\n%s", out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "config") || strings.Contains(err.Error(), "control") {
				t.Fatalf("the command ran before the flag was checked: %v", err)
			}
			for _, bad := range []string{"goroutine ", "panic", "USAGE"} {
				if strings.Contains(out, bad) {
					t.Fatalf("output has %q:\n%s", bad, out)
				}
			}
		})
	}
}

func TestValidEdgeValuesAreAccepted(t *testing.T) {
	// 0 disables these: the check must not refuse it. The command then
	// fails on the missing config, which proves the flags passed.
	for _, args := range [][]string{
		{"mount", "-c", "/nonexistent/config.yaml", "--memory-cache-mb", "0", "--readahead-max-mb", "0", "--log-level", "DEBUG"},
		{"fetch", "-c", "/nonexistent/config.yaml", "--progress-interval", "0", "--workers", "1", "--chunk-mb", "1"},
	} {
		err, _ := runApp(t, args...)
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/config.yaml") {
			t.Errorf("%v: %v, want the config error", args, err)
		}
	}
}

// Fails before this change: there was no --version.
func TestVersionFlag(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	version = "v9.8.7-test"
	err, out := runApp(t, "--version")
	if err != nil || strings.TrimSpace(out) != "weightfs version v9.8.7-test" {
		t.Fatalf("--version: %v, %q", err, out)
	}
	version = ""
	if v := buildVersion(); v == "" {
		t.Fatal("no fallback version from the build info")
	}
}
