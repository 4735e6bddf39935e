package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/gcssrc"
	"github.com/weightfs/weightfs/fetch/s3src"
	"github.com/weightfs/weightfs/fetch/sources"
)

// credentialFiles lists the files the origins of entries may read
// credentials from, each once: the secret file of each entry, the Truss
// data folder's S3 and GCS key files, and GOOGLE_APPLICATION_CREDENTIALS
// for GCS entries. Whether a file exists is not checked here.
func credentialFiles(entries []config.Entry, env sources.Env, getenv func(string) string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	dataDir := env.DataDir
	if dataDir == "" {
		dataDir = s3src.DefaultDataDir
	}
	for _, e := range entries {
		add(env.Secrets.SecretPath(e.SecretName))
		switch e.Kind {
		case config.KindS3:
			add(filepath.Join(dataDir, s3src.CredentialsFile))
		case config.KindGCS:
			add(filepath.Join(dataDir, gcssrc.ServiceAccountFile))
			add(getenv("GOOGLE_APPLICATION_CREDENTIALS"))
		}
	}
	return out
}

// warnExposedCredentials logs one warning per credential file that users
// other than its owner can read (gated weights and buckets are only as
// private as their keys). It names the file and its mode, never what is
// in it.
func warnExposedCredentials(log *slog.Logger, entries []config.Entry, env sources.Env) {
	for _, p := range credentialFiles(entries, env, os.Getenv) {
		if perm, exposed := config.ReadableByOthers(p); exposed {
			log.Warn("credential file is readable by other users; make it private (chmod 600, or defaultMode: 0400 on a Kubernetes secret volume)",
				"path", p, "mode", fmt.Sprintf("%04o", perm))
		}
	}
}
