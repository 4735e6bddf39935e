package hf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
)

var (
	hex40 = regexp.MustCompile(`^[0-9a-f]{40}$`)
	hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// hasRawControl reports a byte a terminal would act on (the issue's "ESC in
// remote names goes raw to the terminal").
func hasRawControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}

// One page of the Hub's recursive tree listing, decoded as getJSON does and
// turned into files by filesOf: what weightfs makes of whatever the Hub (or
// a mirror set with HF_ENDPOINT) answers.
func FuzzTreeListing(f *testing.F) {
	sha := strings.Repeat("ab", 32)
	oid := strings.Repeat("cd", 20)
	f.Add([]byte(`[{"type":"file","oid":"`+oid+`","size":12,"path":"config.json"},`+
		`{"type":"directory","oid":"`+oid+`","size":0,"path":"unet"},`+
		`{"type":"file","oid":"`+oid+`","size":134,"path":"unet/model.safetensors","lfs":{"oid":"`+sha+`","size":1073741824}}]`), "")
	for _, size := range []string{"1152921504606846976", "9223372036854775807", "-1", "-9223372036854775808", "9223372036854775808", "1e3", "1.5"} {
		f.Add([]byte(`[{"type":"file","oid":"`+oid+`","size":`+size+`,"path":"a"}]`), "")
		f.Add([]byte(`[{"type":"file","oid":"`+oid+`","size":1,"path":"b","lfs":{"oid":"`+sha+`","size":`+size+`}}]`), "*")
	}
	for _, p := range []string{"..", "a/../b", "../../etc/passwd", "/abs", "a//b", "a/", "./a", "x\x00y", "new\nline", "esc\x1b[2J", "", "a/b"} {
		b, _ := json.Marshal([]treeEntry{{Type: "file", Oid: oid, Size: 1, Path: p}, {Type: "file", Oid: oid, Size: 1, Path: "a"}})
		f.Add(b, "")
	}
	f.Add([]byte(`[{"type":"file","oid":"`+oid+`","size":1,"path":"a"},{"type":"file","oid":"`+oid+`","size":2,"path":"a"}]`), "")
	f.Add([]byte(`[{"type":"file","oid":"`+oid+`","size":1,"path":"a"},{"type":"file","oid":"`+oid+`","size":1,"path":"a"}]`), "")
	f.Add([]byte(`[{"type":"file","oid":"nothex","size":1,"path":"a","lfs":{"oid":"`+strings.ToUpper(sha)+`","size":1}}]`), "a")
	f.Add([]byte(`[{"type":"file","oid":"`+oid+`","size":1,"path":"a"}]`), "[")
	f.Add([]byte(`[{"type":"file","oid":"`+oid+`","size":1,"path":"a.json"}]`), "*.bin")
	f.Add([]byte(`{"error":"Repository not found"}`), "")
	f.Add([]byte(`null`), "")
	f.Add([]byte(`[] trailing`), "")

	client := &http.Client{}
	f.Fuzz(func(t *testing.T, body []byte, allow string) {
		var batch []treeEntry
		if json.NewDecoder(io.LimitReader(bytes.NewReader(body), maxJSON)).Decode(&batch) != nil {
			return // getJSON's error; nothing reaches filesOf
		}
		e := testEntry()
		if allow != "" {
			e.AllowPatterns = []string{allow}
		}
		s := New(e, Options{Endpoint: "http://hub.invalid/", HTTPClient: client})
		files, err := s.filesOf(batch, testCommit)
		if err != nil {
			if hasRawControl(err.Error()) {
				t.Fatalf("error prints a control character raw: %q", err.Error())
			}
			return
		}
		if len(files) == 0 {
			t.Fatal("no files and no error")
		}
		// Unsafe entries reach the manifest check, which refuses each
		// alone (resolveOne runs it on every listing).
		m := &fetch.Manifest{Files: files}
		for _, err := range fetch.CheckManifest(m) {
			if hasRawControl(err.Error()) {
				t.Fatalf("refusal prints a control character raw: %q", err.Error())
			}
		}
		files = m.Files
		for i, fl := range files {
			if i > 0 && files[i-1].Path >= fl.Path {
				t.Fatalf("files not sorted or repeated: %q then %q", files[i-1].Path, fl.Path)
			}
			if !fetch.ValidPath(fl.Path) || fl.Size < 0 || fl.Version != testCommit {
				t.Fatalf("accepted file %q size %d version %q", fl.Path, fl.Size, fl.Version)
			}
			if !config.Match(fl.Path, e.AllowPatterns, nil) {
				t.Fatalf("file %q does not match allow %q", fl.Path, allow)
			}
			i := slices.IndexFunc(batch, func(te treeEntry) bool { return te.Type == "file" && te.Path == fl.Path })
			if i < 0 {
				t.Fatalf("file %q is not a listed file", fl.Path)
			}
			te := batch[i]
			want, lfs := te.Size, te.LFS != nil
			if lfs {
				want = te.LFS.Size
			}
			if fl.Size != want || (fl.Extra["lfs"] == "1") != lfs {
				t.Fatalf("file %q: size %d lfs %v, listed %d lfs %v", fl.Path, fl.Size, fl.Extra["lfs"], want, lfs)
			}
			switch c := fl.Checksum; {
			case c.IsZero():
			case c.Algo == fetch.AlgoSHA256 && lfs && hex64.MatchString(c.Value):
			case c.Algo == fetch.AlgoGitSHA1 && !lfs && hex40.MatchString(c.Value):
			default:
				t.Fatalf("file %q: checksum %s (lfs %v)", fl.Path, c, lfs)
			}
		}
	})
}

