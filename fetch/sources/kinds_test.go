package sources

import (
	"errors"
	"testing"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/gcssrc"
	"github.com/weightfs/weightfs/fetch/hf"
	"github.com/weightfs/weightfs/fetch/s3src"
)

// Every origin's kinds of failure answer the shared questions, so a caller
// asks "access denied?" of any Source with fetch's sentinels alone. Each
// origin's classification tests assert its own sentinel; this closes the
// step to the shared one. Fails before this change: each origin had its own
// "access denied" value, and fetch had no ErrNotFound or ErrAccessDenied.
func TestOriginKindsAreSharedKinds(t *testing.T) {
	all := []error{fetch.ErrChanged, fetch.ErrNotFound, fetch.ErrAccessDenied, fetch.ErrBadCredentials,
		fetch.ErrRateLimited, fetch.ErrBadResponse, fetch.ErrNoMatchingFiles}
	cases := []struct {
		name   string
		origin error
		shared error // the one shared kind it must match; nil: none
	}{
		{"hf.ErrRepoNotFound", hf.ErrRepoNotFound, fetch.ErrNotFound},
		{"hf.ErrRevisionNotFound", hf.ErrRevisionNotFound, fetch.ErrNotFound},
		{"hf.ErrEntryNotFound", hf.ErrEntryNotFound, fetch.ErrNotFound},
		{"hf.ErrGated", hf.ErrGated, fetch.ErrAccessDenied},
		{"hf.ErrAccessDenied", hf.ErrAccessDenied, fetch.ErrAccessDenied},
		{"hf.ErrRateLimited", hf.ErrRateLimited, fetch.ErrRateLimited},
		{"hf.ErrBadResponse", hf.ErrBadResponse, fetch.ErrBadResponse},
		{"hf.ErrNoMatchingFiles", hf.ErrNoMatchingFiles, fetch.ErrNoMatchingFiles},
		{"s3src.ErrNoSuchBucket", s3src.ErrNoSuchBucket, fetch.ErrNotFound},
		{"s3src.ErrAccessDenied", s3src.ErrAccessDenied, fetch.ErrAccessDenied},
		{"s3src.ErrBadCredentials", s3src.ErrBadCredentials, fetch.ErrBadCredentials},
		{"s3src.ErrThrottled", s3src.ErrThrottled, fetch.ErrRateLimited},
		{"s3src.ErrBadResponse", s3src.ErrBadResponse, fetch.ErrBadResponse},
		{"s3src.ErrNoMatchingFiles", s3src.ErrNoMatchingFiles, fetch.ErrNoMatchingFiles},
		{"s3src.ErrWrongRegion", s3src.ErrWrongRegion, nil},
		{"gcssrc.ErrNoSuchBucket", gcssrc.ErrNoSuchBucket, fetch.ErrNotFound},
		{"gcssrc.ErrAccessDenied", gcssrc.ErrAccessDenied, fetch.ErrAccessDenied},
		{"gcssrc.ErrBadCredentials", gcssrc.ErrBadCredentials, fetch.ErrBadCredentials},
		{"gcssrc.ErrThrottled", gcssrc.ErrThrottled, fetch.ErrRateLimited},
		{"gcssrc.ErrBadResponse", gcssrc.ErrBadResponse, fetch.ErrBadResponse},
		{"gcssrc.ErrNoMatchingFiles", gcssrc.ErrNoMatchingFiles, fetch.ErrNoMatchingFiles},
	}
	for _, c := range cases {
		// Wrapped as the origins return them: a classified message, marked
		// permanent.
		err := fetch.Permanent(fetch.NewClassifiedError([]error{c.origin}, &fetch.StatusError{Op: "GET x", Status: 403}, "x"))
		if !errors.Is(err, c.origin) {
			t.Errorf("%s: errors.Is lost its own kind", c.name)
		}
		for _, k := range all {
			if got, want := errors.Is(err, k), k == c.shared; got != want {
				t.Errorf("%s: errors.Is(%q) = %v, want %v", c.name, k, got, want)
			}
		}
	}
	// Finer kinds stay apart: a missing bucket is not a missing repo.
	if errors.Is(s3src.ErrNoSuchBucket, hf.ErrRepoNotFound) || errors.Is(hf.ErrGated, hf.ErrRepoNotFound) {
		t.Error("finer kinds match each other")
	}
}
