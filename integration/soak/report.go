package soak

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/weightfs/weightfs/integration/faultproxy"
	"github.com/weightfs/weightfs/integration/modelgen"
)

// Report is the whole soak.
type Report struct {
	Settings Settings
	Modes    []ModeReport
}

// Settings are what a figure depends on, printed with it.
type Settings struct {
	ModelBytes        int64
	Files, Shards     int
	Duration          time.Duration
	Readers, Loaders  int
	MaxRead           int
	OriginBytesPerSec int64
	Faults            faultproxy.Rates
	ReadTimeout       time.Duration
	WaitTimeout       time.Duration
	CPUs              int
}

func settingsOf(c Config, m *modelgen.Model) Settings {
	return Settings{ModelBytes: m.TotalBytes, Files: len(m.Files), Shards: len(m.Safetensors), Duration: c.Duration,
		Readers: c.Readers, Loaders: c.Loaders, MaxRead: c.MaxRead, OriginBytesPerSec: c.OriginBytesPerSec,
		Faults: c.Faults, ReadTimeout: c.ReadTimeout, WaitTimeout: c.WaitTimeout, CPUs: runtime.NumCPU()}
}

// ModeReport is one mode's soak.
type ModeReport struct {
	Mode     string
	Args     []string
	LoadTime time.Duration
	Readers  LoadStats // random-offset preads
	Loaders  LoadStats // mmap tensor touches
	Faults   faultproxy.Stats
	Wait     waitResult
	// After wait: files /status calls verified, and files whose sha256
	// through the mount matches the origin.
	Verified, Right, Files int
	// Failures are the checks this mode failed, each a sentence.
	Failures []string
}

// Failures are every mode's failures, prefixed by the mode.
func (r *Report) Failures() []string {
	var out []string
	for _, m := range r.Modes {
		for _, f := range m.Failures {
			out = append(out, m.Mode+": "+f)
		}
	}
	return out
}

// checkFiles asks /status whether every file is verified, reads every file
// through the mount for its sha256, and holds the mode to its promise about
// wrong bytes.
func checkFiles(d *daemon, root string, files []file, mode Mode, limit time.Duration, r *ModeReport, fail func(string, ...any)) {
	r.Files = len(files)
	servedBad := map[string]bool{}
	st, err := d.status()
	if err != nil {
		fail("/status: %v", err)
	} else {
		for _, v := range st.Volumes {
			for _, f := range v.FileList {
				if f.Verified {
					r.Verified++
				} else {
					fail("%s is %s, not verified, after wait (error: %q, failures %d)", f.Path, f.State, f.Error, f.Failures)
				}
				if f.ServedBad {
					servedBad[filepath.ToSlash(f.Path)] = true
				}
			}
		}
	}
	// Files wait left unfinished are fetched by these reads; past limit the
	// daemon is killed, which fails the rest at once.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, f := range files {
			sum, err := modelgen.SHA256File(filepath.Join(root, filepath.FromSlash(f.rel)))
			switch {
			case err != nil:
				fail("%s: reading it through the mount after wait: %v", f.rel, err)
			case sum != f.sha256:
				fail("%s: sha256 %.12s… through the mount after wait, %.12s… at the origin", f.rel, sum, f.sha256)
			default:
				r.Right++
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(limit):
		d.kill()
		<-done
		fail("reading every file for its sha256 took over %s; weightfs killed", limit)
	}
	all := LoadStats{}
	all.add(&r.Readers)
	all.add(&r.Loaders)
	wrong := all.WrongFiles
	if mode.Exact {
		if n := r.Readers.WrongBytes + r.Loaders.WrongBytes; n > 0 {
			fail("%d wrong bytes reached readers (files %s); this mode promises none", n, strings.Join(wrong, ", "))
		}
		return
	}
	for _, rel := range wrong {
		if !flagged(servedBad, rel) {
			fail("%s: readers got wrong bytes, yet /status does not name it served_bad", rel)
		}
	}
}

// flagged matches a model-relative path against /status paths, which may
// carry the volume folder in front.
func flagged(servedBad map[string]bool, rel string) bool {
	for p := range servedBad {
		if p == rel || strings.HasSuffix(p, "/"+rel) {
			return true
		}
	}
	return false
}

// Markdown is the report as the tables RELIABILITY.md keeps.
func (r *Report) Markdown() string {
	var b strings.Builder
	s := r.Settings
	fmt.Fprintf(&b, "Model %.0f MiB, %d files (%d safetensors shards); %s of load per mode; %d pread readers (1 B to %d KiB, log-uniform) and %d mmap loaders; "+
		"origin capped at %.1f MiB/s; content faults: %.0f%% resets, %.0f%% 5xx, %.0f%% flipped bytes; --read-timeout %s; wait --timeout %s; %d CPUs.\n\n",
		float64(s.ModelBytes)/(1<<20), s.Files, s.Shards, s.Duration, s.Readers, s.MaxRead>>10, s.Loaders,
		float64(s.OriginBytesPerSec)/(1<<20), 100*s.Faults.Reset, 100*s.Faults.Status5xx, 100*s.Faults.Flip, s.ReadTimeout, s.WaitTimeout, s.CPUs)
	b.WriteString("| mode | reader | reads | MiB read | wrong reads | wrong bytes | EIOs | other errors | p50 | p99 | max |\n")
	b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, m := range r.Modes {
		for _, row := range []struct {
			name string
			s    *LoadStats
		}{{"pread", &m.Readers}, {"mmap (per tensor)", &m.Loaders}} {
			fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %d | %d | %d | %d | %s | %s | %s |\n", m.Mode, row.name, row.s.Ops,
				float64(row.s.Bytes)/(1<<20), row.s.WrongOps, row.s.WrongBytes, row.s.EIO, row.s.Other,
				fmtDur(row.s.Quantile(0.5)), fmtDur(row.s.Quantile(0.99)), fmtDur(row.s.Quantile(1)))
		}
	}
	b.WriteString("\n| mode | content requests | resets | 5xx | flips | `weightfs wait` | verified | right by sha256 | checks failed |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |\n")
	for _, m := range r.Modes {
		wait := "not run"
		if m.Wait.Code >= 0 {
			wait = fmt.Sprintf("exit %d in %s", m.Wait.Code, m.Wait.Took.Round(100*time.Millisecond))
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %s | %d/%d | %d/%d | %d |\n", m.Mode, m.Faults.ContentRequests,
			m.Faults.Faults[faultproxy.Reset], m.Faults.Faults[faultproxy.Status5xx], m.Faults.Faults[faultproxy.Flip],
			wait, m.Verified, m.Files, m.Right, m.Files, len(m.Failures))
	}
	if f := r.Failures(); len(f) > 0 {
		b.WriteString("\nChecks failed:\n\n")
		for _, line := range f {
			fmt.Fprintf(&b, "- %s\n", oneLine([]byte(line)))
		}
	}
	for _, m := range r.Modes {
		for _, row := range []*LoadStats{&m.Readers, &m.Loaders} {
			if row.LastError != "" {
				fmt.Fprintf(&b, "\n%s: last other error: %s\n", m.Mode, oneLine([]byte(row.LastError)))
			}
		}
	}
	return b.String()
}

// fmtDur prints a latency with sensible precision.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}
