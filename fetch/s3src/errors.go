package s3src

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
)

// Kinds of failure, for errors.Is. The errors returned carry a full message
// for the user; these only classify them. Each also wraps a
// *fetch.StatusError (errors.As) when an HTTP status caused it. S3's own
// kinds also match the shared fetch kind they refine; the rest are the
// shared kinds themselves, named here for existing callers.
var (
	ErrNoSuchBucket    = fetch.NewKind("no such bucket", fetch.ErrNotFound) // 404 NoSuchBucket; permanent
	ErrWrongRegion     = errors.New("wrong region")                         // the bucket lives in another region; permanent
	ErrAccessDenied    = fetch.ErrAccessDenied                              // 401/403 and signature/key errors; permanent
	ErrBadCredentials  = fetch.ErrBadCredentials                            // a credential secret or file is unusable
	ErrNoMatchingFiles = fetch.ErrNoMatchingFiles                           // the prefix and patterns left nothing; permanent
	ErrBadResponse     = fetch.ErrBadResponse                               // Content-Range or length mismatch; retryable
	ErrThrottled       = fetch.ErrRateLimited                               // 429/503 SlowDown; retryable
)

func newErr(kinds []error, st *fetch.StatusError, format string, args ...any) error {
	return fetch.NewClassifiedError(kinds, st, format, args...)
}

// accessCodes are S3 error codes that mean "these credentials may not do
// this", whatever the HTTP status.
var accessCodes = map[string]bool{
	"AccessDenied": true, "AllAccessDisabled": true, "InvalidAccessKeyId": true,
	"SignatureDoesNotMatch": true, "ExpiredToken": true, "InvalidToken": true,
	"TokenRefreshRequired": true, "AccountProblem": true, "Forbidden": true,
	"Unauthorized": true,
}

// opInfo describes a request for messages.
type opInfo struct {
	op   string // for StatusError.Op, e.g. "GetObject s3://b/k bytes=0-9"
	what string // the thing, e.g. `object "a/b" (s3://b/p/a/b)`
	read bool   // a GetObject/HeadObject of a listed object: 404 means it changed
}

// classify maps an SDK error to a message the user can act on, marked
// permanent when retrying cannot help: every 4xx, a changed object. 5xx,
// throttling and transport failures stay retryable. The SDK's own text
// holds no credential (requests are header-signed), but it is redacted
// against the static keys anyway.
func (s *Source) classify(err error, oi opInfo) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", oi.what, ctxErr(err))
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.Response == nil {
		return fmt.Errorf("%s: network error talking to %s: %s", oi.what, s.endpointName(), s.redact(err.Error()))
	}
	status := re.HTTPStatusCode()
	code := ""
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	st := &fetch.StatusError{Op: oi.op, Status: status, Code: code}
	bucketRegion := re.Response.Header.Get("X-Amz-Bucket-Region")
	switch {
	case code == "NoSuchBucket" || (status == http.StatusNotFound && !oi.read && code != "NoSuchKey"):
		return fetch.Permanent(newErr([]error{ErrNoSuchBucket}, st,
			"%s: bucket %q does not exist at %s: check repo_id", s.name(), s.b.Name, s.endpointName()))
	case status == http.StatusPreconditionFailed || code == "PreconditionFailed":
		return fetch.Permanent(newErr([]error{fetch.ErrChanged}, st,
			"%s: the object changed since it was listed (its ETag no longer matches); list the entry again", oi.what))
	case oi.read && (status == http.StatusNotFound || code == "NoSuchKey"):
		return fetch.Permanent(newErr([]error{fetch.ErrChanged}, st,
			"%s: the object was deleted since it was listed; list the entry again", oi.what))
	case status == http.StatusRequestedRangeNotSatisfiable:
		return fetch.Permanent(newErr([]error{fetch.ErrChanged}, st,
			"%s: range past the end at the origin: the object changed size since it was listed", oi.what))
	case bucketRegion != "" && (status == http.StatusMovedPermanently || code == "PermanentRedirect" ||
		code == "AuthorizationHeaderMalformed" || code == "IllegalLocationConstraintException"):
		used, from := s.region()
		return fetch.Permanent(newErr([]error{ErrWrongRegion}, st,
			"%s: bucket %q is in region %s but region %s was used (from %s): set AWS_REGION=%s or the region field of the credentials",
			oi.what, s.b.Name, bucketRegion, used, from, bucketRegion))
	case accessCodes[code] || status == http.StatusUnauthorized || status == http.StatusForbidden:
		return fetch.Permanent(newErr([]error{ErrAccessDenied}, st,
			"%s: access denied using %s: grant s3:ListBucket and s3:GetObject on bucket %q, or set the %s secret (or %s/%s) to credentials that can",
			oi.what, s.credFromName(), s.b.Name, s.secretName(), s.dataDirName(), CredentialsFile))
	case status == http.StatusTooManyRequests || code == "SlowDown" || code == "RequestLimitExceeded":
		return newErr([]error{ErrThrottled}, st, "%s: throttled by %s, will retry", oi.what, s.endpointName())
	case status == http.StatusRequestTimeout || code == "RequestTimeout" || status >= 500:
		return newErr(nil, st, "%s: %s failed, will retry", oi.what, s.endpointName())
	case status >= 400 && status < 500:
		return fetch.Permanent(newErr(nil, st, "%s: refused by %s", oi.what, s.endpointName()))
	default:
		return newErr([]error{ErrBadResponse}, st, "%s: unexpected answer from %s", oi.what, s.endpointName())
	}
}

// ctxErr strips the SDK's operation wrapping from a cancelled call, keeping
// the context error itself for errors.Is.
func ctxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return context.Canceled
}

func (s *Source) redact(msg string) string {
	if c := s.opts.Credentials; c != nil {
		return config.Redact(msg, append(s.Secrets(), c.AccessKeyID)...)
	}
	return msg
}
