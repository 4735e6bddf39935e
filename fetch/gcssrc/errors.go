package gcssrc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
)

// Kinds of failure, for errors.Is. The errors returned carry a full message
// for the user; these only classify them. Each also wraps a
// *fetch.StatusError (errors.As) when an HTTP status caused it.
// ErrNoSuchBucket also matches fetch.ErrNotFound; the rest are the shared
// kinds themselves, named here for existing callers.
var (
	ErrNoSuchBucket    = fetch.NewKind("no such bucket", fetch.ErrNotFound) // 404 on the bucket; permanent
	ErrAccessDenied    = fetch.ErrAccessDenied                              // 401/403; permanent
	ErrBadCredentials  = fetch.ErrBadCredentials                            // a service account secret or file is unusable
	ErrNoMatchingFiles = fetch.ErrNoMatchingFiles                           // the prefix and patterns left nothing; permanent
	ErrBadResponse     = fetch.ErrBadResponse                               // range, size or length mismatch; retryable
	ErrThrottled       = fetch.ErrRateLimited                               // 429; retryable
)

func newErr(kinds []error, st *fetch.StatusError, format string, args ...any) error {
	return fetch.NewClassifiedError(kinds, st, format, args...)
}

// opInfo describes a request for messages.
type opInfo struct {
	op   string // for StatusError.Op, e.g. "GET gs://b/k#123 bytes=0-9"
	what string // the thing, e.g. `model_cache[0] (gs://b/p): object "a/b" at gs://b/p/a/b`
	read bool   // a read of a listed generation: 404 means it changed
}

// classify maps a storage error to a message the user can act on, marked
// permanent when retrying cannot help: every 4xx but 408/429, a changed
// object. 5xx, 429 and transport failures stay retryable. Server messages
// are quoted (they name the principal and the permission, never a key).
func (s *Source) classify(err error, oi opInfo) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s: %w", oi.what, context.DeadlineExceeded)
		}
		return fmt.Errorf("%s: %w", oi.what, context.Canceled)
	}
	if errors.Is(err, storage.ErrBucketNotExist) {
		return fetch.Permanent(newErr([]error{ErrNoSuchBucket}, &fetch.StatusError{Op: oi.op, Status: 404}, "%s: bucket %q does not exist at %s: check repo_id",
			s.name(), s.b.Name, s.endpointName()))
	}
	if oi.read && errors.Is(err, storage.ErrObjectNotExist) {
		return fetch.Permanent(newErr([]error{fetch.ErrChanged}, &fetch.StatusError{Op: oi.op, Status: 404},
			"%s: the listed generation no longer exists: the object changed or was deleted since it was listed; list the entry again", oi.what))
	}
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		return fmt.Errorf("%s: network error talking to %s: %s", oi.what, s.endpointName(), s.redact(err.Error()))
	}
	reason := ""
	if len(ge.Errors) > 0 {
		reason = ge.Errors[0].Reason
	}
	st := &fetch.StatusError{Op: oi.op, Status: ge.Code, Code: reason}
	said := ""
	if m := strings.TrimSpace(ge.Message); m != "" {
		said = ": GCS says: " + s.redact(m)
	}
	switch {
	case ge.Code == http.StatusNotFound && !oi.read:
		return fetch.Permanent(newErr([]error{ErrNoSuchBucket}, st, "%s: bucket %q does not exist at %s: check repo_id",
			s.name(), s.b.Name, s.endpointName()))
	case ge.Code == http.StatusNotFound || ge.Code == http.StatusPreconditionFailed:
		return fetch.Permanent(newErr([]error{fetch.ErrChanged}, st,
			"%s: the listed generation no longer exists: the object changed since it was listed; list the entry again", oi.what))
	case ge.Code == http.StatusRequestedRangeNotSatisfiable:
		return fetch.Permanent(newErr([]error{fetch.ErrChanged}, st,
			"%s: range past the end at the origin: the object changed size since it was listed", oi.what))
	case ge.Code == http.StatusUnauthorized || ge.Code == http.StatusForbidden:
		return fetch.Permanent(newErr([]error{ErrAccessDenied}, st,
			"%s: access denied using %s%s: grant storage.objects.list and storage.objects.get on bucket %q, or set the %s secret (or %s/%s) to a service account key that has them",
			oi.what, s.credFromName(), said, s.b.Name, s.secretName(), s.dataDirName(), ServiceAccountFile))
	case ge.Code == http.StatusTooManyRequests:
		return newErr([]error{ErrThrottled}, st, "%s: throttled by %s, will retry", oi.what, s.endpointName())
	case ge.Code == http.StatusRequestTimeout || ge.Code >= 500:
		return newErr(nil, st, "%s: %s failed, will retry", oi.what, s.endpointName())
	case ge.Code >= 400:
		return fetch.Permanent(newErr(nil, st, "%s: refused by %s%s", oi.what, s.endpointName(), said))
	default:
		return newErr([]error{ErrBadResponse}, st, "%s: unexpected answer from %s", oi.what, s.endpointName())
	}
}

// redact removes the service account's private key material from text that
// passed near it (belt and braces: the libraries do not echo it).
func (s *Source) redact(msg string) string {
	return config.Redact(msg, s.Secrets()...)
}
