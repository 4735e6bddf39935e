package bucket

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/gcssrc"
	"github.com/weightfs/weightfs/fetch/objstore"
	"github.com/weightfs/weightfs/fetch/s3src"
)

// Options choose how Open reaches a bucket. Every field has a usable zero
// value; none applies to a directory.
//
// Credentials: one shared store per organisation, with its own
// credentials. They are never a model_cache entry's (its secret or
// data/s3_credentials.json, data/service_account.json): those belong to
// the origin, and a fleet's store may well be another account's. So:
//
//   - CredentialsFile, when set, is the store's own key, read once here;
//   - else the process's defaults: the default AWS credential chain
//     (AWS_ACCESS_KEY_ID..., AWS_PROFILE, web identity, ECS/EC2 roles), or
//     Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS,
//     gcloud, the metadata server);
//   - when those find nothing the store is read anonymously, and its
//     writes are refused (shared.ErrReadOnly: the tier stops writing back);
//   - STORAGE_EMULATOR_HOST (gs://) means no credentials at all.
//
// Region and endpoint come from the environment as for the origins
// (AWS_REGION / AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL,
// STORAGE_EMULATOR_HOST), unless Endpoint is set.
type Options struct {
	// CredentialsFile is the store's own credentials: for s3:// a JSON
	// object {"access_key_id","secret_access_key","session_token"?,
	// "region"?} (the aws_-prefixed spelling of s3_credentials.json too);
	// for gs:// a service account key file. Default "": the defaults above.
	CredentialsFile string
	// Endpoint of the S3-compatible store that holds the shared cache,
	// when it is not where AWS_ENDPOINT_URL points the origins (a
	// SeaweedFS or MinIO in the region, with the origin on AWS); default
	// "": the environment's, else AWS. Path-style addressing. s3:// only.
	Endpoint string
	Getenv   func(string) string // default os.Getenv
	Logger   *slog.Logger        // default: discard
}

// maxCredentialsFile bounds what is read of a credentials file.
const maxCredentialsFile = 1 << 20

// usage names the accepted forms, for every parse error.
const usage = "give an absolute directory (/mnt/fleet/weightfs), s3://bucket/prefix or gs://bucket/prefix"

// Open returns the store a --shared-cache value names: an absolute
// directory (shared.OpenDir, created 0700 if needed), s3://bucket/prefix
// (S3) or gs://bucket/prefix (GCS). The prefix may be empty (the whole
// bucket); bucket and prefix are validated (no empty bucket, no empty,
// "." or ".." segment). Credentials are chosen as Options says. A
// bucket is not contacted here: its client is built on first use, so a
// store that is down costs reads their fallback to the origin, never the
// mount. A directory is created under ctx (a hung NFS server returns
// ctx's error).
func Open(ctx context.Context, spec string, o Options) (shared.Blobs, error) {
	switch {
	case spec == "":
		return nil, fmt.Errorf("--shared-cache is empty: %s", usage)
	case strings.HasPrefix(spec, "s3://"):
		return openS3(spec, o)
	case strings.HasPrefix(spec, "gs://"):
		return openGCS(spec, o)
	case strings.Contains(spec, "://"):
		return nil, fmt.Errorf("--shared-cache %q: unknown scheme: %s", spec, usage)
	case !filepath.IsAbs(spec):
		return nil, fmt.Errorf("--shared-cache %q is not an absolute directory: %s", spec, usage)
	}
	type res struct {
		d   *shared.Dir
		err error
	}
	ch := make(chan res, 1)
	go func() {
		d, err := shared.OpenDir(spec)
		ch <- res{d, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		return r.d, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("--shared-cache %s: %w", spec, ctx.Err())
	}
}

// Secrets are the credential values b holds, for redaction: a bucket's
// keys, nothing for a directory.
func Secrets(b shared.Blobs) []string {
	if h, ok := b.(fetch.SecretHolder); ok {
		return h.Secrets()
	}
	return nil
}

var (
	_ fetch.SecretHolder = (*S3)(nil)
	_ fetch.SecretHolder = (*GCS)(nil)
)

// split parses scheme://bucket/prefix.
func split(spec, scheme string) (place, error) {
	rest := strings.TrimPrefix(spec, scheme+"://")
	b, prefix, _ := strings.Cut(rest, "/")
	p, err := newPlace(scheme, b, prefix)
	if err != nil {
		return place{}, fmt.Errorf("--shared-cache %q: %w: %s", spec, err, usage)
	}
	return p, nil
}

func openS3(spec string, o Options) (*S3, error) {
	p, err := split(spec, "s3")
	if err != nil {
		return nil, err
	}
	what := "--shared-cache " + p.String()
	so, err := s3src.EnvOptions(what, o.Getenv)
	if err != nil {
		return nil, err
	}
	if o.Endpoint != "" {
		so.Endpoint, so.EndpointFrom = o.Endpoint, "the shared cache's endpoint"
	}
	if o.CredentialsFile != "" {
		data, from, err := readCredentials(what, o.CredentialsFile)
		if err != nil {
			return nil, err
		}
		if so.Credentials, err = s3src.ParseCredentials(data, from); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	so.Logger = o.Logger
	return NewS3(p.bucket, p.prefix, so)
}

func openGCS(spec string, o Options) (*GCS, error) {
	p, err := split(spec, "gs")
	if err != nil {
		return nil, err
	}
	what := "--shared-cache " + p.String()
	if o.Endpoint != "" {
		return nil, fmt.Errorf("%s: a shared cache endpoint is for s3:// stores; for a GCS emulator set %s", what, gcssrc.EmulatorEnv)
	}
	gop, err := gcssrc.EnvOptions(what, o.Getenv)
	if err != nil {
		return nil, err
	}
	if o.CredentialsFile != "" {
		data, from, err := readCredentials(what, o.CredentialsFile)
		if err != nil {
			return nil, err
		}
		if gop.ServiceAccount, err = gcssrc.ParseServiceAccount(data, from); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	gop.Logger = o.Logger
	return NewGCS(p.bucket, p.prefix, gop)
}

// readCredentials reads a credentials file, bounded; errors name the path
// and the reason, never the content.
func readCredentials(what, path string) ([]byte, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", objstore.BadCredentials("%s: reading its credentials: %s", what, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCredentialsFile+1))
	if err != nil {
		return nil, "", objstore.BadCredentials("%s: reading its credentials: %s", what, err)
	}
	if len(data) > maxCredentialsFile {
		return nil, "", objstore.BadCredentials("%s: credentials file %s is larger than %d bytes", what, path, maxCredentialsFile)
	}
	return data, "file " + path, nil
}
