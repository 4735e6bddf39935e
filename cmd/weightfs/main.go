// Command weightfs mounts the weights named in a Truss model_cache config
// as a lazy, verified, read-only FUSE filesystem.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/sources"
)

// logOut is stderr behind a queue, so logging never blocks a FUSE read.
var logOut = newAsyncWriter(os.Stderr, 4096)

func sleepMillis(n int) { time.Sleep(time.Duration(n) * time.Millisecond) }

func main() {
	startPprof()
	err := newApp().Run(os.Args)
	logOut.flush()
	if err != nil {
		// Errors may embed remote names: no control character reaches
		// the terminal raw (newlines between joined errors stay).
		fmt.Fprintf(os.Stderr, "weightfs: %s\n", fetch.EscapeControl(err.Error()))
		var ec cli.ExitCoder
		if errors.As(err, &ec) && ec.ExitCode() != 0 {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

// newApp is the command line; main runs it, tests run it with arguments.
func newApp() *cli.App {
	return &cli.App{
		Name:    "weightfs",
		Usage:   "mount model weights (Hugging Face, S3, GCS) lazily, streaming bytes as they are read",
		Version: buildVersion(),
		Commands: []*cli.Command{
			mountCommand(),
			lsCommand(),
			fetchCommand(),
			waitCommand(),
			statusCommand(),
			gcCommand(),
		},
		// Errors are printed once, as one clear line, by main; never a stack.
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

// version is set at build time: go build -ldflags "-X main.version=v1.2.3"
// (the Makefile's build target does, from git describe).
var version string

// buildVersion is version, else what the Go toolchain recorded: the module
// version for `go install ...@v1.2.3`, and the VCS revision where the build
// kept it; "(devel)" for a plain go build.
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " (" + rev + dirty + ")"
	}
	if v == "" {
		return "unknown"
	}
	return v
}

// Flags shared by the commands that read a config.
var (
	configFlag = &cli.StringFlag{Name: "config", Aliases: []string{"c"}, Required: true,
		Usage: "Truss config.yaml (or a file holding just model_cache)", EnvVars: []string{"WEIGHTFS_CONFIG"}}
	cacheDirFlag = &cli.StringFlag{Name: "cache-dir", Value: defaultCacheDir(),
		Usage: "where fetched chunks and manifests are kept", EnvVars: []string{"WEIGHTFS_CACHE_DIR"}}
	secretsDirFlag = &cli.StringFlag{Name: "secrets-dir", Value: "/secrets",
		Usage: "folder of Truss secrets (file per secret name)", EnvVars: []string{"WEIGHTFS_SECRETS_DIR"}}
	dataDirFlag = &cli.StringFlag{Name: "data-dir",
		Usage: "Truss data folder holding s3_credentials.json / service_account.json (default: data/ beside the config)", EnvVars: []string{"WEIGHTFS_DATA_DIR"}}
	refreshFlag = &cli.BoolFlag{Name: "refresh",
		Usage: "list the origins again even if a saved manifest exists (re-resolves branches)"}
	logLevelFlag = &cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", Action: checkLogLevel}
)

// sourceEnv is what the origins need: secrets, the Truss data folder
// (beside the config file unless --data-dir says otherwise), the logger, and
// the deadline and attempts of each listing request (listingRetry).
func sourceEnv(c *cli.Context, log *slog.Logger) sources.Env {
	data := c.String("data-dir")
	if data == "" {
		data = filepath.Join(filepath.Dir(c.String("config")), "data")
	}
	return sources.Env{Secrets: config.Secrets{Dir: c.String("secrets-dir")}, DataDir: data, Logger: log,
		Retry: listingRetry(c)}
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "weightfs")
	}
	return "/var/cache/weightfs"
}

func newLogger(c *cli.Context) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		lvl = slog.LevelInfo
	}
	l := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: lvl}))
	slog.SetDefault(l)
	return l
}
