package hubemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
)

func TestRevisionJSON(t *testing.T) {
	s, files := newTestHub(t, Options{})
	var names []string
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)

	tests := []struct {
		rev, wantSHA string
	}{
		{"main", testCommit},
		{"v1.0", testCommit},
		{"refs%2Fpr%2F1", prCommit},
		{"refs/pr/1", prCommit}, // unescaped is accepted too
		{testCommit, testCommit},
		{prCommit, prCommit},
		{"", testCommit}, // /api/models/{repo}: the default branch
	}
	for _, tc := range tests {
		t.Run(tc.rev, func(t *testing.T) {
			u := s.URL() + "/api/models/acme/model/revision/" + tc.rev
			if tc.rev == "" {
				u = s.URL() + "/api/models/acme/model"
			}
			resp, body := do(t, http.DefaultClient, "GET", u)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var info struct {
				ID       string           `json:"id"`
				SHA      string           `json:"sha"`
				Siblings []map[string]any `json:"siblings"`
			}
			if err := json.Unmarshal(body, &info); err != nil {
				t.Fatal(err)
			}
			if info.ID != "acme/model" || info.SHA != tc.wantSHA {
				t.Fatalf("id %q sha %q, want acme/model %s", info.ID, info.SHA, tc.wantSHA)
			}
			var got []string
			for _, sb := range info.Siblings {
				if len(sb) != 1 {
					t.Errorf("sibling %v: without blobs=true only rfilename is expected", sb)
				}
				got = append(got, sb["rfilename"].(string))
			}
			if strings.Join(got, "|") != strings.Join(names, "|") {
				t.Fatalf("siblings %v, want %v", got, names)
			}
		})
	}
}

