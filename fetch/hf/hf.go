// Package hf lists and reads model repos on the Hugging Face Hub (or a
// mirror at HF_ENDPOINT). It owns the Hub's HTTP API as documented in
// shared/reference/hub-api.md: resolving a revision to a commit, listing the
// tree at that commit, and ranged reads through the Hub's resolve endpoint and
// the CDN it redirects to. It must not cache bytes (chunkcache does that), must
// not retry reads on its own (fetch.Retrying does that), and must never put a
// token, a header or a signed URL's query string into an error or a log line.
package hf

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
)

// DefaultEndpoint is used when Options.Endpoint is empty.
const DefaultEndpoint = "https://huggingface.co"

// defaultRevision is what the Hub clients resolve when no revision is given.
const defaultRevision = "main"

// maxRedirects bounds the hops of one request (Hub rename redirect, then the
// CDN redirect, with room to spare); a loop fails fast instead of spinning.
const maxRedirects = 5

const userAgent = "weightfs/hf"

// Options configure a Source. Every field has a usable zero value.
type Options struct {
	Endpoint string // HF_ENDPOINT; default https://huggingface.co (trailing slash tolerated)
	Token    string // bearer token for the Hub host only; default "" (anonymous)
	// TokenFrom says where Token came from, for messages; never the value.
	// E.g. "secret hf_access_token (file /secrets/hf_access_token)".
	TokenFrom  string
	HTTPClient *http.Client      // default: NewHTTPClient(); redirects are always handled here
	Logger     *slog.Logger      // default: discard
	Retry      fetch.RetryPolicy // List's retries; zero: fetch.DefaultRetryPolicy
}

// Source serves one model_cache entry from the Hub. It is safe for
// concurrent use.
type Source struct {
	entry     config.Entry
	repo      string   // e.RepoID, trimmed
	repoPath  string   // repo id with each segment escaped, for URLs
	rev       string   // revision to resolve: e.Revision or "main"
	base      *url.URL // endpoint, no trailing slash, no query
	endpoint  string   // base as shown in messages (no userinfo)
	token     string
	tokenFrom string
	secret    string // runtime_secret_name, for hints
	client    *http.Client
	log       *slog.Logger
	retry     fetch.RetryPolicy
	initErr   error // a bad endpoint or repo id, reported by every call

	mu        sync.Mutex
	cdn       map[cdnKey]*url.URL      // GUARDED_BY(mu); where each file's bytes are: its CDN URL, or its pinned resolve URL when the Hub serves it; never held across I/O
	resolving map[cdnKey]chan struct{} // GUARDED_BY(mu); closed once the resolve in flight knows where the file is
}

var (
	_ fetch.Source       = (*Source)(nil)
	_ fetch.SecretHolder = (*Source)(nil)
)

// Secrets is the token, the only credential the Source sends.
func (s *Source) Secrets() []string {
	if s.token == "" {
		return nil
	}
	return []string{s.token}
}

