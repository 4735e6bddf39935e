package hf

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/weightfs/weightfs/fetch"
)

// Tests of what a read does when what it learnt earlier goes stale: a
// signed URL that expired or was re-keyed, a cached URL whose host died, a
// commit pinned at listing time that the origin no longer has.

const staleLFS = "model-00001-of-00002.safetensors"

// A signed URL obtained earlier that answers 403 or 410 is resolved again
// within the same read, on a CDN host or on the Hub's own (a mirror's).
// Fails before this change: on the Hub's host the 403 was taken as "access
// denied: set the hf_access_token secret" (permanent, so the rest of the file
// was EIO forever), and a 410 was permanent on either host. (A 403 from
// another host already re-resolved.)
func TestReadReResolvesStaleSignedURL(t *testing.T) {
	for _, onHub := range []bool{false, true} {
		for _, status := range []int{http.StatusForbidden, http.StatusGone} {
			name := fmt.Sprintf("cdn on another host, %d", status)
			if onHub {
				name = fmt.Sprintf("cdn on the hub's host (mirror), %d", status)
			}
			t.Run(name, func(t *testing.T) {
				h := newFakeHub(t, defaultFiles()...)
				h.mirror(onHub, status)
				s := h.source(testEntry(), testToken)
				f := h.fetchFile(staleLFS)
				want := h.file(staleLFS).data
				if got, err := read(t, s, f, 0, 2500); err != nil || !bytes.Equal(got, want[:2500]) {
					t.Fatalf("first half: err %v, bytes equal %v", err, bytes.Equal(got, want[:2500]))
				}
				h.expireCDN()
				got, err := read(t, s, f, 2500, 2500)
				if err != nil {
					t.Fatalf("second half after the URL expired: %v", err)
				}
				if !bytes.Equal(got, want[2500:]) {
					t.Error("bytes differ after re-resolve")
				}
				if h.count("resolve") != 2 || h.count("cdn") != 3 {
					t.Errorf("resolve %d cdn %d, want 2 and 3 (good read, refused read, re-resolve and good read)", h.count("resolve"), h.count("cdn"))
				}
				if _, err := read(t, s, f, 0, 10); err != nil || h.count("resolve") != 2 {
					t.Errorf("the fresh URL was not cached: err %v, resolves %d", err, h.count("resolve"))
				}
			})
		}
	}
}

// A signed URL refused right after the resolve that issued it is
// retryable on either host: only the resolve's own 401/403 means access
// denied. Fails before this change for the mirror: a permanent
// ErrAccessDenied.
func TestReadFreshSignedURLRefusedIsRetryable(t *testing.T) {
	for _, onHub := range []bool{false, true} {
		t.Run(fmt.Sprintf("cdn on hub host %v", onHub), func(t *testing.T) {
			h := newFakeHub(t, defaultFiles()...)
			h.mirror(onHub, 0)
			h.setHook("cdn", func(w http.ResponseWriter, r *http.Request) bool {
				http.Error(w, "denied", http.StatusForbidden)
				return true
			})
			_, err := read(t, h.source(testEntry(), testToken), h.fetchFile(staleLFS), 0, 10)
			if !errors.Is(err, ErrAccessDenied) || fetch.IsPermanent(err) {
				t.Fatalf("err = %v, want a retryable ErrAccessDenied", err)
			}
			checkMessage(t, err, staleLFS, "freshly signed")
		})
	}
}

// The resolve's own 401/403 is access denied, permanently, mirror or not
// (a guard for the change above: it held before it too).
func TestReadResolveDeniedIsAccessDenied(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			h := newFakeHub(t, defaultFiles()...)
			h.mirror(true, 0)
			h.setHook("resolve", func(w http.ResponseWriter, r *http.Request) bool {
				fakeError(w, status, "")
				return true
			})
			_, err := read(t, h.source(testEntry(), testToken), h.fetchFile(staleLFS), 0, 10)
			if !errors.Is(err, ErrAccessDenied) || !fetch.IsPermanent(err) {
				t.Fatalf("err = %v, want a permanent ErrAccessDenied", err)
			}
			checkMessage(t, err, "access denied", "hf_access_token", testTokenFrom)
		})
	}
}

// A cached URL whose host resets the connection is forgotten, so the next
// attempt resolves again (the CDN host may have moved for good) rather
// than retry a dead URL forever. Fails before this change: the cached URL
// stayed, and every retry went to it without asking the Hub.
func TestReadForgetsCachedURLAfterNetworkError(t *testing.T) {
	h := newFakeHub(t, defaultFiles()...)
	s := h.source(testEntry(), testToken)
	f := h.fetchFile(staleLFS)
	if _, err := read(t, s, f, 0, 10); err != nil {
		t.Fatal(err)
	}
	h.setHook("cdn", func(w http.ResponseWriter, r *http.Request) bool {
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
		return true
	})
	if _, err := read(t, s, f, 10, 10); err == nil || fetch.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable network error", err)
	}
	h.setHook("cdn", nil)
	got, err := read(t, s, f, 10, 10)
	if err != nil || !bytes.Equal(got, h.file(staleLFS).data[10:20]) {
		t.Fatalf("after the CDN came back: err %v", err)
	}
	if n := h.count("resolve"); n != 2 {
		t.Errorf("%d resolves, want 2: the URL that failed must be resolved again", n)
	}
}

// A read at the commit a branch was pinned to when the repo was listed,
// which the origin no longer has, says so and names --refresh. Fails before
// this change: "revision main not found in repo acme/llama: check
// revision", though main is fine.
func TestReadPinnedCommitGone(t *testing.T) {
	const gone = "fedcba9876543210fedcba9876543210fedcba98"
	cases := []struct {
		name, rev string
		want      []string
		changed   bool
	}{
		{"branch pinned", "main", []string{"commit " + gone, "revision main", "is gone", "force-pushed", "--refresh"}, true},
		{"commit asked for", gone, []string{"revision " + gone + " not found", "check revision"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newFakeHub(t, defaultFiles()...)
			e := testEntry()
			e.Revision = c.rev
			f := h.fetchFile("config.json")
			f.Version = gone
			_, err := read(t, h.source(e, testToken), f, 0, 4)
			if !errors.Is(err, ErrRevisionNotFound) || !fetch.IsPermanent(err) {
				t.Fatalf("err = %v, want a permanent ErrRevisionNotFound", err)
			}
			if errors.Is(err, fetch.ErrChanged) != c.changed {
				t.Errorf("errors.Is(fetch.ErrChanged) = %v, want %v", !c.changed, c.changed)
			}
			checkMessage(t, err, c.want...)
			if c.changed && strings.Contains(err.Error(), "revision main not found") {
				t.Errorf("message blames the branch: %v", err)
			}
		})
	}
}
