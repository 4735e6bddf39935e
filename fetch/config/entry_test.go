package config

import (
	"reflect"
	"testing"
)

func TestBucketPrefix(t *testing.T) {
	cases := []struct{ repo, bucket, prefix string }{
		{"s3://weights/llama/v1", "weights", "llama/v1"},
		{"s3://weights/llama/v1/", "weights", "llama/v1/"},
		{"s3://weights", "weights", ""},
		{"s3://weights/", "weights", ""},
		{"gs://path-to-my-bucket", "path-to-my-bucket", ""},
		{"gs://b//deep/x", "b", "deep/x"},
		{"acme/llama", "", ""},
	}
	for _, c := range cases {
		e := Entry{RepoID: c.repo}
		if e.Bucket() != c.bucket || e.Prefix() != c.prefix {
			t.Errorf("%s: Bucket, Prefix = %q, %q; want %q, %q", c.repo, e.Bucket(), e.Prefix(), c.bucket, c.prefix)
		}
	}
}

func TestName(t *testing.T) {
	if got := (Entry{Index: 2, RepoID: "acme/llama"}).Name(); got != "model_cache[2] (acme/llama)" {
		t.Errorf("Name = %q", got)
	}
	if got := (Entry{Index: 1}).Name(); got != "model_cache[1]" {
		t.Errorf("Name without repo = %q", got)
	}
}

func TestKey(t *testing.T) {
	base := Entry{Index: 0, RepoID: "acme/llama", Revision: "main", UseVolume: true, VolumeFolder: "llama",
		AllowPatterns: []string{"*.json", "*.safetensors"}, Kind: KindHF, SecretName: DefaultSecretName}
	want := `{"kind":"hf","repo_id":"acme/llama","revision":"main","allow_patterns":["*.json","*.safetensors"],"ignore_patterns":[],"use_volume":true,"volume_folder":"llama"}`
	if got := base.Key(); got != want {
		t.Fatalf("Key =\n%s\nwant\n%s", got, want)
	}
	same := base
	same.Index, same.SecretName, same.IgnorePatterns = 5, "other", []string{}
	if same.Key() != base.Key() {
		t.Errorf("Index, SecretName or nil-vs-empty changed the key")
	}
	noKind := base
	noKind.Kind = ""
	if noKind.Key() != base.Key() {
		t.Errorf("empty Kind is not hf in the key")
	}
	changes := []func(*Entry){
		func(e *Entry) { e.Revision = "dev" },
		func(e *Entry) { e.RepoID = "acme/llama2" },
		func(e *Entry) { e.AllowPatterns = []string{"*.safetensors", "*.json"} }, // order matters
		func(e *Entry) { e.AllowPatterns = nil; e.IgnorePatterns = []string{"*.json", "*.safetensors"} },
		func(e *Entry) { e.UseVolume = false },
		func(e *Entry) { e.VolumeFolder = "l" },
		func(e *Entry) { e.Kind = KindS3 },
	}
	for i, change := range changes {
		e := base
		change(&e)
		if e.Key() == base.Key() {
			t.Errorf("change %d left the key unchanged: %s", i, e.Key())
		}
	}
}

func TestIsCommit(t *testing.T) {
	cases := map[string]bool{
		"207b116dae70ace3637169f1ddd2434b91b3a8cd": true,
		"207B116DAE70ACE3637169F1DDD2434B91B3A8CD": false,
		"207b116": false,
		"207b116dae70ace3637169f1ddd2434b91b3a8c":   false,
		"207b116dae70ace3637169f1ddd2434b91b3a8cd0": false,
		"g07b116dae70ace3637169f1ddd2434b91b3a8cd":  false,
		"main": false,
		"":     false,
	}
	for rev, want := range cases {
		if IsCommit(rev) != want {
			t.Errorf("IsCommit(%q) = %v", rev, !want)
		}
	}
}

func TestWarnings(t *testing.T) {
	entries, err := Parse([]byte(`- repo_id: acme/llama
  revision: main
  use_volume: false
- repo_id: acme/pinned
  revision: 207b116dae70ace3637169f1ddd2434b91b3a8cd
  use_volume: false
- repo_id: acme/pr
  revision: refs/pr/3
  use_volume: false
- repo_id: acme/default
  use_volume: false
- repo_id: s3://b/p
  revision: v2
  use_volume: false
- repo_id: gs://b/p
  use_volume: false
`), "config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`model_cache[0] (acme/llama) revision "main" is a branch or tag: it is resolved to a commit once at mount and that commit is served; pin a commit sha for reproducible deploys`,
		`model_cache[2] (acme/pr) revision "refs/pr/3" is a pull-request ref: it is resolved to a commit once at mount and that commit is served; pin a commit sha for reproducible deploys`,
		`model_cache[3] (acme/default) has no revision: the default branch (main) is resolved to a commit once at mount and that commit is served; pin a commit sha for reproducible deploys`,
		`model_cache[4] (s3://b/p) revision "v2" is ignored: s3 entries have no revisions; the objects are listed once at mount and that listing is served`,
	}
	if got := Warnings(entries); !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	if got := Warnings(nil); got != nil {
		t.Errorf("Warnings(nil) = %q", got)
	}
}

func TestWants(t *testing.T) {
	e := Entry{AllowPatterns: []string{"unet/"}, IgnorePatterns: []string{"*.bin"}}
	for path, want := range map[string]bool{"unet/a.safetensors": true, "unet/a.bin": false, "vae/a.safetensors": false} {
		if e.Wants(path) != want {
			t.Errorf("Wants(%q) = %v", path, !want)
		}
	}
}