// New returns a Source for e. Configuration problems (a malformed endpoint or
// repo id) are reported, permanently, by List and ReadRange, so that wiring
// code stays simple and the message reaches the user where the others do.
func New(e config.Entry, o Options) *Source {
	s := &Source{
		entry:     e,
		repo:      strings.TrimSpace(e.RepoID),
		rev:       e.Revision,
		token:     o.Token,
		tokenFrom: o.TokenFrom,
		secret:    e.SecretName,
		client:    o.HTTPClient,
		log:       o.Logger,
		retry:     o.Retry,
		cdn:       make(map[cdnKey]*url.URL),
		resolving: make(map[cdnKey]chan struct{}),
	}
	if s.rev == "" {
		s.rev = defaultRevision
	}
	if s.secret == "" {
		s.secret = config.DefaultSecretName
	}
	if s.tokenFrom == "" && s.token != "" {
		s.tokenFrom = "the configured token"
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("repo", s.repo)
	if s.retry.OnRetry == nil {
		s.retry.OnRetry = func(err error) { s.log.Warn("hub request failed, retrying", "err", err) }
	}
	if s.client == nil {
		s.client = NewHTTPClient()
	} else {
		// A copy, so the caller's client keeps its own redirect policy: we
		// must see each hop to decide where the token may go and to learn
		// the CDN URL worth caching.
		c := *s.client
		c.CheckRedirect = noRedirects
		s.client = &c
	}
	s.base, s.endpoint, s.initErr = parseEndpoint(o.Endpoint)
	if s.initErr == nil {
		s.repoPath, s.initErr = escapeRepo(s.repo)
	}
	if s.initErr != nil {
		s.initErr = fetch.Permanent(fmt.Errorf("%s: %w", e.Name(), s.initErr))
	}
	return s
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// NewHTTPClient returns the client used when Options.HTTPClient is nil: the
// transport every origin shares (fetch.NewTransport), and redirects left to
// the Source.
func NewHTTPClient() *http.Client {
	return &http.Client{Transport: fetch.NewTransport(), CheckRedirect: noRedirects}
}

// parseEndpoint accepts "https://host[:port][/prefix][/]" and returns it
// without the trailing slash, plus a form safe to print.
func parseEndpoint(ep string) (*url.URL, string, error) {
	ep = strings.TrimSpace(ep)
	if ep == "" {
		ep = DefaultEndpoint
	}
	u, err := url.Parse(strings.TrimRight(ep, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, "", fmt.Errorf("HF endpoint %q is not an http(s) URL", redactString(ep))
	}
	u.RawQuery, u.Fragment, u.RawFragment, u.ForceQuery = "", "", "", false
	shown := *u
	shown.User = nil
	return u, shown.String(), nil
}

// escapeRepo checks a repo id ("org/name", or a legacy "name") and escapes
// each segment for use in a URL path.
func escapeRepo(repo string) (string, error) {
	segs := strings.Split(repo, "/")
	if repo == "" || len(segs) > 2 {
		return "", fmt.Errorf("repo_id %q is not of the form org/name", repo)
	}
	for i, seg := range segs {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("repo_id %q is not of the form org/name", repo)
		}
		segs[i] = url.PathEscape(seg)
	}
	return strings.Join(segs, "/"), nil
}

// url builds endpoint + an already escaped path (+ raw query).
func (s *Source) url(escapedPath, rawQuery string) (*url.URL, error) {
	raw := s.base.String() + escapedPath
	if rawQuery != "" {
		raw += "?" + rawQuery
	}
	return url.Parse(raw)
}

// isHub reports whether u is on the Hub host (scheme, host and port), the
// only place the token may be sent.
func (s *Source) isHub(u *url.URL) bool {
	return strings.EqualFold(u.Scheme, s.base.Scheme) && hostPort(u) == hostPort(s.base)
}

// isResolve reports whether u is a resolve URL on the Hub host
// ({org}/{name}/resolve/..., or a legacy {name}/resolve/...), whose answers
// are the Hub's own; a signed URL served on the Hub's host (a mirror's CDN)
// is not one.
func (s *Source) isResolve(u *url.URL) bool {
	if !s.isHub(u) {
		return false
	}
	rest, ok := strings.CutPrefix(u.EscapedPath(), s.base.EscapedPath()+"/")
	if !ok {
		return false
	}
	segs := strings.Split(rest, "/")
	return (len(segs) > 3 && segs[2] == "resolve") || (len(segs) > 2 && segs[1] == "resolve")
}

func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return strings.ToLower(u.Hostname()) + ":" + port
}

// get issues GET u and follows redirects itself (at most maxRedirects), so
// that the token goes only to Hub-host hops and the caller sees the final
// URL in resp.Request.URL. With follow false it returns the first answer.
// leaving, if not nil, is told each redirect from a resolve URL to a URL
// that is not one (a signed CDN URL, on another host or, for a mirror, on
// the Hub's own), before it is followed.
func (s *Source) get(ctx context.Context, u *url.URL, rangeHdr, op string, follow bool, leaving func(*url.URL)) (*http.Response, error) {
	for hop := 0; ; hop++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, fetch.Permanent(fmt.Errorf("%s: bad URL %s", op, redact(u)))
		}
		req.Header.Set("User-Agent", userAgent)
		if rangeHdr != "" {
			req.Header.Set("Range", rangeHdr)
		}
		if s.token != "" && s.isHub(u) {
			req.Header.Set("Authorization", "Bearer "+s.token)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			return nil, netError(op, u, err)
		}
		if !follow || !isRedirect(resp.StatusCode) {
			return resp, nil
		}
		loc := resp.Header.Get("Location")
		drain(resp)
		if loc == "" {
			return nil, fetch.Permanent(fmt.Errorf("%s: HTTP %d redirect without a Location from %s", op, resp.StatusCode, redact(u)))
		}
		next, err := u.Parse(loc)
		if err != nil || (next.Scheme != "http" && next.Scheme != "https") {
			return nil, fetch.Permanent(fmt.Errorf("%s: unusable redirect from %s", op, redact(u)))
		}
		if hop >= maxRedirects {
			return nil, fetch.Permanent(fmt.Errorf("%s: more than %d redirects (last to %s)", op, maxRedirects, redact(next)))
		}
		if leaving != nil && s.isResolve(u) && !s.isResolve(next) {
			leaving(next)
		}
		u = next
	}
}

func isRedirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// drain reads a little of an unwanted body so the connection can be reused,
// then closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
}

// redact returns u without userinfo, query or fragment: signed CDN URLs carry
// their signature in the query string.
func redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = "", false, "", ""
	return c.String()
}

func redactString(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return redact(u)
	}
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		return raw[:i]
	}
	return raw
}
