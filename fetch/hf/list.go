package hf

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
)

// maxPages caps tree pagination: the Hub pages ~1000 entries at a time, so
// this allows ten million files while still ending a server loop.
const maxPages = 10000

// maxJSON caps one JSON answer (a revision's siblings list grows with the repo).
const maxJSON = 64 << 20

var (
	commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// treeEntry is one element of GET /api/models/{repo}/tree/{rev}.
type treeEntry struct {
	Type string `json:"type"` // "file" | "directory"
	Oid  string `json:"oid"`  // git blob sha1
	Size int64  `json:"size"`
	Path string `json:"path"`
	LFS  *struct {
		Oid  string `json:"oid"` // sha256 of the content
		Size int64  `json:"size"`
	} `json:"lfs"`
}

// List resolves the revision to a commit once, lists the tree at that commit
// (so a push to the branch cannot tear the listing), filters it by the
// entry's patterns and checks that the files can be downloaded.
func (s *Source) List(ctx context.Context) (*fetch.Manifest, error) {
	if s.initErr != nil {
		return nil, s.initErr
	}
	resolved := time.Now().UTC()
	commit, gated, err := s.resolveRevision(ctx)
	if err != nil {
		return nil, err
	}
	if commit != strings.ToLower(s.rev) {
		s.log.Warn("revision is not pinned: serving the commit it points to now",
			"revision", s.rev, "commit", commit)
	}
	entries, err := s.listTree(ctx, commit)
	if err != nil {
		return nil, err
	}
	files, err := s.filesOf(entries, commit)
	if err != nil {
		return nil, err
	}
	// Only a gated repo lists without a token yet refuses downloads; probing
	// other repos would cost a content request before any read.
	if gated {
		if err := s.probe(ctx, files); err != nil {
			return nil, err
		}
	}
	return &fetch.Manifest{
		Volume:   s.entry.VolumeFolder,
		Kind:     "hf",
		RepoID:   s.entry.RepoID,
		Revision: s.entry.Revision,
		Commit:   commit,
		Resolved: resolved,
		Files:    files,
	}, nil
}

// It also reports whether the Hub marks the repo gated ("gated": "auto" or
// "manual" rather than false).
func (s *Source) resolveRevision(ctx context.Context) (string, bool, error) {
	ri := reqInfo{op: fmt.Sprintf("GET revision %s@%s", s.repo, s.rev)}
	u, err := s.url("/api/models/"+s.repoPath+"/revision/"+url.PathEscape(s.rev), "")
	if err != nil {
		return "", false, fetch.Permanent(fmt.Errorf("%s: %w", ri.op, err))
	}
	var out struct {
		Sha   string `json:"sha"`
		Gated any    `json:"gated"`
	}
	err = s.retry.Do(ctx, func(ctx context.Context) error {
		_, err := s.getJSON(ctx, u, ri, &out)
		return err
	})
	if err != nil {
		return "", false, err
	}
	if !commitRE.MatchString(out.Sha) {
		return "", false, fetch.Permanent(newErr(ErrBadResponse, nil,
			"%s: the Hub answered without a 40-hex commit sha (%s)", s.where(ri), ri.op))
	}
	gated := out.Gated != nil && out.Gated != false
	return out.Sha, gated, nil
}

// listTree follows the Link rel="next" pages of the recursive tree listing.
// Each page is retried on its own, so a blip on page 50 does not restart.
func (s *Source) listTree(ctx context.Context, commit string) ([]treeEntry, error) {
	ri := reqInfo{op: fmt.Sprintf("GET tree %s@%s", s.repo, commit), commit: commit}
	next, err := s.url("/api/models/"+s.repoPath+"/tree/"+commit, "recursive=true")
	if err != nil {
		return nil, fetch.Permanent(fmt.Errorf("%s: %w", ri.op, err))
	}
	var all []treeEntry
	seen := make(map[string]bool)
	for page := 0; next != nil; page++ {
		if page >= maxPages || seen[next.String()] {
			return nil, fetch.Permanent(newErr(ErrBadResponse, nil,
				"%s: tree pagination does not end (page %d, next %s)", s.where(ri), page+1, redact(next)))
		}
		seen[next.String()] = true
		var (
			batch []treeEntry
			resp  *http.Response
		)
		err := s.retry.Do(ctx, func(ctx context.Context) error {
			batch = nil
			var err error
			resp, err = s.getJSON(ctx, next, ri, &batch)
			return err
		})
		if err != nil {
			return nil, err
		}
		all = append(all, batch...)
		if next, err = nextLink(resp.Request.URL, resp.Header.Values("Link")); err != nil {
			// Stopping here would silently serve part of the repo.
			return nil, fetch.Permanent(newErr(ErrBadResponse, nil, "%s: page %d: %v", s.where(ri), page+1, err))
		}
	}
	return all, nil
}

// attemptTimeout is the deadline of one listing request: the retry
// policy's, which the CLI sets from --fetch-timeout.
func (s *Source) attemptTimeout() time.Duration {
	if s.retry.AttemptTimeout > 0 {
		return s.retry.AttemptTimeout
	}
	return fetch.DefaultRetryPolicy.AttemptTimeout
}

// getJSON GETs u and decodes a 200 answer into out. The returned response's
// body is already closed; its headers and final URL remain usable.
func (s *Source) getJSON(ctx context.Context, u *url.URL, ri reqInfo, out any) (*http.Response, error) {
	resp, err := s.get(ctx, u, "", ri.op, true, nil)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return nil, s.statusError(resp, ri)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJSON)).Decode(out); err != nil {
		return nil, newErr(ErrBadResponse, nil, "%s: %s: decoding the answer: %v", s.where(ri), ri.op, err)
	}
	return resp, nil
}

