package integration

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/weightfs/weightfs/integration/hubemu"
	"github.com/weightfs/weightfs/integration/modelgen"
)

// Cached weights of a gated repo are no one else's to read: after a gated
// mount has cached and verified the model, every directory of the cache is
// 0700 and every file 0600, under a umask that would give 0755/0644. Fails
// before this change: cache dirs were 0755 and chunk files 0644.
func TestGatedCacheIsPrivate(t *testing.T) {
	hub := newHub(t, hubemu.Options{Token: "hf_gated_token"})
	dir := t.TempDir()
	if _, err := modelgen.Generate(dir, modelgen.Spec{TotalSize: 4 << 20, Shards: 2, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	hub.AddRepo(hubemu.Repo{ID: "acme/llm", Dir: dir, Commit: commitA, Gated: true})
	cache := t.TempDir()
	if err := os.Chmod(cache, 0o755); err != nil { // as a --cache-dir made by hand would be
		t.Fatal(err)
	}
	addr := freeAddr(t)
	mustMount(t, hub, mountOpts{config: llmConfig, cacheDir: cache,
		env: []string{"TRUSS_SECRET_hf_access_token=hf_gated_token"}, args: []string{"--control-addr", addr}})
	if out, err := runWeightfs(t, nil, "wait", "--control-addr", addr, "--timeout", "60s", "--poll", "200ms"); err != nil {
		t.Fatalf("wait: %v\n%s", err, out)
	}
	files := 0
	err := filepath.WalkDir(cache, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else {
			files++
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 6 {
		t.Fatalf("the cache holds %d files; the test saw nothing to check", files)
	}
}
