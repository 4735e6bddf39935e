// Package sources turns a config entry into the fetch.Source that serves it,
// choosing the origin by kind and finding its credentials. It is the only
// place that knows every origin.
package sources

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/gcssrc"
	"github.com/weightfs/weightfs/fetch/hf"
	"github.com/weightfs/weightfs/fetch/s3src"
)

// Env is what origins need from the process: where secrets live and how
// to reach endpoints. Zero values take defaults.
type Env struct {
	Secrets config.Secrets
	Getenv  func(string) string // default os.Getenv
	Logger  *slog.Logger
	// DataDir is the Truss data folder, where the older credential files
	// live (s3_credentials.json, service_account.json); default "data"
	// relative to the working directory (the CLI passes <config dir>/data).
	DataDir string
	// Retry bounds each listing and metadata request of every origin (Hub
	// revision and tree, S3 ListObjectsV2 and HeadObject, GCS object
	// listing): a deadline per attempt and a number of attempts, so a
	// stalled listing costs one AttemptTimeout, not the default 30 s.
	// The CLI sets it from --fetch-timeout and --fetch-retries. Zero:
	// fetch.DefaultRetryPolicy (30 s, 4 attempts). OnRetry is best left nil:
	// each origin then logs its own retries.
	Retry fetch.RetryPolicy
}

func (e Env) getenv(k string) string {
	if e.Getenv != nil {
		return e.Getenv(k)
	}
	return os.Getenv(k)
}

// Origin names an entry's origin in keys and metrics, e.g. "hf:acme/llama".
func Origin(e config.Entry) string { return e.Kind + ":" + e.RepoID }

// Open returns the Source for e.
func Open(e config.Entry, env Env) (fetch.Source, error) {
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	switch e.Kind {
	case config.KindHF:
		token, from, err := env.Secrets.HFToken(e.SecretName)
		if err != nil {
			return nil, fmt.Errorf("%s: reading the Hugging Face token: %w", e.Name(), err)
		}
		return hf.New(e, hf.Options{
			Endpoint:  env.getenv("HF_ENDPOINT"),
			Token:     token,
			TokenFrom: from,
			Logger:    env.Logger,
			Retry:     env.Retry,
		}), nil
	case config.KindS3:
		o, err := s3src.OptionsFromEnv(e, env.Secrets, env.DataDir, env.getenv)
		if err != nil {
			return nil, err
		}
		o.Logger, o.Retry = env.Logger, env.Retry
		return s3src.New(e, o), nil
	case config.KindGCS:
		o, err := gcssrc.OptionsFromEnv(e, env.Secrets, env.DataDir, env.getenv)
		if err != nil {
			return nil, err
		}
		o.Logger, o.Retry = env.Logger, env.Retry
		return gcssrc.New(e, o), nil
	}
	return nil, fmt.Errorf("%s: kind %q is not supported yet", e.Name(), e.Kind)
}

// Secrets collects every credential value the origins of entries may send,
// for redaction, by asking each Source (fetch.SecretHolder) rather than
// knowing each kind's credentials here. An entry whose Source cannot be
// opened holds none (opening it fails the mount anyway). Whitespace-only or
// tiny values are left out: redacting them would hide ordinary words.
func Secrets(entries []config.Entry, env Env) []string {
	var out []string
	for _, e := range entries {
		src, err := Open(e, env)
		if err != nil {
			continue
		}
		if h, ok := src.(fetch.SecretHolder); ok {
			for _, v := range h.Secrets() {
				if len(strings.TrimSpace(v)) >= 8 {
					out = append(out, v)
				}
			}
		}
	}
	return out
}