// nextLink returns the rel="next" target of RFC 8288 Link headers, resolved
// against base, or nil when there is none. It tolerates several headers, several links per
// header, extra parameters, quoted or bare rel values with several types,
// and commas inside the <...> target.
func nextLink(base *url.URL, headers []string) (*url.URL, error) {
	for _, h := range headers {
		for rest := h; ; {
			lt := strings.IndexByte(rest, '<')
			if lt < 0 {
				break
			}
			gt := strings.IndexByte(rest[lt:], '>')
			if gt < 0 {
				break
			}
			target := rest[lt+1 : lt+gt]
			rest = rest[lt+gt+1:]
			params := rest
			if i := strings.IndexByte(rest, '<'); i >= 0 {
				params = rest[:i]
			}
			if !relIsNext(params) {
				continue
			}
			u, err := base.Parse(strings.TrimSpace(target))
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
				return nil, fmt.Errorf("unusable next-page link %q", redactString(target))
			}
			return u, nil
		}
	}
	return nil, nil
}

// relIsNext reports whether a link's parameters (`; rel="next", ` and the
// like, up to the next link) include the relation type "next".
func relIsNext(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimRight(strings.TrimSpace(p), ",")), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
			continue
		}
		v = strings.Trim(strings.TrimSpace(v), `"`)
		for _, rel := range strings.Fields(v) {
			if strings.EqualFold(rel, "next") {
				return true
			}
		}
	}
	return false
}

