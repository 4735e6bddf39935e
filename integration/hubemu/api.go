package hubemu

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Error codes the Hub puts in X-Error-Code.
const (
	CodeRepoNotFound     = "RepoNotFound"
	CodeRevisionNotFound = "RevisionNotFound"
	CodeEntryNotFound    = "EntryNotFound"
	CodeGatedRepo        = "GatedRepo"
)

// serveHub routes the Hub listener. Routing works on the escaped path because
// a revision like refs/pr/1 arrives as one segment, refs%2Fpr%2F1.
func (s *Server) serveHub(w http.ResponseWriter, r *http.Request) {
	segs, err := splitEscaped(r.URL.EscapedPath())
	if err != nil {
		writeError(w, http.StatusBadRequest, "", "bad path escaping")
		return
	}
	switch {
	case len(segs) >= 2 && segs[0] == "api" && segs[1] == "models":
		s.apiReqs.Add(1)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusMethodNotAllowed, "", "method not allowed")
			return
		}
		if !s.stallListing(r) {
			return
		}
		s.serveAPI(w, r, segs[2:])
	case s.opts.CDNOnHub && len(segs) == 4 && segs[0] == "repos" && segs[2] != "resolve":
		// A signed URL on the Hub's host; /{org}/{name}/resolve/... has
		// "resolve" where a CDN path has the hash's second byte.
		s.serveCDN(w, r)
	case len(segs) >= 4 && segs[2] == "resolve":
		s.contentReqs.Add(1)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusMethodNotAllowed, "", "method not allowed")
			return
		}
		s.serveResolve(w, r, segs[0]+"/"+segs[1], segs[3:])
	default:
		writeError(w, http.StatusNotFound, "", "Sorry, we can't find the page you are looking for.")
	}
}

// splitEscaped splits an escaped URL path into unescaped segments, dropping
// the empty ones (leading, trailing and doubled slashes).
func splitEscaped(p string) ([]string, error) {
	var segs []string
	for _, raw := range strings.Split(p, "/") {
		if raw == "" {
			continue
		}
		seg, err := url.PathUnescape(raw)
		if err != nil {
			return nil, err
		}
		segs = append(segs, seg)
	}
	return segs, nil
}

// splitRev takes the revision off the front of the segments after
// /resolve/ or /tree/. Clients escape it into one segment; an unescaped
// refs/pr/N or refs/convert/X is accepted too.
func splitRev(segs []string) (rev string, rest []string) {
	if len(segs) >= 3 && segs[0] == "refs" && (segs[1] == "pr" || segs[1] == "convert") {
		return strings.Join(segs[:3], "/"), segs[3:]
	}
	if len(segs) == 0 {
		return "", nil
	}
	return segs[0], segs[1:]
}

// lookup finds the repo and checks access. listing says the request only
// reads metadata, which a repo with GatedListingPublic shows to anyone. It
// writes the error and returns nil when the request may not proceed.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request, id string, listing bool) *repo {
	rp := s.repo(id)
	if rp == nil {
		writeError(w, http.StatusNotFound, CodeRepoNotFound, "Repository not found")
		return nil
	}
	auth := r.Header.Get("Authorization")
	authorized := s.opts.Token != "" && auth == "Bearer "+s.opts.Token
	if authorized {
		return rp
	}
	if rp.Private {
		// The Hub does not reveal that a private repo exists.
		writeError(w, http.StatusUnauthorized, CodeRepoNotFound, "Repository not found")
		return nil
	}
	if rp.Gated && !(listing && rp.GatedListingPublic) {
		if auth == "" {
			writeError(w, http.StatusUnauthorized, CodeGatedRepo, fmt.Sprintf(
				"Access to model %s is restricted. You must have access to it and be authenticated to access it. Please log in.", id))
		} else {
			writeError(w, http.StatusForbidden, CodeGatedRepo, fmt.Sprintf(
				"Access to model %s is restricted and you are not in the authorized list. Visit %s/%s to ask for access.", id, s.hubURL, id))
		}
		return nil
	}
	return rp
}

func (s *Server) resolveRev(w http.ResponseWriter, rp *repo, rev string) (string, bool) {
	commit, ok := rp.resolveRev(rev)
	if !ok {
		writeError(w, http.StatusNotFound, CodeRevisionNotFound, "Invalid rev id: "+rev)
	}
	return commit, ok
}

// serveAPI answers /api/models/{org}/{name}/revision/{rev},
// /api/models/{org}/{name}/tree/{rev}[/{path}] and /api/models/{org}/{name}
// (the model info at the default branch, as huggingface_hub's model_info
// asks when given no revision).
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, segs []string) {
	if len(segs) == 2 {
		if rp := s.lookup(w, r, segs[0]+"/"+segs[1], true); rp != nil {
			s.serveRevision(w, r, rp, rp.defaultCommit())
		}
		return
	}
	if len(segs) < 4 || (segs[2] != "revision" && segs[2] != "tree") {
		writeError(w, http.StatusNotFound, "", "Sorry, we can't find the page you are looking for.")
		return
	}
	rp := s.lookup(w, r, segs[0]+"/"+segs[1], true)
	if rp == nil {
		return
	}
	if segs[2] == "revision" {
		// Everything after /revision/ is the revision, escaped or not.
		commit, ok := s.resolveRev(w, rp, strings.Join(segs[3:], "/"))
		if ok {
			s.serveRevision(w, r, rp, commit)
		}
		return
	}
	rev, rest := splitRev(segs[3:])
	commit, ok := s.resolveRev(w, rp, rev)
	if !ok {
		return
	}
	w.Header().Set("X-Repo-Commit", commit)
	s.serveTree(w, r, rp, commit, strings.Join(rest, "/"))
}

