package main

import (
	"context"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/weightfs/weightfs/chunkcache/shared"
	"github.com/weightfs/weightfs/chunkcache/shared/bucket"
)

// The shared store's own credentials and endpoint: one store per
// organisation, never a model_cache entry's (those are the origin's).
var (
	sharedCredsFlag = &cli.StringFlag{Name: "shared-cache-credentials", EnvVars: []string{"WEIGHTFS_SHARED_CACHE_CREDENTIALS"},
		Usage: "the shared bucket's own key: for s3:// a JSON object {access_key_id, secret_access_key, session_token?, region?}; for gs:// a service account key file. Default: the AWS chain or Application Default Credentials"}
	sharedEndpointFlag = &cli.StringFlag{Name: "shared-cache-endpoint", EnvVars: []string{"WEIGHTFS_SHARED_CACHE_ENDPOINT"},
		Usage: "endpoint of the S3-compatible store holding the shared cache, when it is not AWS_ENDPOINT_URL's (a SeaweedFS or MinIO in the region)"}
)

// openBlobs opens the store a --shared-cache value names.
func openBlobs(ctx context.Context, c *cli.Context, spec string, log *slog.Logger) (shared.Blobs, error) {
	return bucket.Open(ctx, spec, bucket.Options{CredentialsFile: c.String("shared-cache-credentials"),
		Endpoint: c.String("shared-cache-endpoint"), Logger: log})
}

// sharedSecrets are the credential values the shared store holds, for
// redaction.
func sharedSecrets(t *shared.Tier) []string {
	if t == nil {
		return nil
	}
	return bucket.Secrets(t.Blobs())
}