// filesOf keeps the files the entry asks for, checks their paths and turns
// them into fetch.Files at commit, sorted by path.
func (s *Source) filesOf(entries []treeEntry, commit string) ([]fetch.File, error) {
	allow, ignore := s.entry.AllowPatterns, s.entry.IgnorePatterns
	total := 0
	files := make([]fetch.File, 0, len(entries))
	byPath := make(map[string]treeEntry)
	for _, te := range entries {
		if te.Type != "file" {
			continue
		}
		// Overlapping pages repeat an entry harmlessly. Two different
		// files under one path, an unsafe path or an impossible size are
		// passed on: fetch.CheckManifest refuses each such entry alone,
		// with a message naming it, and the rest of the repo is served.
		if prev, dup := byPath[te.Path]; dup && sameEntry(prev, te) {
			continue
		} else if !dup {
			byPath[te.Path] = te
			total++
		}
		if !config.Match(te.Path, allow, ignore) {
			continue
		}
		files = append(files, s.fileOf(te, commit))
	}
	if len(files) == 0 {
		return nil, fetch.Permanent(newErr(ErrNoMatchingFiles, nil,
			"%s: no file matches allow_patterns %q and ignore_patterns %q (repo %s at revision %s has %d files)",
			s.entry.Name(), allow, ignore, s.repo, s.rev, total))
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

func sameEntry(a, b treeEntry) bool {
	return a.Oid == b.Oid && a.Size == b.Size && (a.LFS == nil) == (b.LFS == nil) &&
		(a.LFS == nil || *a.LFS == *b.LFS)
}

func (s *Source) fileOf(te treeEntry, commit string) fetch.File {
	f := fetch.File{Path: te.Path, Size: te.Size, Version: commit}
	if te.LFS != nil {
		// For LFS files the tree's size and oid describe the pointer's
		// blob on some servers; lfs.size and lfs.oid describe the content.
		f.Size = te.LFS.Size
		f.Extra = map[string]string{"lfs": "1"}
		if oid := strings.ToLower(te.LFS.Oid); sha256RE.MatchString(oid) {
			f.Checksum = fetch.Checksum{Algo: fetch.AlgoSHA256, Value: oid}
		}
	} else if oid := strings.ToLower(te.Oid); commitRE.MatchString(oid) {
		f.Checksum = fetch.Checksum{Algo: fetch.AlgoGitSHA1, Value: oid}
	}
	if f.Checksum.IsZero() {
		// Serving unverified beats refusing the repo over a format quirk.
		s.log.Warn("file has no usable checksum; it will be served unverified", "path", te.Path)
	}
	return f
}

// probe asks the Hub for the first byte of one file, without following the
// redirect, so that a gated or private repo fails at mount time with its
// message rather than as EIO on the first read. Listing works on gated repos;
// downloading does not. Only a definite refusal fails List; a blip is logged
// and left to the reads' own retries.
//
// It probes the first safetensors shard when there is one, the file a
// loader opens first, and keeps the CDN URL its redirect names, so that the
// first read of the model skips one round trip to the Hub.
func (s *Source) probe(ctx context.Context, files []fetch.File) error {
	i := len(files)
	for j, f := range files {
		switch {
		case f.Size == 0:
		case i == len(files):
			i = j
		case strings.HasSuffix(f.Path, ".safetensors") &&
			(!strings.HasSuffix(files[i].Path, ".safetensors") || f.Path < files[i].Path):
			i = j
		}
	}
	if i >= len(files) {
		return nil
	}
	f := files[i]
	ri := reqInfo{op: fmt.Sprintf("GET resolve %s@%s %s", s.repo, f.Version, f.Path), commit: f.Version, path: f.Path}
	u, err := s.resolveURL(f)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, s.attemptTimeout())
	defer cancel()
	resp, err := s.get(pctx, u, "bytes=0-0", ri.op, false, nil)
	if err != nil {
		s.log.Warn("could not check access to the repo's files", "err", err)
		return nil
	}
	defer drain(resp)
	if resp.StatusCode < 400 {
		if loc := resp.Header.Get("Location"); isRedirect(resp.StatusCode) && loc != "" {
			if next, err := u.Parse(loc); err == nil && (next.Scheme == "http" || next.Scheme == "https") && !s.isResolve(next) {
				s.rememberCDN(cdnKey{f.Path, f.Version}, next)
			}
		}
		return nil
	}
	err = s.statusError(resp, ri)
	if fetch.IsPermanent(err) {
		return err
	}
	s.log.Warn("could not check access to the repo's files", "err", err)
	return nil
}