func TestRevisionBlobs(t *testing.T) {
	s, files := newTestHub(t, Options{})
	resp, body := do(t, http.DefaultClient, "GET", s.URL()+"/api/models/acme/model/revision/main?blobs=true")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var info struct {
		Siblings []struct {
			RFilename string `json:"rfilename"`
			Size      int64  `json:"size"`
			BlobID    string `json:"blobId"`
			LFS       *struct {
				Size        int64  `json:"size"`
				SHA256      string `json:"sha256"`
				PointerSize int64  `json:"pointerSize"`
			} `json:"lfs"`
		} `json:"siblings"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatal(err)
	}
	if len(info.Siblings) != len(files) {
		t.Fatalf("%d siblings, want %d", len(info.Siblings), len(files))
	}
	for _, sb := range info.Siblings {
		content := files[sb.RFilename]
		if sb.Size != int64(len(content)) {
			t.Errorf("%s: size %d, want %d", sb.RFilename, sb.Size, len(content))
		}
		wantLFS := IsLFS(sb.RFilename, int64(len(content)))
		if (sb.LFS != nil) != wantLFS {
			t.Errorf("%s: lfs %v, want %v", sb.RFilename, sb.LFS != nil, wantLFS)
			continue
		}
		if !wantLFS {
			if sb.BlobID != gitSHA1(content) {
				t.Errorf("%s: blobId %s, want git sha1 of content", sb.RFilename, sb.BlobID)
			}
			continue
		}
		ptr := fmt.Sprintf("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", sha256Hex(content), len(content))
		if sb.LFS.SHA256 != sha256Hex(content) || sb.LFS.Size != int64(len(content)) || sb.LFS.PointerSize != int64(len(ptr)) {
			t.Errorf("%s: lfs %+v", sb.RFilename, *sb.LFS)
		}
		if sb.BlobID != gitSHA1([]byte(ptr)) {
			t.Errorf("%s: blobId %s, want git sha1 of the LFS pointer", sb.RFilename, sb.BlobID)
		}
	}
}

type entry struct {
	Type string `json:"type"`
	OID  string `json:"oid"`
	Size int64  `json:"size"`
	Path string `json:"path"`
	LFS  *struct {
		OID         string `json:"oid"`
		Size        int64  `json:"size"`
		PointerSize int64  `json:"pointerSize"`
	} `json:"lfs"`
}

var linkRE = regexp.MustCompile(`^<([^>]+)>; rel="next"$`)

// listTree follows Link headers and returns all entries and the page count.
func listTree(t *testing.T, s *Server, u string) ([]entry, int) {
	t.Helper()
	var all []entry
	pages := 0
	for u != "" {
		resp, body := do(t, http.DefaultClient, "GET", u)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", u, resp.StatusCode, body)
		}
		var page []entry
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		pages++
		u = ""
		if l := resp.Header.Get("Link"); l != "" {
			m := linkRE.FindStringSubmatch(l)
			if m == nil || !strings.HasPrefix(m[1], s.URL()+"/api/models/") {
				t.Fatalf("Link %q: want <absolute hub url>; rel=\"next\"", l)
			}
			u = m[1]
		}
	}
	return all, pages
}

func TestTree(t *testing.T) {
	s, files := newTestHub(t, Options{PageSize: 3})
	base := s.URL() + "/api/models/acme/model/tree/"
	tests := []struct {
		name, url string
		want      []string // "d:path" or "f:path"
		pages     int
	}{
		{"recursive root", base + "main?recursive=true", []string{
			"f:big.dat", "f:config.json", "f:model.safetensors", "d:nested", "d:nested/a", "f:nested/a/b.json",
			"f:nested/c.txt", "f:small.dat", "d:sub dir", "f:sub dir/ünï côde.txt", "d:text_encoder",
			"f:text_encoder/model.bin", "d:tokenizer", "f:tokenizer/special map.txt", "f:tokenizer/tokenizer.json",
		}, 5},
		{"one level", base + "main", []string{
			"f:big.dat", "f:config.json", "f:model.safetensors", "d:nested", "f:small.dat", "d:sub dir",
			"d:text_encoder", "d:tokenizer",
		}, 3},
		{"subfolder", base + "main/nested?recursive=true", []string{"d:nested/a", "f:nested/a/b.json", "f:nested/c.txt"}, 1},
		{"subfolder one level", base + "main/nested", []string{"d:nested/a", "f:nested/c.txt"}, 1},
		{"escaped folder", base + testCommit + "/sub%20dir?recursive=true", []string{"f:sub dir/ünï côde.txt"}, 1},
		{"pr ref", base + "refs%2Fpr%2F1/tokenizer", []string{"f:tokenizer/special map.txt", "f:tokenizer/tokenizer.json"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, pages := listTree(t, s, tc.url)
			var short []string
			for _, e := range got {
				short = append(short, e.Type[:1]+":"+e.Path)
				if e.Type == "directory" {
					if len(e.OID) != 40 || e.LFS != nil {
						t.Errorf("%s: directory entry %+v", e.Path, e)
					}
					continue
				}
				content := files[e.Path]
				if e.Size != int64(len(content)) {
					t.Errorf("%s: size %d want %d", e.Path, e.Size, len(content))
				}
				if IsLFS(e.Path, e.Size) {
					if e.LFS == nil || e.LFS.OID != sha256Hex(content) || e.LFS.Size != e.Size || e.LFS.PointerSize < 100 {
						t.Errorf("%s: lfs %+v, want oid sha256", e.Path, e.LFS)
					}
				} else if e.LFS != nil || e.OID != gitSHA1(content) {
					t.Errorf("%s: oid %s lfs %v, want git sha1 and no lfs", e.Path, e.OID, e.LFS)
				}
			}
			if strings.Join(short, "|") != strings.Join(tc.want, "|") {
				t.Errorf("entries\n got %v\nwant %v", short, tc.want)
			}
			if pages != tc.pages {
				t.Errorf("%d pages, want %d", pages, tc.pages)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	s, _ := newTestHub(t, Options{})
	u := s.URL()
	const bad = "wrong_token"
	tests := []struct {
		name     string
		method   string
		url      string
		token    string
		status   int
		code     string
		noHeader bool // the answer must not carry X-Error-Code
	}{
		{"unknown repo api", "GET", u + "/api/models/acme/nope/revision/main", "", 404, CodeRepoNotFound, false},
		{"unknown repo resolve", "GET", u + "/acme/nope/resolve/main/config.json", "", 404, CodeRepoNotFound, false},
		{"unknown revision api", "GET", u + "/api/models/acme/model/revision/nope", "", 404, CodeRevisionNotFound, false},
		{"unknown revision tree", "GET", u + "/api/models/acme/model/tree/nope", "", 404, CodeRevisionNotFound, false},
		{"unknown revision resolve", "HEAD", u + "/acme/model/resolve/nope/config.json", "", 404, CodeRevisionNotFound, false},
		{"unknown commit", "GET", u + "/api/models/acme/model/revision/" + strings.Repeat("e", 40), "", 404, CodeRevisionNotFound, false},
		{"unknown file", "GET", u + "/acme/model/resolve/main/nope.json", "", 404, CodeEntryNotFound, false},
		{"folder is no file", "GET", u + "/acme/model/resolve/main/nested", "", 404, CodeEntryNotFound, false},
		{"unknown tree path", "GET", u + "/api/models/acme/model/tree/main/nope", "", 404, CodeEntryNotFound, false},
		{"gated api no token", "GET", u + "/api/models/acme/gated/revision/main", "", 401, CodeGatedRepo, false},
		{"gated resolve no token", "GET", u + "/acme/gated/resolve/main/config.json", "", 401, CodeGatedRepo, false},
		{"gated tree wrong token", "GET", u + "/api/models/acme/gated/tree/main", bad, 403, CodeGatedRepo, false},
		{"gated resolve wrong token", "HEAD", u + "/acme/gated/resolve/main/model.safetensors", bad, 403, CodeGatedRepo, false},
		{"gated api token", "GET", u + "/api/models/acme/gated/revision/main", testToken, 200, "", true},
		{"gated resolve token", "GET", u + "/acme/gated/resolve/main/config.json", testToken, 200, "", true},
		{"gated-open api no token", "GET", u + "/api/models/acme/gated-open/tree/main", "", 200, "", true},
		{"gated-open resolve no token", "GET", u + "/acme/gated-open/resolve/main/config.json", "", 401, CodeGatedRepo, false},
		{"private no token", "GET", u + "/api/models/acme/private/revision/main", "", 401, CodeRepoNotFound, false},
		{"private wrong token", "GET", u + "/acme/private/resolve/main/config.json", bad, 401, CodeRepoNotFound, false},
		{"private token", "GET", u + "/acme/private/resolve/main/config.json", testToken, 200, "", true},
		{"unknown route", "GET", u + "/nope", "", 404, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts []reqOpt
			if tc.token != "" {
				opts = append(opts, withToken(tc.token))
			}
			resp, body := do(t, noRedirect, tc.method, tc.url, opts...)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			got := resp.Header.Get("X-Error-Code")
			if got != tc.code || (tc.noHeader && got != "") {
				t.Fatalf("X-Error-Code %q, want %q", got, tc.code)
			}
			if tc.status >= 400 && tc.method == "GET" {
				var e struct {
					Error string `json:"error"`
				}
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Fatalf("error body %q: want {\"error\": ...}", body)
				}
			}
		})
	}
}

func TestRateLimitAndCounters(t *testing.T) {
	s, files := newTestHub(t, Options{})
	s.RateLimitNext(2)
	for i := 0; i < 2; i++ {
		resp, _ := do(t, http.DefaultClient, "GET", s.URL()+"/api/models/acme/model/revision/main")
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("request %d: status %d Retry-After %q, want 429 and 1", i, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	resp, _ := do(t, http.DefaultClient, "GET", s.URL()+"/api/models/acme/model/revision/main")
	if resp.StatusCode != 200 {
		t.Fatalf("after the 429s: status %d", resp.StatusCode)
	}
	if got := s.APIRequests(); got != 3 {
		t.Fatalf("APIRequests %d, want 3", got)
	}

	s.ResetCounters()
	// The default client follows the 302 to the CDN: two content requests.
	_, body := do(t, http.DefaultClient, "GET", s.URL()+"/acme/model/resolve/main/model.safetensors")
	_, body2 := do(t, http.DefaultClient, "GET", s.URL()+"/acme/model/resolve/main/config.json", withRange("bytes=0-3"))
	if string(body) != string(files["model.safetensors"]) || string(body2) != string(files["config.json"][:4]) {
		t.Fatal("bodies differ from the files")
	}
	if c, a, b := s.ContentRequests(), s.APIRequests(), s.BytesServed(); c != 3 || a != 0 || b != int64(len(body)+4) {
		t.Fatalf("content %d api %d bytes %d, want 3 0 %d", c, a, b, len(body)+4)
	}
	s.ResetCounters()
	if s.ContentRequests()+s.APIRequests()+s.BytesServed() != 0 {
		t.Fatal("ResetCounters left counts")
	}
}
