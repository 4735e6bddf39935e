package main

import (
	"context"
	"log/slog"

	"github.com/weightfs/weightfs/chunkcache/shared"
)

// openBlobs opens the store a --shared-cache value names.
func openBlobs(ctx context.Context, spec string, log *slog.Logger) (shared.Blobs, error) {
	return shared.OpenDir(spec)
}
