package hubemu

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
)

// serveResolve answers GET|HEAD /{repo}/resolve/{rev}/{path}: small files
// directly, LFS files with a 302 to a pre-signed CDN URL.
func (s *Server) serveResolve(w http.ResponseWriter, r *http.Request, id string, segs []string) {
	rp := s.lookup(w, r, id, false)
	if rp == nil {
		return
	}
	rev, rest := splitRev(segs)
	commit, ok := s.resolveRev(w, rp, rev)
	if !ok {
		return
	}
	h := w.Header()
	h.Set("X-Repo-Commit", commit)
	p := strings.Join(rest, "/")
	f := rp.byPath[p]
	if f == nil {
		writeError(w, http.StatusNotFound, CodeEntryNotFound, fmt.Sprintf("Entry not found: %s at %s", p, commit))
		return
	}
	if !sleepCtx(r.Context(), s.opts.TTFB) {
		return
	}
	if s.takeFailure(id, p) {
		writeError(w, http.StatusInternalServerError, "", "Internal Error (injected)")
		return
	}
	h.Set("ETag", `"`+f.blobID+`"`)
	if f.lfs {
		h.Set("Location", s.signURL(id, f))
		h.Set("X-Linked-Etag", `"`+f.sha256+`"`)
		h.Set("X-Linked-Size", strconv.FormatInt(f.size, 10))
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusFound)
		return
	}
	s.serveBytes(w, r, id, f)
}

// signURL issues a CDN URL for an LFS file. It names the blob by sha256 like
// the real CDN, and carries repo and path only so faults can find the file.
func (s *Server) signURL(id string, f *file) string {
	seq := s.cdnSeq.Add(1)
	exp := time.Now().Add(s.opts.CDNURLTTL).UnixMilli()
	q := url.Values{}
	q.Set("repo", id)
	q.Set("file", f.path)
	q.Set("Expires", strconv.FormatInt(exp, 10))
	q.Set("Seq", strconv.FormatInt(seq, 10))
	q.Set("Signature", s.sign(f.sha256, id, f.path, exp, seq))
	return fmt.Sprintf("%s/repos/%s/%s/%s?%s", s.cdnBase, f.sha256[:2], f.sha256[2:4], f.sha256, q.Encode())
}

func (s *Server) sign(sha, id, p string, exp, seq int64) string {
	m := hmac.New(sha256.New, *s.secret.Load())
	fmt.Fprintf(m, "%s\n%s\n%s\n%d\n%d", sha, id, p, exp, seq)
	return hex.EncodeToString(m.Sum(nil))
}

// serveCDN answers GET|HEAD on a pre-signed URL. Like S3, it refuses a
// request that also carries an Authorization header, unless it is served on
// the Hub's host (CDNOnHub), where clients rightly send the token.
func (s *Server) serveCDN(w http.ResponseWriter, r *http.Request) {
	s.contentReqs.Add(1)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, http.StatusMethodNotAllowed, "", "method not allowed")
		return
	}
	if r.Header.Get("Authorization") != "" && !s.opts.CDNOnHub {
		writeError(w, http.StatusBadRequest, "", "InvalidArgument: Only one auth mechanism allowed; the URL is pre-signed, do not send an Authorization header")
		return
	}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(segs) != 4 || segs[0] != "repos" {
		writeError(w, http.StatusNotFound, "", "NoSuchKey")
		return
	}
	sha := segs[3]
	q := r.URL.Query()
	id, p := q.Get("repo"), q.Get("file")
	exp, err1 := strconv.ParseInt(q.Get("Expires"), 10, 64)
	seq, err2 := strconv.ParseInt(q.Get("Seq"), 10, 64)
	want := s.sign(sha, id, p, exp, seq)
	if err1 != nil || err2 != nil || !hmac.Equal([]byte(want), []byte(q.Get("Signature"))) {
		writeError(w, http.StatusForbidden, "", "SignatureDoesNotMatch")
		return
	}
	if time.Now().UnixMilli() >= exp || seq <= s.cdnCutoff.Load() {
		writeError(w, s.opts.ExpiredStatus, "", "AccessDenied: Request has expired")
		return
	}
	var f *file
	if rp := s.repo(id); rp != nil {
		f = rp.byPath[p]
	}
	if f == nil || f.sha256 != sha {
		writeError(w, http.StatusNotFound, "", "NoSuchKey")
		return
	}
	if !sleepCtx(r.Context(), s.opts.TTFB) {
		return
	}
	if s.takeFailure(id, p) {
		writeError(w, http.StatusInternalServerError, "", "InternalError (injected)")
		return
	}
	w.Header().Set("ETag", `"`+f.sha256+`"`)
	s.serveBytes(w, r, id, f)
}

