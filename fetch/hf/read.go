package hf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/weightfs/weightfs/fetch"
)

// cdnKey names one file at one commit; its CDN URL is the same for all of
// its chunks.
type cdnKey struct{ path, commit string }

// errCDNRefused marks a 401, 403 or 410 from a signed URL obtained earlier
// (cached from a resolve's redirect): the signature has expired, or the
// origin restarted with a new key, and resolving again gets a fresh one.
// Where the URL is, on a CDN host or on the Hub's own host as mirrors and
// proxies serve it, does not matter. Retryable.
var errCDNRefused = errors.New("CDN refused the signed URL")

// ReadRange fills p with bytes [off, off+len(p)) of f at commit f.Version.
// The first read of an LFS file goes through the Hub's resolve endpoint and
// remembers the CDN URL it redirects to; later reads go straight to the CDN.
// It does not retry, except for one fresh resolve when a cached CDN URL is
// refused (signed URLs expire after hours, and a restarted origin may have
// re-keyed). A cached URL that fails at the network level is forgotten too,
// so the next attempt resolves anew rather than retrying a host that may
// be gone for good.
func (s *Source) ReadRange(ctx context.Context, f fetch.File, off int64, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if s.initErr != nil {
		return s.initErr
	}
	end := off + int64(len(p))
	if off < 0 || end > f.Size || end < off {
		return fetch.Permanent(fmt.Errorf("file %q of repo %s: range [%d, %d) is outside the file's %d bytes",
			f.Path, s.repo, off, end, f.Size))
	}
	if f.Version == "" {
		// Reading by branch could mix bytes of two commits.
		return fetch.Permanent(fmt.Errorf("file %q of repo %s: no commit recorded; list the repo again", f.Path, s.repo))
	}
	key := cdnKey{f.Path, f.Version}
	u, publish, err := s.awaitCDN(ctx, key)
	if err != nil {
		return fmt.Errorf("file %q of repo %s: waiting for its download URL: %w", f.Path, s.repo, err)
	}
	if u != nil {
		err := s.readFrom(ctx, f, off, p, u, key, true, nil)
		if !errors.Is(err, errCDNRefused) {
			return err
		}
		s.forgetCDN(key, u)
		s.log.Info("CDN refused a cached URL, resolving the file again", "path", f.Path, "host", u.Host)
		if u, publish, err = s.awaitCDN(ctx, key); err != nil || u != nil {
			if err != nil {
				return fmt.Errorf("file %q of repo %s: waiting for its download URL: %w", f.Path, s.repo, err)
			}
			// Another reader resolved meanwhile; if its URL is refused
			// too, it goes, and the retry policy's next attempt resolves.
			err := s.readFrom(ctx, f, off, p, u, key, true, nil)
			if errors.Is(err, errCDNRefused) {
				s.forgetCDN(key, u)
			}
			return err
		}
	}
	defer publish(nil)
	r, err := s.resolveURL(f)
	if err != nil {
		return err
	}
	return s.readFrom(ctx, f, off, p, r, key, false, publish)
}

