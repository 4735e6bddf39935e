package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weightfs/weightfs/chunkcache"
	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/sources"
	"github.com/weightfs/weightfs/integration/hubemu"
)

const commitR = "1111111111111111111111111111111111111111"

// hostileHub serves acme/m (config.json, weights.bin, d/real.txt) with a
// listing that also claims a 2^63-1 byte file and a file "d" beside "d/".
func hostileHub(t *testing.T) *hubemu.Server {
	t.Helper()
	dir := t.TempDir()
	for p, b := range map[string]string{"config.json": `{"a":1}`, "weights.bin": "0123456789", "d/real.txt": "real"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var o hubemu.ListingOverride
	h, err := hubemu.New(hubemu.Options{Wrap: o.Wrap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if err := h.AddRepo(hubemu.Repo{ID: "acme/m", Dir: dir, Commit: commitR}); err != nil {
		t.Fatal(err)
	}
	o.Set("acme/m", hubemu.Listing{
		Sizes: map[string]int64{"weights.bin": math.MaxInt64},
		Extra: []hubemu.ExtraFile{{Path: "d", Size: 0}},
	})
	return h
}

func testEnv(log *slog.Logger, vars map[string]string) sources.Env {
	return sources.Env{Logger: log, Getenv: func(k string) string { return vars[k] },
		Secrets: config.Secrets{Dir: "/nonexistent", Getenv: func(string) string { return "" }}}
}

// Fails before this change: resolveOne served the listing as is, so the
// 2^63-1 byte file reached chunkcache (panic: makeslice) and "d" hid d/real.txt.
func TestResolveOneRefusesImpossibleEntriesListedAndLoaded(t *testing.T) {
	h := hostileHub(t)
	cache, err := chunkcache.Open(chunkcache.Options{Dir: t.TempDir(), MemoryBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	e := config.Entry{RepoID: "acme/m", Revision: "main", Kind: config.KindHF, UseVolume: true, VolumeFolder: "v", SecretName: config.DefaultSecretName}
	for _, fromDisk := range []bool{false, true} {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		r, err := resolveOne(context.Background(), e, testEnv(log, map[string]string{"HF_ENDPOINT": h.URL()}), cache.Manifests(), false)
		if err != nil {
			t.Fatalf("fromDisk=%v: %v", fromDisk, err)
		}
		if r.fromDisk != fromDisk {
			t.Fatalf("fromDisk = %v, want %v", r.fromDisk, fromDisk)
		}
		var got []string
		for _, f := range r.manifest.Files {
			got = append(got, f.Path)
		}
		if strings.Join(got, ",") != "config.json,d/real.txt" {
			t.Errorf("fromDisk=%v: served %v, want config.json and d/real.txt", fromDisk, got)
		}
		out := logs.String()
		for _, want := range []string{
			`level=ERROR msg="refusing a listed file; the entry's other files are served" entry="model_cache[0] (acme/m)" file=weights.bin reason="listed size 9223372036854775807 is impossible`,
			`file=d reason="the listing also has files under it (such as \"d/real.txt\"), so it must be a directory`,
		} {
			if strings.Count(out, want) != 1 {
				t.Errorf("fromDisk=%v: log should hold once:\n%s\ngot:\n%s", fromDisk, want, out)
			}
		}
	}
}

// Fails before this change: the manifest was saved under e.Key() alone, so
// a mirror's listing was served for huggingface.co and the other way round.
func TestManifestKeyNamesNonDefaultEndpoints(t *testing.T) {
	hfE := config.Entry{RepoID: "acme/m", Revision: "main", Kind: config.KindHF}
	s3E := config.Entry{RepoID: "s3://b/p", Kind: config.KindS3}
	gsE := config.Entry{RepoID: "gs://b/p", Kind: config.KindGCS}
	key := func(e config.Entry, vars map[string]string) string {
		return manifestKey(e, testEnv(nil, vars))
	}
	for _, tc := range []struct {
		name string
		e    config.Entry
		vars map[string]string
		want string // "" = exactly e.Key()
	}{
		{"hub default", hfE, nil, ""},
		{"hub default spelled out", hfE, map[string]string{"HF_ENDPOINT": "https://HuggingFace.co/"}, ""},
		{"hub mirror", hfE, map[string]string{"HF_ENDPOINT": "https://hf-mirror.com/"}, "https://hf-mirror.com"},
		{"hub mirror with a path", hfE, map[string]string{"HF_ENDPOINT": "http://Proxy:8080/hf/"}, "http://proxy:8080/hf"},
		{"s3 aws", s3E, map[string]string{"HF_ENDPOINT": "https://hf-mirror.com"}, ""},
		{"s3 endpoint", s3E, map[string]string{"AWS_ENDPOINT_URL": "http://minio:9000"}, "http://minio:9000"},
		{"s3 endpoint s3 first", s3E, map[string]string{"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_S3": "http://b:2"}, "http://b:2"},
		{"gcs emulator bare", gsE, map[string]string{"STORAGE_EMULATOR_HOST": "localhost:4443"}, "http://localhost:4443"},
		{"gcs real", gsE, map[string]string{"AWS_ENDPOINT_URL": "http://minio:9000"}, ""},
	} {
		got := key(tc.e, tc.vars)
		want := tc.e.Key()
		if tc.want != "" {
			want += "\nendpoint=" + tc.want
		}
		if got != want {
			t.Errorf("%s: key %q, want %q", tc.name, got, want)
		}
	}
	if key(hfE, map[string]string{"HF_ENDPOINT": "https://a.example"}) == key(hfE, map[string]string{"HF_ENDPOINT": "https://b.example"}) {
		t.Error("two mirrors share a key")
	}
}

// Fails before this change: the second resolve, against another Hub, loaded
// the first Hub's saved manifest (its commit) instead of listing.
func TestResolveOneDoesNotShareManifestsAcrossHubs(t *testing.T) {
	cache, err := chunkcache.Open(chunkcache.Options{Dir: t.TempDir(), MemoryBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	e := config.Entry{RepoID: "acme/m", Revision: "main", Kind: config.KindHF, UseVolume: true, VolumeFolder: "v", SecretName: config.DefaultSecretName}
	commits := []string{commitR, "2222222222222222222222222222222222222222"}
	for i, commit := range commits {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644)
		h, err := hubemu.New(hubemu.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		h.AddRepo(hubemu.Repo{ID: "acme/m", Dir: dir, Commit: commit})
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		r, err := resolveOne(context.Background(), e, testEnv(quiet, map[string]string{"HF_ENDPOINT": h.URL()}), cache.Manifests(), false)
		if err != nil {
			t.Fatal(err)
		}
		if r.fromDisk || r.manifest.Commit != commit {
			t.Errorf("hub %d: commit %s (from disk %v), want %s listed", i, r.manifest.Commit, r.fromDisk, commit)
		}
	}
}