// parseRange interprets a Range header against a size. It returns the byte
// span to send and 200, 206 or 416. Headers it cannot honour (other units,
// several ranges, bad syntax) are ignored, as RFC 9110 allows: 200 and the
// whole file.
func parseRange(h string, size int64) (start, length int64, status int) {
	full := func() (int64, int64, int) { return 0, size, http.StatusOK }
	spec, ok := strings.CutPrefix(h, "bytes=")
	if h == "" || !ok || strings.Contains(spec, ",") {
		return full()
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return full()
	}
	if a == "" { // suffix: the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return full()
		}
		if n == 0 || size == 0 {
			return 0, 0, http.StatusRequestedRangeNotSatisfiable
		}
		n = min(n, size)
		return size - n, n, http.StatusPartialContent
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 {
		return full()
	}
	last := size - 1
	if b != "" {
		if last, err = strconv.ParseInt(b, 10, 64); err != nil || last < first {
			return full()
		}
		last = min(last, size-1)
	}
	if first >= size {
		return 0, 0, http.StatusRequestedRangeNotSatisfiable
	}
	return first, last - first + 1, http.StatusPartialContent
}

// serveBytes sends (part of) a file with Range support, faults and pacing.
func (s *Server) serveBytes(w http.ResponseWriter, r *http.Request, id string, f *file) {
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	ct := mime.TypeByExtension(path.Ext(f.path))
	if ct == "" {
		ct = "application/octet-stream"
	}
	start, n, status := parseRange(r.Header.Get("Range"), f.size)
	if status == http.StatusRequestedRangeNotSatisfiable {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", f.size))
		writeError(w, status, "", "Requested Range Not Satisfiable")
		return
	}
	h.Set("Content-Type", ct)
	if status == http.StatusPartialContent {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+n-1, f.size))
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	fd, err := os.Open(f.diskPath)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", "cannot open blob")
		return
	}
	defer fd.Close()
	corrupt, stall := s.bodyFault(id, f.path)
	w.WriteHeader(status)
	if stall > 0 {
		// Headers first, then silence: the client sees a 200/206 and then a
		// body that does not come, which only a read deadline catches.
		http.NewResponseController(w).Flush()
		if !sleepCtx(r.Context(), stall) {
			return
		}
	}
	p := s.newPacer()
	defer p.stop()
	if !p.limited() && !corrupt {
		// Fast path: the file goes to the socket with sendfile (net/http
		// unwraps an io.LimitedReader around an *os.File).
		if _, err := fd.Seek(start, io.SeekStart); err != nil {
			return
		}
		// Count before sending so a client that has read the whole body
		// sees it counted; take back what did not go out.
		s.bytesServed.Add(n)
		written, _ := io.Copy(w, io.LimitReader(fd, n))
		s.bytesServed.Add(written - n)
		return
	}
	bufp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bufp)
	cs := p.chunkSize(s.opts.PerConnBytesPerSec, s.opts.AggregateBytesPerSec)
	ctx := r.Context()
	if !corrupt {
		// Paced, but still with sendfile, slice by slice: the emulated
		// origin shares the machine's cores with the filesystem under
		// test, so it should cost as little CPU per byte as a CDN's does
		// us (nothing); a copy through a buffer here slowed the daemon.
		if _, err := fd.Seek(start, io.SeekStart); err != nil {
			return
		}
		for left := n; left > 0; {
			m := min(int64(cs), left)
			if err := p.wait(ctx, int(m)); err != nil {
				return
			}
			s.bytesServed.Add(m)
			wn, err := io.CopyN(w, fd, m)
			s.bytesServed.Add(wn - m)
			if err != nil {
				return
			}
			left -= m
		}
		return
	}
	for off, end := start, start+n; off < end; {
		m := int(min(int64(cs), end-off))
		if err := p.wait(ctx, m); err != nil {
			return
		}
		buf := (*bufp)[:m]
		if _, err := fd.ReadAt(buf, off); err != nil {
			return // the file shrank under us; the short body tells the client
		}
		corruptChunk(buf, off, off == start)
		s.bytesServed.Add(int64(m))
		wn, err := w.Write(buf)
		s.bytesServed.Add(int64(wn - m))
		if err != nil {
			return
		}
		off += int64(m)
	}
}

// corruptChunk flips every byte at a 4 KiB-aligned file offset, and the
// first byte of the body, so any non-empty body differs from the real
// content (a ranged read of a few bytes included).
func corruptChunk(buf []byte, off int64, first bool) {
	if first && off%4096 != 0 && len(buf) > 0 {
		buf[0] ^= 0xff
	}
	for i := (4096 - off%4096) % 4096; i < int64(len(buf)); i += 4096 {
		buf[i] ^= 0xff
	}
}