// awaitCDN returns the cached CDN URL of a file. When there is none and
// another read is resolving the file, it waits for that resolve's redirect
// rather than resolving too: a loader's first touch of a shard starts a
// dozen ranged reads at once, and each resolve is a request to the Hub
// (which rate-limits them) for the same answer. Otherwise the caller is to
// resolve, and must call publish once, with the CDN URL when the redirect
// names it (the waiters then go straight there) or nil when there is none
// (a small file served by the Hub itself, or a failure); waiters that get
// nil resolve on their own.
func (s *Source) awaitCDN(ctx context.Context, key cdnKey) (u *url.URL, publish func(*url.URL), err error) {
	for {
		s.mu.Lock()
		if u := s.cdn[key]; u != nil {
			s.mu.Unlock()
			return u, nil, nil
		}
		ch, busy := s.resolving[key]
		if !busy {
			ch = make(chan struct{})
			s.resolving[key] = ch
			s.mu.Unlock()
			var once sync.Once
			return nil, func(u *url.URL) {
				once.Do(func() {
					s.mu.Lock()
					if u != nil {
						s.cdn[key] = u
					}
					delete(s.resolving, key)
					s.mu.Unlock()
					close(ch)
				})
			}, nil
		}
		s.mu.Unlock()
		select {
		case <-ch:
			s.mu.Lock()
			u := s.cdn[key]
			s.mu.Unlock()
			if u == nil {
				// No CDN for this file, or the resolve failed: go on one's own.
				return nil, func(*url.URL) {}, nil
			}
			return u, nil, nil
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// resolveURL is the Hub's download URL of f, pinned to its commit, each path
// segment escaped (spaces, unicode, '#', '?').
func (s *Source) resolveURL(f fetch.File) (*url.URL, error) {
	segs := strings.Split(f.Path, "/")
	for i, seg := range segs {
		segs[i] = url.PathEscape(seg)
	}
	u, err := s.url("/"+s.repoPath+"/resolve/"+url.PathEscape(f.Version)+"/"+strings.Join(segs, "/"), "")
	if err != nil {
		return nil, fetch.Permanent(fmt.Errorf("file %q of repo %s: %w", f.Path, s.repo, err))
	}
	return u, nil
}

// readFrom GETs the range from u (following redirects), remembers where the
// bytes came from if that was a CDN, and checks the answer strictly.
// leaving, if not nil, is told where the file's bytes are as soon as that is
// known: the CDN URL when the redirect names it, or the resolve URL itself
// when the Hub answers with the bytes.
func (s *Source) readFrom(ctx context.Context, f fetch.File, off int64, p []byte, u *url.URL, key cdnKey, cached bool, leaving func(*url.URL)) error {
	last := off + int64(len(p)) - 1
	ri := reqInfo{op: fmt.Sprintf("GET resolve %s@%s %s bytes=%d-%d", s.repo, f.Version, f.Path, off, last),
		commit: f.Version, path: f.Path}
	if cached {
		ri.op = fmt.Sprintf("GET %s bytes=%d-%d", redact(u), off, last)
	}
	resp, err := s.get(ctx, u, fmt.Sprintf("bytes=%d-%d", off, last), ri.op, true, leaving)
	if err != nil {
		if cached && !errors.Is(err, context.Canceled) {
			// Refused, reset, timed out: the host may have moved or the
			// node died; the Hub's next redirect names one that works.
			s.forgetCDN(key, u)
		}
		return err
	}
	defer resp.Body.Close()
	final := resp.Request.URL
	// signed: the answer is not the Hub's own answer to a resolve we asked,
	// but comes from a URL it handed out, now (a redirect) or earlier (the
	// cache). Mirrors serve those on their own host, so the host says
	// nothing here.
	signed := cached || !s.isResolve(final)
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent {
		switch {
		case signed && !cached:
			s.rememberCDN(key, final)
		case !signed && leaving != nil:
			// The Hub serves this file itself (not in LFS): its pinned
			// resolve URL is where the waiters go, all at once.
			leaving(final)
		}
		return s.readBody(resp, f, off, p, ri)
	}
	if signed && staleURLStatus(resp.StatusCode) {
		// Only a resolve's own 401/403 means access denied; a signed URL's
		// means it is stale, whatever host serves it.
		st := &fetch.StatusError{Op: ri.op, Status: resp.StatusCode}
		if cached {
			return newErr(errCDNRefused, st, "%s: %s refused the signed URL obtained earlier (expired, or the origin re-keyed); resolving again",
				s.where(ri), final.Host)
		}
		// A URL signed a moment ago was refused (clock skew, a CDN node
		// out of sync): retryable, since the next attempt signs anew.
		return newErr(ErrAccessDenied, st, "%s: the CDN %s refused a freshly signed URL", s.where(ri), final.Host)
	}
	return s.statusError(resp, ri)
}

// readBody checks that a 2xx answer is exactly the requested range of this
// file and reads it into p. Any mismatch is ErrBadResponse (retryable).
func (s *Source) readBody(resp *http.Response, f fetch.File, off int64, p []byte, ri reqInfo) error {
	n := int64(len(p))
	last := off + n - 1
	bad := func(format string, args ...any) error {
		return newErr(ErrBadResponse, nil, "%s: %s from %s", s.where(ri), fmt.Sprintf(format, args...), redact(resp.Request.URL))
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		a, b, total, ok := fetch.ParseContentRange(cr)
		if !ok || a != off || b != last || total != f.Size {
			return bad("asked for bytes %d-%d/%d, got Content-Range %q", off, last, f.Size, cr)
		}
	case http.StatusOK:
		// A whole-file answer is the right bytes only when the whole file
		// was asked for.
		if off != 0 || n != f.Size {
			return bad("asked for bytes %d-%d of %d, got the whole file (Range ignored)", off, last, f.Size)
		}
	}
	if resp.ContentLength >= 0 && resp.ContentLength != n {
		return bad("asked for %d bytes, Content-Length is %d", n, resp.ContentLength)
	}
	got, err := io.ReadFull(resp.Body, p)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return bad("short body: %d of %d bytes", got, n)
		}
		return fmt.Errorf("%s: reading the body after %d of %d bytes: %w", s.where(ri), got, n, err)
	}
	return nil
}

// staleURLStatus: the answers of a signed URL that has expired or whose key
// the origin no longer has (S3 and CloudFront say 403, some CDNs 410 Gone,
// a few 401).
func staleURLStatus(code int) bool {
	return code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusGone
}

func (s *Source) rememberCDN(k cdnKey, u *url.URL) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cdn[k] = u
}

// forgetCDN drops u unless another reader has already replaced it with a
// fresh URL.
func (s *Source) forgetCDN(k cdnKey, u *url.URL) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cdn[k] == u {
		delete(s.cdn, k)
	}
}
