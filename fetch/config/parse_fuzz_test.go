package config

import (
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// A config is the user's, yet it arrives from wherever Truss got it; what
// Parse accepts is what every other package relies on without checking
// again: one of three kinds, a folder that is one clean name, one
// use_volume value, valid revisions and secret names. An accepted config,
// written back out, must parse to the same entries.
//
// The seeds in testdata/fuzz/FuzzParseConfig fail before this change:
// merge keys (<<) that name their own mapping recursed without end (a
// stack overflow kills the process), and ten anchors each merging the one
// above ten times took 10^10 steps.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"model_cache:\n  - repo_id: acme/llama\n    revision: main\n    use_volume: true\n    volume_folder: llama\n    allow_patterns: [\"*.json\", \"*.safetensors\"]\n",
		"- repo_id: s3://bucket/models/llama/\n  use_volume: true\n  volume_folder: s3\n  kind: s3\n  runtime_secret_name: aws\n",
		"- repo_id: gs://bucket\n  use_volume: false\n  ignore_patterns: [\"*.bin\"]\n",
		"- repo_id: acme/llama\n  use_volume: yes\n  volume_folder: ..\n  revision: ../x\n",
		"- repo_id: acme/llama\n  use_volume: true\n  volume_folder: \"a\\x00b\"\n  revision: \"a\\nb\"\n",
		"- repo_id: \"acme/ll\\x1b[2Jama\"\n  use_volume: true\n  volume_folder: \"new\\nline\"\n",
		"- repo_id: acme/a\n  use_volume: true\n  volume_folder: a\n  revision: main\n- repo_id: acme/b\n  use_volume: true\n  volume_folder: a\n  revision: main\n",
		"- repo_id: acme/a\n  use_volume: true\n  volume_folder: a\n  revision: main\n- repo_id: acme/b\n  use_volume: false\n",
		"base: &b {repo_id: acme/a, use_volume: true, revision: main}\nmodel_cache:\n  - <<: *b\n    volume_folder: x\n",
		"a: &a [*a]\n", "a: &a {<<: *a}\n",
		"a: &a [x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nmodel_cache: [*c, *c, *c]\n",
		"model_cache: []\n", "model_cache:\n", "- acme/llama\n", "{", "\x00", "",
		"- repo_id: acme/llama\n  use_volume: true\n  volume_folder: v\n  revision: main\n  allow_patterns: [\"[\", \"a/\", \"[!]\", \"[z-a]\"]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const source = "config.yaml"
		entries, err := Parse(data, source)
		if err != nil {
			if entries != nil {
				t.Fatalf("both entries and an error: %v", err)
			}
			checkParseError(t, source, err)
			return
		}
		checkEntries(t, entries)
		again, err := Parse(data, source)
		if err != nil || !reflect.DeepEqual(again, entries) {
			t.Fatalf("Parse is not deterministic: %+v then %+v, %v", entries, again, err)
		}
		out, err := yaml.Marshal(map[string]any{"model_cache": written(entries)})
		if err != nil {
			t.Fatalf("writing the entries back: %v", err)
		}
		back, err := Parse(out, "written")
		if err != nil || !reflect.DeepEqual(back, entries) {
			t.Fatalf("entries %+v written as\n%s\nparse to %+v, %v", entries, out, back, err)
		}
	})
}

func checkParseError(t *testing.T, source string, err error) {
	ve, ok := err.(*ValidationError)
	if !ok {
		if !strings.HasPrefix(err.Error(), source+": ") {
			t.Fatalf("error does not start with the source: %v", err)
		}
		return
	}
	if len(ve.Problems) == 0 {
		t.Fatal("a ValidationError without problems")
	}
	for i, p := range ve.Problems {
		if p.Msg == "" {
			t.Fatalf("problem %d has no message: %+v", i, p)
		}
		if i > 0 && ve.Problems[i-1].Index > p.Index {
			t.Fatalf("problems out of order: %+v then %+v", ve.Problems[i-1], p)
		}
	}
	if n := strings.Count(ve.Error(), "\n"+source); n < len(ve.Problems)-1 {
		t.Fatalf("%d problems but %d lines naming the source:\n%s", len(ve.Problems), n+1, ve.Error())
	}
}

func checkEntries(t *testing.T, entries []Entry) {
	if len(entries) == 0 {
		t.Fatal("no entries and no error")
	}
	folders := map[string]bool{}
	for i, e := range entries {
		switch {
		case e.Index != i:
			t.Fatalf("entry %d has Index %d", i, e.Index)
		case e.Kind != KindHF && e.Kind != KindS3 && e.Kind != KindGCS:
			t.Fatalf("entry %d: kind %q", i, e.Kind)
		case e.UseVolume != entries[0].UseVolume:
			t.Fatalf("entry %d: use_volume %t, entry 0 has %t", i, e.UseVolume, entries[0].UseVolume)
		case e.UseVolume && (checkFolder(e.VolumeFolder) != "" || folders[e.VolumeFolder]):
			t.Fatalf("entry %d: volume_folder %q (repeated: %t)", i, e.VolumeFolder, folders[e.VolumeFolder])
		case !e.UseVolume && e.VolumeFolder != "":
			t.Fatalf("entry %d: volume_folder %q without use_volume", i, e.VolumeFolder)
		case e.Revision != "" && checkRevision(e.Revision) != "":
			t.Fatalf("entry %d: revision %q", i, e.Revision)
		case e.Kind == KindHF && e.UseVolume && e.Revision == "":
			t.Fatalf("entry %d: Hugging Face with use_volume and no revision", i)
		case checkSecretName(e.SecretName) != "":
			t.Fatalf("entry %d: runtime_secret_name %q", i, e.SecretName)
		}
		if kind, msg := checkRepoID(e.RepoID); msg != "" || (kind != "" && kind != e.Kind) {
			t.Fatalf("entry %d: repo_id %q (%s, kind %q for %q)", i, e.RepoID, msg, kind, e.Kind)
		}
		if (e.Kind != KindHF) != (e.Bucket() != "") {
			t.Fatalf("entry %d: kind %q, bucket %q", i, e.Kind, e.Bucket())
		}
		folders[e.VolumeFolder] = true
		for _, p := range append(append([]string(nil), e.AllowPatterns...), e.IgnorePatterns...) {
			Match("a/b.safetensors", []string{p}, nil) // must not panic
		}
	}
}

// written is entries as a user would write them, every key spelled out.
func written(entries []Entry) []map[string]any {
	var out []map[string]any
	for _, e := range entries {
		m := map[string]any{"repo_id": e.RepoID, "use_volume": e.UseVolume, "kind": e.Kind,
			"runtime_secret_name": e.SecretName}
		if e.Revision != "" {
			m["revision"] = e.Revision
		}
		if e.UseVolume {
			m["volume_folder"] = e.VolumeFolder
		}
		if e.AllowPatterns != nil {
			m["allow_patterns"] = e.AllowPatterns
		}
		if e.IgnorePatterns != nil {
			m["ignore_patterns"] = e.IgnorePatterns
		}
		out = append(out, m)
	}
	return out
}
