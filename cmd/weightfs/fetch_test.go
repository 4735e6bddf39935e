package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/eager"
)

type nopSource struct{}

func (nopSource) List(context.Context) (*fetch.Manifest, error) { return nil, nil }
func (nopSource) ReadRange(context.Context, fetch.File, int64, []byte) error {
	return nil
}

const (
	commitX = "0123456789abcdef0123456789abcdef01234567"
	shaA    = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	gitB    = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func resolvedOf(e config.Entry, files ...fetch.File) *resolved {
	return &resolved{entry: e, src: nopSource{}, manifest: &fetch.Manifest{RepoID: e.RepoID, Commit: commitX, Files: files}}
}

func TestFetchLayoutPlacesEachKind(t *testing.T) {
	lfs := fetch.File{Path: "unet/model.safetensors", Size: 10, Checksum: fetch.Checksum{Algo: fetch.AlgoSHA256, Value: shaA}}
	small := fetch.File{Path: "config.json", Size: 2, Checksum: fetch.Checksum{Algo: fetch.AlgoGitSHA1, Value: gitB}}
	same := fetch.File{Path: "text_encoder/config.json", Size: 2, Checksum: small.Checksum} // same bytes, one blob
	l := &layout{dest: "/app/model_cache", hfCache: "/hf", multi: true, ledgers: map[string]*eager.Ledger{}}
	ts, err := l.targets([]*resolved{
		resolvedOf(config.Entry{RepoID: "acme/sd", Kind: config.KindHF}, lfs, small, same),
		resolvedOf(config.Entry{RepoID: "s3://bucket/models/x", Kind: config.KindS3}, small),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, tg := range ts {
		got[tg.Label] = tg.Path
	}
	want := map[string]string{
		"acme/sd/unet/model.safetensors": "/hf/models--acme--sd/blobs/" + shaA,
		"acme/sd/config.json":            "/hf/models--acme--sd/blobs/" + gitB,
		"bucket/config.json":             "/app/model_cache/bucket/config.json",
	}
	if len(got) != len(want) {
		t.Fatalf("targets %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != filepath.FromSlash(v) {
			t.Errorf("%s -> %s, want %s", k, got[k], v)
		}
	}

	l = &layout{dest: "/d", hfCache: "/hf", ledgers: map[string]*eager.Ledger{}}
	ts, err = l.targets([]*resolved{resolvedOf(config.Entry{RepoID: "acme/llm", Kind: config.KindHF, UseVolume: true, VolumeFolder: "llm"}, lfs)})
	if err != nil || len(ts) != 1 || ts[0].Path != "/d/llm/unet/model.safetensors" || ts[0].Label != "unet/model.safetensors" {
		t.Fatalf("volume target %+v, %v", ts, err)
	}
}

func TestFetchLayoutRejectsConflictsAndEscapes(t *testing.T) {
	a := fetch.File{Path: "config.json", Size: 2, Checksum: fetch.Checksum{Algo: fetch.AlgoMD5, Value: "1"}}
	b := fetch.File{Path: "config.json", Size: 3, Checksum: fetch.Checksum{Algo: fetch.AlgoMD5, Value: "2"}}
	l := &layout{dest: "/d", ledgers: map[string]*eager.Ledger{}}
	_, err := l.targets([]*resolved{
		resolvedOf(config.Entry{RepoID: "s3://bucket/a", Kind: config.KindS3}, a),
		resolvedOf(config.Entry{RepoID: "s3://bucket/b", Kind: config.KindS3}, b),
	})
	if err == nil || !strings.Contains(err.Error(), "different content") {
		t.Fatalf("want a conflict, got %v", err)
	}
	_, err = l.targets([]*resolved{resolvedOf(config.Entry{RepoID: "s3://bucket/a", Kind: config.KindS3},
		fetch.File{Path: "../etc/passwd", Size: 1})})
	if err == nil {
		t.Fatal("a path with .. was accepted")
	}
}