type siblingLFS struct {
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	PointerSize int64  `json:"pointerSize"`
}

type sibling struct {
	RFilename string      `json:"rfilename"`
	Size      *int64      `json:"size,omitempty"`
	BlobID    string      `json:"blobId,omitempty"`
	LFS       *siblingLFS `json:"lfs,omitempty"`
}

type modelInfo struct {
	ID           string    `json:"id"`
	ModelID      string    `json:"modelId"`
	SHA          string    `json:"sha"`
	Private      bool      `json:"private"`
	Gated        any       `json:"gated"` // false or "manual", as on the Hub
	Disabled     bool      `json:"disabled"`
	LastModified string    `json:"lastModified"`
	Tags         []string  `json:"tags"`
	Siblings     []sibling `json:"siblings"`
}

func (s *Server) serveRevision(w http.ResponseWriter, r *http.Request, rp *repo, commit string) {
	blobs := isTrue(r.URL.Query().Get("blobs"))
	info := modelInfo{
		ID: rp.ID, ModelID: rp.ID, SHA: commit, Private: rp.Private, Gated: false,
		LastModified: "2024-01-01T00:00:00.000Z", Tags: []string{}, Siblings: []sibling{},
	}
	if rp.Gated {
		info.Gated = "manual"
	}
	for _, f := range rp.files {
		sb := sibling{RFilename: f.path}
		if blobs {
			size := f.size
			sb.Size, sb.BlobID = &size, f.blobID
			if f.lfs {
				sb.LFS = &siblingLFS{Size: f.size, SHA256: f.sha256, PointerSize: f.ptrSize}
			}
		}
		info.Siblings = append(info.Siblings, sb)
	}
	writeJSON(w, info)
}

type treeLFS struct {
	OID         string `json:"oid"`
	Size        int64  `json:"size"`
	PointerSize int64  `json:"pointerSize"`
}

type treeEntry struct {
	Type string   `json:"type"`
	OID  string   `json:"oid"`
	Size int64    `json:"size"`
	Path string   `json:"path"`
	LFS  *treeLFS `json:"lfs,omitempty"`
}

// treeEntries lists what is under dir ("" = root): direct children, or
// everything below when recursive, directories included, in path order.
func (rp *repo) treeEntries(commit, dir string, recursive bool) []treeEntry {
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	under := func(p string) bool {
		if !strings.HasPrefix(p, prefix) || p == dir {
			return false
		}
		return recursive || !strings.Contains(p[len(prefix):], "/")
	}
	var out []treeEntry
	di, fi := 0, 0
	// Merge the two sorted lists so the listing is in one path order.
	for di < len(rp.dirs) || fi < len(rp.files) {
		if fi >= len(rp.files) || (di < len(rp.dirs) && rp.dirs[di] < rp.files[fi].path) {
			d := rp.dirs[di]
			di++
			if under(d) {
				out = append(out, treeEntry{Type: "directory", OID: rp.treeOID(commit, d), Path: d})
			}
			continue
		}
		f := rp.files[fi]
		fi++
		if !under(f.path) {
			continue
		}
		e := treeEntry{Type: "file", OID: f.blobID, Size: f.size, Path: f.path}
		if f.lfs {
			e.LFS = &treeLFS{OID: f.sha256, Size: f.size, PointerSize: f.ptrSize}
		}
		out = append(out, e)
	}
	return out
}

func (s *Server) serveTree(w http.ResponseWriter, r *http.Request, rp *repo, commit, dir string) {
	dir = strings.Trim(dir, "/")
	if dir != "" && !rp.isDir(dir) {
		writeError(w, http.StatusNotFound, CodeEntryNotFound, fmt.Sprintf("Entry not found: %s is not a directory at %s", dir, commit))
		return
	}
	q := r.URL.Query()
	entries := rp.treeEntries(commit, dir, isTrue(q.Get("recursive")))
	off := 0
	if c := q.Get("cursor"); c != "" {
		raw, err := base64.RawURLEncoding.DecodeString(c)
		n, err2 := strconv.Atoi(string(raw))
		if err != nil || err2 != nil || n < 0 || n > len(entries) {
			writeError(w, http.StatusBadRequest, "", "invalid cursor")
			return
		}
		off = n
	}
	end := min(off+s.opts.PageSize, len(entries))
	if end < len(entries) {
		q.Set("cursor", base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end))))
		next := s.hubURL + r.URL.EscapedPath() + "?" + q.Encode()
		w.Header().Set("Link", "<"+next+`>; rel="next"`)
	}
	writeJSON(w, entries[off:end])
}

func isTrue(v string) bool {
	b, err := strconv.ParseBool(v)
	return err == nil && b
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}
