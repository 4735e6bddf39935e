package main

import (
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/chunkcache"
	"github.com/weightfs/weightfs/cmd/weightfs/control"
	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/sources"
)

// controlAddrFlag is where mount listens; controlAskFlag is where wait and
// status ask.
var (
	controlAddrFlag = &cli.StringFlag{Name: "control-addr", Value: control.DefaultAddr, EnvVars: []string{"WEIGHTFS_CONTROL_ADDR"},
		Usage: "serve /healthz, /readyz, /status and /metrics here: host:port, or unix:/path/to.sock; \"off\" disables it. " +
			"If the default port is taken, mount warns and runs without it; a port you set must be free"}
	controlAskFlag = &cli.StringFlag{Name: "control-addr", Value: control.DefaultAddr, EnvVars: []string{"WEIGHTFS_CONTROL_ADDR"},
		Usage: "control endpoint of the running mount (its --control-addr): host:port, or unix:/path/to.sock"}
)

// controlPlane is the mount's control server and metrics. The metrics work
// even when nothing listens (the endpoint is optional), so the cache and fs
// hooks are always wired.
type controlPlane struct {
	metrics *control.Metrics
	srv     *control.Server // nil when disabled or the default port was taken
	log     *slog.Logger
}

// startControl listens on --control-addr before the listing starts, so
// probes see a live, not-yet-ready daemon while it lists. A failure to
// listen is fatal only when the address was asked for.
func startControl(c *cli.Context, log *slog.Logger, entries []config.Entry, extraSecrets ...string) (*controlPlane, error) {
	cp := &controlPlane{metrics: control.NewMetrics(), log: log}
	addr := c.String("control-addr")
	if addr == "" || addr == "off" {
		return cp, nil
	}
	l, err := control.Listen(addr)
	if err != nil {
		if !c.IsSet("control-addr") {
			log.Warn("control endpoint disabled: its default address is not available (set --control-addr to choose another)", "addr", addr, "err", err)
			return cp, nil
		}
		return nil, fmt.Errorf("%w (choose a free --control-addr, or \"off\")", err)
	}
	cp.srv = control.New(control.Options{Metrics: cp.metrics, Logger: log, Secrets: append(secretValues(entries, sourceEnv(c, log)), extraSecrets...), Version: buildVersion()})
	go func() {
		if err := cp.srv.Serve(l); err != nil {
			log.Error("control endpoint stopped", "addr", addr, "err", err)
		}
	}()
	log.Info("control endpoint", "addr", addr, "paths", "/healthz /readyz /status /metrics")
	return cp, nil
}

// events is what the chunk cache reports to.
func (cp *controlPlane) events() chunkcache.Events { return cp.metrics }

// ready publishes the volumes to /status and turns /readyz to 200. It
// opens every file's cache object (no I/O beyond the cache dir; the same
// objects the prefetcher and readers get).
func (cp *controlPlane) ready(rs []*resolved, op *opener, prefetch bool) {
	if cp.srv == nil {
		return
	}
	m := control.Model{Prefetch: prefetch, Usage: op.cache.CacheUsage}
	if t := op.cache.Shared(); t != nil {
		m.Shared = t.Status
		cp.metrics.SetShared(t.Status)
	}
	for _, r := range rs {
		v := control.Volume{Folder: r.entry.VolumeFolder, Repo: r.entry.RepoID, Kind: r.manifest.Kind, Origin: r.origin,
			Revision: r.entry.Revision, Commit: r.manifest.Commit}
		if v.Kind == "" {
			v.Kind = r.entry.Kind
		}
		for _, f := range r.manifest.Files {
			obj, err := op.cache.Object(r.origin, f, op.read[r.entry.VolumeFolder])
			if err != nil {
				v.Files = append(v.Files, unopened{f: f, err: err})
				continue
			}
			v.Files = append(v.Files, obj)
		}
		m.Volumes = append(m.Volumes, v)
	}
	cp.srv.Ready(m)
}

func (cp *controlPlane) close() {
	if cp.srv != nil {
		cp.srv.NotReady()
		cp.srv.Close()
	}
}

// unopened stands in for a file whose cache object could not be opened.
type unopened struct {
	f   fetch.File
	err error
}

func (u unopened) Stats() chunkcache.ObjectStats {
	return chunkcache.ObjectStats{Path: u.f.Path, Size: u.f.Size, State: "filling", Error: u.err.Error()}
}

// secretValues collects every credential the origins of entries may use,
// for redaction: error text from origins is already redacted at the source,
// and this makes sure /status cannot be the place one slips through. Each
// origin names its own (fetch.SecretHolder).
func secretValues(entries []config.Entry, env sources.Env) []string {
	return sources.Secrets(entries, env)
}
