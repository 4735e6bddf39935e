package hf

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/weightfs/weightfs/fetch"
)

// Kinds of failure, for errors.Is. The errors returned carry a full message
// for the user; these only classify them. Each also wraps a
// *fetch.StatusError (errors.As) when an HTTP status caused it. The Hub's
// own kinds also match the shared fetch kind they refine; the rest are the
// shared kinds themselves, named here for existing callers.
var (
	ErrRepoNotFound     = fetch.NewKind("repo not found", fetch.ErrNotFound)         // X-Error-Code RepoNotFound (401/404); permanent
	ErrRevisionNotFound = fetch.NewKind("revision not found", fetch.ErrNotFound)     // RevisionNotFound; permanent (for a read at a pinned commit that is gone, also fetch.ErrChanged)
	ErrGated            = fetch.NewKind("gated repo", fetch.ErrAccessDenied)         // GatedRepo; permanent
	ErrEntryNotFound    = fetch.NewKind("file not found in repo", fetch.ErrNotFound) // EntryNotFound; permanent
	ErrAccessDenied     = fetch.ErrAccessDenied                                      // 401/403 without a Hub error code; permanent
	ErrRateLimited      = fetch.ErrRateLimited                                       // 429; inside a *fetch.RetryAfterError, retryable
	ErrNoMatchingFiles  = fetch.ErrNoMatchingFiles                                   // the patterns left nothing; permanent
	ErrBadResponse      = fetch.ErrBadResponse                                       // Content-Range mismatch, short body, malformed JSON; retryable
)

// newErr is a user-facing message that classifies as kind (one of the
// sentinels above) and as the HTTP status that caused it.
func newErr(kind error, st *fetch.StatusError, format string, args ...any) error {
	return fetch.NewClassifiedError([]error{kind}, st, format, args...)
}

// reqInfo describes a request for error messages.
type reqInfo struct {
	op     string // for StatusError.Op, e.g. "GET revision acme/llama@main"
	commit string // "" while resolving the revision
	path   string // the file, for reads
}

// where names the repo and revision (and commit and file when known).
func (s *Source) where(ri reqInfo) string {
	w := fmt.Sprintf("repo %s revision %s", s.repo, s.rev)
	if ri.commit != "" && ri.commit != s.rev {
		w += " (commit " + ri.commit + ")"
	}
	if ri.path != "" {
		w = fmt.Sprintf("file %q of %s", ri.path, w)
	}
	return w
}

// tokenClause describes the credential in use, never its value.
func (s *Source) tokenClause() string {
	if s.token == "" {
		return "no token was given"
	}
	return "the token from " + s.tokenFrom + " has no access to it"
}

// statusError maps a non-success answer to an error. X-Error-Code is trusted
// only from the Hub host: a CDN's headers mean nothing to us.
func (s *Source) statusError(resp *http.Response, ri reqInfo) error {
	fromHub := s.isHub(resp.Request.URL)
	code := ""
	if fromHub {
		code = resp.Header.Get("X-Error-Code")
	}
	st := &fetch.StatusError{Op: ri.op, Status: resp.StatusCode, Code: code}
	switch {
	case code == "RepoNotFound":
		return fetch.Permanent(newErr(ErrRepoNotFound, st,
			"repo %s not found on %s (or it is private and %s): check repo_id, or set the %s secret",
			s.repo, s.endpoint, s.tokenClause(), s.secret))
	case code == "RevisionNotFound" && ri.path != "" && ri.commit != "" && !strings.EqualFold(ri.commit, s.rev):
		// A read of a file at the commit the branch was pinned to when the
		// repo was listed (maybe days ago, maybe from another endpoint):
		// the branch is fine, the pinned commit is what is gone.
		return fetch.Permanent(fetch.NewClassifiedError([]error{ErrRevisionNotFound, fetch.ErrChanged}, st,
			"repo %s: commit %s, which revision %s pointed to when the repo was listed, is gone from %s (the branch was force-pushed, or the saved listing came from another endpoint): run again with --refresh to list the repo anew",
			s.repo, ri.commit, s.rev, s.endpoint))
	case code == "RevisionNotFound":
		return fetch.Permanent(newErr(ErrRevisionNotFound, st,
			"revision %s not found in repo %s: check revision", s.rev, s.repo))
	case code == "GatedRepo":
		if s.token == "" {
			return fetch.Permanent(newErr(ErrGated, st,
				"repo %s is gated: accept its licence on the Hub and set the %s secret", s.repo, s.secret))
		}
		return fetch.Permanent(newErr(ErrGated, st,
			"repo %s is gated and the token from %s has not been granted access: accept its licence on the Hub with that token's account, or set the %s secret to another token",
			s.repo, s.tokenFrom, s.secret))
	case code == "EntryNotFound":
		return fetch.Permanent(newErr(ErrEntryNotFound, st,
			"%s: not found on the Hub; the saved listing no longer matches the repo, list it again", s.where(ri)))
	case resp.StatusCode == http.StatusTooManyRequests:
		after := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		by := "the Hub"
		if !fromHub {
			by = resp.Request.URL.Host
		}
		hint := ""
		if after > 0 {
			hint = fmt.Sprintf("; the server asks to wait %s", after)
		}
		return &fetch.RetryAfterError{After: after,
			Err: newErr(ErrRateLimited, st, "%s: rate limited by %s%s", s.where(ri), by, hint)}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		// The listing said the range exists; the origin says it does not.
		return fetch.Permanent(newErr(fetch.ErrChanged, st,
			"%s: range past the end at the origin; the listed size is wrong, list again", s.where(ri)))
	case (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) && fromHub:
		return fetch.Permanent(newErr(ErrAccessDenied, st,
			"%s: access denied (%s): set the %s secret to a token that can read the repo",
			s.where(ri), s.tokenClause(), s.secret))
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		return newErr(nil, st, "%s: the server failed (transient)", s.where(ri))
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return fetch.Permanent(newErr(nil, st, "%s: refused by %s", s.where(ri), redact(resp.Request.URL)))
	default:
		// 1xx, 3xx we did not follow, 2xx we did not expect: a confused
		// server or proxy; another attempt may reach a sane one.
		return newErr(ErrBadResponse, st, "%s: unexpected answer from %s", s.where(ri), redact(resp.Request.URL))
	}
}

// netError rewrites a transport error without the URL's query string: Go's
// *url.Error prints the whole URL, signature included. Transport errors are
// retryable.
func netError(op string, u *url.URL, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: GET %s: %w", op, redact(u), err)
	}
	return fmt.Errorf("%s: GET %s: network error: %w", op, redact(u), err)
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
// Anything unreadable or in the past is 0 (the retry policy's own backoff).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		const maxSecs = int64(24 * time.Hour / time.Second) // no overflow, no absurd waits
		return time.Duration(min(n, maxSecs)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}
