package manifests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weightfs/weightfs/fetch"
)

// The manifest store opens alone (ls and fetch need no chunk store), keeps
// one manifest per key, and treats an unusable file as absent so the caller
// lists again.
func TestSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 || entries[0].Name() != "manifests" {
		t.Fatalf("Open made %v, want only manifests/", entries)
	}
	if m, err := s.Load("hf:acme/m@main"); m != nil || err != nil {
		t.Fatalf("Load of nothing saved = %v, %v; want nil, nil", m, err)
	}
	want := &fetch.Manifest{RepoID: "acme/m", Files: []fetch.File{{Path: "w.safetensors", Size: 42}}}
	if err := s.Save("hf:acme/m@main", want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load("hf:acme/m@main")
	if err != nil || got == nil || got.RepoID != "acme/m" || len(got.Files) != 1 || got.Files[0].Size != 42 {
		t.Fatalf("Load = %+v, %v", got, err)
	}
	if m, _ := s.Load("hf:acme/other@main"); m != nil {
		t.Fatal("another key loaded a manifest")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "manifests", "*.json"))
	if len(files) != 1 {
		t.Fatalf("manifest files %v, want one", files)
	}
	if st, _ := os.Stat(files[0]); st.Mode().Perm() != 0o600 {
		t.Errorf("manifest mode %v, want 0600", st.Mode().Perm())
	}
	for _, bad := range []string{"{not json", `{"key":"hf:acme/m@main"}`, `{"key":"edited","manifest":{}}`} {
		os.WriteFile(files[0], []byte(bad), 0o600)
		if m, err := s.Load("hf:acme/m@main"); m != nil || err != nil {
			t.Errorf("unusable file %q: Load = %v, %v; want nil, nil", bad, m, err)
		}
	}
}

func TestOpenNamesTheDir(t *testing.T) {
	if _, err := Open(""); err == nil || !strings.Contains(err.Error(), "--cache-dir") {
		t.Fatalf("Open(\"\") = %v, want to be told to pass --cache-dir", err)
	}
}
