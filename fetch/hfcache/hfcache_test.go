package hfcache

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/weightfs/weightfs/fetch"
)

const (
	commit = "0123456789abcdef0123456789abcdef01234567"
	etag   = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

func TestLinkTargetClimbsOutOfEachFolder(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{"config.json", "../../blobs/" + etag},
		{"unet/model.safetensors", "../../../blobs/" + etag},
		{"a/b/c/d.bin", "../../../../../blobs/" + etag},
		{"text_encoder_2/config.json", "../../../blobs/" + etag},
	} {
		if got := LinkTarget(c.file, etag); got != c.want {
			t.Errorf("LinkTarget(%q) = %q, want %q", c.file, got, c.want)
		}
		// The target, taken from the link's folder, must land on the blob.
		repo := "/cache/models--acme--llm"
		link := filepath.Join(repo, "snapshots", commit, c.file)
		if got := filepath.Join(filepath.Dir(link), LinkTarget(c.file, etag)); got != filepath.Join(repo, "blobs", etag) {
			t.Errorf("%s resolves to %s", c.file, got)
		}
	}
}

func TestDirFollowsThePythonClient(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"HF_HUB_CACHE": "/x", "HF_HOME": "/h", "HOME": "/home/u"}, "/x"},
		{map[string]string{"HUGGINGFACE_HUB_CACHE": "/old", "HF_HOME": "/h"}, "/old"},
		{map[string]string{"HF_HOME": "/h", "XDG_CACHE_HOME": "/xdg"}, "/h/hub"},
		{map[string]string{"XDG_CACHE_HOME": "/xdg", "HOME": "/home/u"}, "/xdg/huggingface/hub"},
		{map[string]string{"HOME": "/home/u"}, "/home/u/.cache/huggingface/hub"},
		{map[string]string{"HF_HOME": "~/hf", "HOME": "/home/u"}, "/home/u/hf/hub"},
	} {
		got, err := Dir(func(k string) string { return c.env[k] })
		if err != nil || got != c.want {
			t.Errorf("Dir(%v) = %q, %v; want %q", c.env, got, err, c.want)
		}
	}
}

func TestFolderAndEtag(t *testing.T) {
	if got := Folder("acme/llm"); got != "models--acme--llm" {
		t.Fatal(got)
	}
	lfs := fetch.File{Path: "m.safetensors", Checksum: fetch.Checksum{Algo: fetch.AlgoSHA256, Value: etag}}
	small := fetch.File{Path: "config.json", Checksum: fetch.Checksum{Algo: fetch.AlgoGitSHA1, Value: commit}}
	none := fetch.File{Path: "odd", Version: commit}
	if Etag(lfs) != etag || Etag(small) != commit {
		t.Fatalf("etags %s %s", Etag(lfs), Etag(small))
	}
	if e := Etag(none); e == "" || e != Etag(none) || len(e) < 40 {
		t.Fatalf("no-checksum etag %q must be stable", e)
	}
}

func TestLinkAndRefs(t *testing.T) {
	r := Repo{Cache: t.TempDir(), ID: "acme/llm"}
	blob := r.BlobPath(etag)
	os.MkdirAll(filepath.Dir(blob), 0o755)
	os.WriteFile(blob, []byte("bytes"), 0o644)
	for _, f := range []string{"config.json", "unet/diffusion_pytorch_model.safetensors"} {
		if err := r.Link(commit, f, etag); err != nil {
			t.Fatal(err)
		}
		if err := r.Link(commit, f, etag); err != nil { // idempotent
			t.Fatal(err)
		}
		p := r.SnapshotPath(commit, f)
		target, err := os.Readlink(p)
		if err != nil || filepath.IsAbs(target) {
			t.Fatalf("%s: link %q, %v; want a relative link", f, target, err)
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != "bytes" {
			t.Fatalf("%s resolves to %q, %v", f, b, err)
		}
	}
	// A copy in the way is replaced by the link.
	p := r.SnapshotPath(commit, "tokenizer.json")
	os.WriteFile(p, []byte("stale"), 0o644)
	if err := r.Link(commit, "tokenizer.json", etag); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "bytes" {
		t.Fatalf("copy not replaced: %q", b)
	}
	if err := r.Link(commit, "../escape", etag); err == nil {
		t.Fatal("a path with .. was linked")
	}

	for _, c := range []struct{ rev, file string }{
		{"main", "refs/main"},
		{"v1.0", "refs/v1.0"},
		{"refs/pr/3", "refs/refs/pr/3"}, // as huggingface_hub writes and reads it
	} {
		if err := r.WriteRef(c.rev, commit); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(r.Dir(), c.file)); err != nil || string(b) != commit {
			t.Errorf("ref %s: %q, %v", c.rev, b, err)
		}
	}
	if err := r.WriteRef(commit, commit); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.RefPath(commit)); err == nil {
		t.Fatal("a commit revision got a ref")
	}
}
