package fetch

import (
	"errors"
	"fmt"
	"time"
)

// Kinds of failure every origin reports, for errors.Is: callers ask
// "access denied?" or "changed?" of any Source without knowing which one it
// is. The errors returned carry a full message for the user (see
// NewClassifiedError); these only classify them. An origin's own, finer
// kinds (hf.ErrGated, s3src.ErrNoSuchBucket) are made with NewKind so they
// match the shared kind too.
var (
	// ErrChanged: the origin's object no longer matches the listed version
	// (S3 If-Match failed, GCS generation gone, a pinned Hub commit gone).
	// Permanent: mixing bytes of two versions would be worse than failing.
	ErrChanged = errors.New("object changed at the origin since it was listed")
	// ErrNotFound: the repo, revision, bucket or file does not exist (or is
	// hidden from these credentials). Permanent.
	ErrNotFound = errors.New("not found")
	// ErrAccessDenied: the credentials in use may not do this (401/403).
	// Permanent, except for a freshly signed CDN URL refused (clock skew).
	ErrAccessDenied = errors.New("access denied")
	// ErrBadCredentials: a credential secret or file is unusable. Permanent.
	ErrBadCredentials = errors.New("malformed credentials")
	// ErrRateLimited: the origin asks us to slow down (429, S3 SlowDown).
	// Retryable; a *RetryAfterError may carry the wait it asked for.
	ErrRateLimited = errors.New("rate limited")
	// ErrBadResponse: an answer that does not fit the request (Content-Range
	// or length mismatch, short body, malformed listing). Retryable: the
	// next attempt, perhaps over another connection or CDN node, may be fine.
	ErrBadResponse = errors.New("unexpected response")
	// ErrNoMatchingFiles: the entry's prefix and patterns left nothing to
	// serve. Permanent.
	ErrNoMatchingFiles = errors.New("no file matches")
)

// NewKind returns a sentinel of its own that also matches each of parents
// under errors.Is: an origin's finer kind of a shared one.
func NewKind(text string, parents ...error) error { return &kind{text: text, parents: parents} }

type kind struct {
	text    string
	parents []error
}

func (k *kind) Error() string   { return k.text }
func (k *kind) Unwrap() []error { return k.parents }

// permanentError marks an error that retrying cannot fix (404, 403, a changed
// object, a malformed response that is deterministic).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so Retry gives up at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err (or anything it wraps) was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryAfterError carries a server's Retry-After hint (Hub 429).
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// StatusError describes an unexpected HTTP answer without leaking headers
// (which may carry credentials).
type StatusError struct {
	Op     string // what we were doing, e.g. "GET resolve acme/llama@main config.json"
	Status int
	Code   string // X-Error-Code, when present
}

func (e *StatusError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s: HTTP %d %s", e.Op, e.Status, e.Code)
	}
	return fmt.Sprintf("%s: HTTP %d", e.Op, e.Status)
}

// ClassifiedError is a user-facing message that matches (errors.Is/As) the
// sentinels and causes it was built with, so callers can tell cases apart
// while users read one clear line. Object-store sources share it.
type ClassifiedError struct {
	msg   string
	kinds []error
}

func (e *ClassifiedError) Error() string   { return e.msg }
func (e *ClassifiedError) Unwrap() []error { return e.kinds }

// NewClassifiedError formats the message, adds st's status to it, and
// classifies the error as every non-nil kind and as st.
func NewClassifiedError(kinds []error, st *StatusError, format string, args ...any) error {
	e := &ClassifiedError{msg: fmt.Sprintf(format, args...)}
	for _, k := range kinds {
		if k != nil {
			e.kinds = append(e.kinds, k)
		}
	}
	if st != nil {
		e.msg += " (" + st.Error() + ")"
		e.kinds = append(e.kinds, st)
	}
	return e
}