// The Link headers of a tree page decide whether the listing goes on. A
// link the parser takes must be an http(s) URL, and a plain
// `<target>; rel="next"` must be taken exactly.
func FuzzNextLink(f *testing.F) {
	f.Add("https://huggingface.co/api/models/a/b/tree/c?recursive=true", `<https://huggingface.co/api/models/a/b/tree/c?cursor=x>; rel="next"`, "?cursor=abc")
	f.Add("https://hub.test/t", `<a,b>; rel="prev", </t?p=2>; rel="next last"`, "/t?p=2")
	f.Add("https://hub.test/t", `<javascript:alert(1)>; rel=next`, "file:///etc/passwd")
	f.Add("https://hub.test/t", `<http://[::1>; rel="next"`, "http://[::1")
	f.Add("https://hub.test/t", `<x?token=secret&`+"\x1b[2J"+`>; rel=next`, "\n")
	f.Add("https://hub.test/t", `<`, ">")
	f.Add("https://hub.test/t", `<<>>;rel=next;rel=next`, "%zz")
	f.Fuzz(func(t *testing.T, baseStr, header, target string) {
		base, err := url.Parse(baseStr)
		if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
			return // listTree's base is always the endpoint's URL
		}
		check := func(hs []string) *url.URL {
			u, err := nextLink(base, hs)
			switch {
			case err != nil && hasRawControl(err.Error()):
				t.Fatalf("error prints a control character raw: %q", err.Error())
			case err != nil && u != nil:
				t.Fatalf("both a link %v and an error %v", u, err)
			case u != nil && u.Scheme != "http" && u.Scheme != "https":
				t.Fatalf("headers %q: took non-http link %v", hs, u)
			}
			return u
		}
		check([]string{header})
		check([]string{header, header})
		if strings.ContainsAny(target, "<>") {
			return
		}
		want, err := base.Parse(strings.TrimSpace(target))
		if err != nil || (want.Scheme != "http" && want.Scheme != "https") {
			return
		}
		// The next link wins wherever it stands among other relations.
		hs := []string{fmt.Sprintf(`<%s>; rel="next"`, target)}
		if u := check(hs); u == nil || u.String() != want.String() {
			t.Fatalf("headers %q: got %v, want %v", hs, u, want)
		}
		hs = []string{`<https://hub.test/first>; rel="first"`, fmt.Sprintf(`<%s>; rel=next`, target)}
		if u := check(hs); u == nil || u.String() != want.String() {
			t.Fatalf("headers %q: got %v, want %v", hs, u, want)
		}
		if u := check([]string{fmt.Sprintf(`<%s>; rel="prev"`, target)}); u != nil {
			t.Fatalf("took a prev link %v as next", u)
		}
	})
}
