package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sdxlTruss is the seed document's SDXL example inside a whole Truss config.
const sdxlTruss = `model_name: sdxl
python_version: py311
requirements:
  - diffusers==0.30.0
secrets:
  hf_access_token: null
resources:
  accelerator: A10G
model_cache:
  - repo_id: madebyollin/sdxl-vae-fp16-fix
    revision: 207b116dae70ace3637169f1ddd2434b91b3a8cd
    use_volume: true
    volume_folder: sdxl-vae-fp16
    allow_patterns:
      - config.json
      - diffusion_pytorch_model.safetensors
  - repo_id: stabilityai/stable-diffusion-xl-base-1.0
    revision: 462165984030d82259a11f4367a4eed129e94a7b
    use_volume: true
    volume_folder: stable-diffusion-xl-base
    allow_patterns:
      - "*.json"
      - "*.fp16.safetensors"
      - sd_xl_base_1.0.safetensors
  - repo_id: stabilityai/stable-diffusion-xl-refiner-1.0
    revision: 5d4cfe854c9a9a87939ff3653551c2b3c99a4356
    use_volume: true
    volume_folder: stable-diffusion-xl-refiner
    allow_patterns:
      - "*.json"
      - "*.fp16.safetensors"
      - sd_xl_refiner_1.0.safetensors
`

// jinaTruss is the seed document's text-embeddings-inference example.
const jinaTruss = `base_image:
  image: baseten/text-embeddings-inference-mirror:89-1.6
docker_server:
  liveness_endpoint: /health
  predict_endpoint: /v1/embeddings
  readiness_endpoint: /health
  server_port: 7997
  start_command: bash -c "truss-transfer-cli && text-embeddings-router --port 7997
    --model-id /app/model_cache/my_jina --max-client-batch-size 128 --max-concurrent-requests
    128 --max-batch-tokens 16384 --auto-truncate"
model_cache:
- repo_id: jinaai/jina-embeddings-v2-base-code
  revision: 516f4baf13dec4ddddda8631e019b5737c8bc250
  use_volume: true
  volume_folder: my_jina
  ignore_patterns: ["*.onnx"]
model_metadata:
  example_model_input:
    encoding_format: float
    input: text string
    model: model
model_name: TEI-jinaai-jina-embeddings-v2-base-code-truss-example
resources:
  accelerator: L4
`

func TestParseValid(t *testing.T) {
	sdxl := []Entry{
		{Index: 0, RepoID: "madebyollin/sdxl-vae-fp16-fix", Revision: "207b116dae70ace3637169f1ddd2434b91b3a8cd",
			UseVolume: true, VolumeFolder: "sdxl-vae-fp16", Kind: KindHF, SecretName: DefaultSecretName,
			AllowPatterns: []string{"config.json", "diffusion_pytorch_model.safetensors"}},
		{Index: 1, RepoID: "stabilityai/stable-diffusion-xl-base-1.0", Revision: "462165984030d82259a11f4367a4eed129e94a7b",
			UseVolume: true, VolumeFolder: "stable-diffusion-xl-base", Kind: KindHF, SecretName: DefaultSecretName,
			AllowPatterns: []string{"*.json", "*.fp16.safetensors", "sd_xl_base_1.0.safetensors"}},
		{Index: 2, RepoID: "stabilityai/stable-diffusion-xl-refiner-1.0", Revision: "5d4cfe854c9a9a87939ff3653551c2b3c99a4356",
			UseVolume: true, VolumeFolder: "stable-diffusion-xl-refiner", Kind: KindHF, SecretName: DefaultSecretName,
			AllowPatterns: []string{"*.json", "*.fp16.safetensors", "sd_xl_refiner_1.0.safetensors"}},
	}
	vae := Entry{Index: 0, RepoID: "madebyollin/sdxl-vae-fp16-fix", Revision: "207b116dae70ace3637169f1ddd2434b91b3a8cd",
		Kind: KindHF, SecretName: DefaultSecretName, AllowPatterns: []string{"config.json", "diffusion_pytorch_model.safetensors"}}
	cases := []struct {
		name string
		yaml string
		want []Entry
	}{
		{"sdxl whole truss config", sdxlTruss, sdxl},
		{"jina flow list", jinaTruss, []Entry{{Index: 0, RepoID: "jinaai/jina-embeddings-v2-base-code",
			Revision: "516f4baf13dec4ddddda8631e019b5737c8bc250", UseVolume: true, VolumeFolder: "my_jina",
			IgnorePatterns: []string{"*.onnx"}, Kind: KindHF, SecretName: DefaultSecretName}}},
		{"model_cache only, hf use_volume false", `model_cache:
  - repo_id: madebyollin/sdxl-vae-fp16-fix
    revision: 207b116dae70ace3637169f1ddd2434b91b3a8cd
    use_volume: false
    allow_patterns:
      - config.json
      - diffusion_pytorch_model.safetensors
`, []Entry{vae}},
		{"list only", `- repo_id: madebyollin/sdxl-vae-fp16-fix
  revision: 207b116dae70ace3637169f1ddd2434b91b3a8cd
  use_volume: false
  allow_patterns: [config.json, diffusion_pytorch_model.safetensors]
`, []Entry{vae}},
		{"gcs without revision", "model_cache:\n  - repo_id: gs://path-to-my-bucket\n    use_volume: false\n",
			[]Entry{{RepoID: "gs://path-to-my-bucket", Kind: KindGCS, SecretName: DefaultSecretName}}},
		{"s3 without revision", "model_cache:\n  - repo_id: s3://path-to-my-bucket\n    use_volume: false\n",
			[]Entry{{RepoID: "s3://path-to-my-bucket", Kind: KindS3, SecretName: DefaultSecretName}}},
		{"s3 volume, kind agrees, secret", `model_cache:
  - repo_id: s3://weights/llama/v1
    kind: s3
    use_volume: true
    volume_folder: llama
    runtime_secret_name: aws_creds
  - repo_id: gs://other/m
    kind: gcs
    use_volume: true
    volume_folder: m
`, []Entry{
			{RepoID: "s3://weights/llama/v1", Kind: KindS3, UseVolume: true, VolumeFolder: "llama", SecretName: "aws_creds"},
			{Index: 1, RepoID: "gs://other/m", Kind: KindGCS, UseVolume: true, VolumeFolder: "m", SecretName: DefaultSecretName}}},
		{"hf branch, pr ref, yaml 1.1 bool, nulls, explicit hf", `- repo_id: acme/llama
  revision: main
  use_volume: yes
  volume_folder: llama
  kind: hf
  allow_patterns: null
  runtime_secret_name: ""
- repo_id: acme/llama
  revision: refs/pr/12
  use_volume: True
  volume_folder: llama-pr
  ignore_patterns: []
`, []Entry{
			{RepoID: "acme/llama", Revision: "main", UseVolume: true, VolumeFolder: "llama", Kind: KindHF, SecretName: DefaultSecretName},
			{Index: 1, RepoID: "acme/llama", Revision: "refs/pr/12", UseVolume: true, VolumeFolder: "llama-pr", Kind: KindHF, SecretName: DefaultSecretName}}},
		{"anchors and merge keys", `defaults: &d
  use_volume: true
  revision: v1.0
model_cache:
  - <<: *d
    repo_id: acme/a
    volume_folder: a
  - <<: *d
    repo_id: acme/b
    revision: dev
    volume_folder: b
`, []Entry{
			{RepoID: "acme/a", Revision: "v1.0", UseVolume: true, VolumeFolder: "a", Kind: KindHF, SecretName: DefaultSecretName},
			{Index: 1, RepoID: "acme/b", Revision: "dev", UseVolume: true, VolumeFolder: "b", Kind: KindHF, SecretName: DefaultSecretName}}},
		{"use_volume false ignores volume_folder", "- repo_id: acme/x\n  use_volume: false\n  volume_folder: x/y\n",
			[]Entry{{RepoID: "acme/x", Kind: KindHF, SecretName: DefaultSecretName}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse([]byte(c.yaml), "config.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	const required = `config.yaml:1: model_cache[0] (acme/llama) key "use_volume": required: true serves the files under <mountpoint>/<volume_folder>; false fills the Hugging Face cache (the legacy path)`
	cases := []struct {
		name string
		yaml string
		want []string // Error() lines
	}{
		{"empty file", "", []string{"config.yaml: the file is empty: expected a Truss config with a model_cache list"}},
		{"comments only", "# nothing\n", []string{"config.yaml: the file is empty: expected a Truss config with a model_cache list"}},
		{"missing key", "model_name: x\n", []string{"config.yaml:1: no model_cache key: add a model_cache list of entries (repo_id, revision, use_volume, volume_folder)"}},
		{"null list", "model_cache:\n", []string{"config.yaml:1: model_cache is empty: list at least one entry"}},
		{"empty list", "model_cache: []\n", []string{"config.yaml:1: model_cache is empty: list at least one entry"}},
		{"mapping not list", "model_cache:\n  repo_id: acme/llama\n", []string{`config.yaml:2: model_cache must be a list of entries, got a mapping: start each entry with "- " (- repo_id: acme/llama)`}},
		{"scalar root", "hello\n", []string{`config.yaml:1: expected a Truss config with a model_cache key, or a model_cache list, got the string "hello"`}},
		{"entry is a string", "- acme/llama\n", []string{`config.yaml:1: model_cache[0]: must be a mapping of keys (repo_id, revision, use_volume, volume_folder, ...), got the string "acme/llama": write - repo_id: acme/llama`}},
		{"missing repo_id", "- use_volume: false\n", []string{`config.yaml:1: model_cache[0] key "repo_id": required: org/name for Hugging Face, s3://bucket/prefix or gs://bucket/prefix`}},
		{"empty repo_id", "- repo_id: ''\n  use_volume: false\n", []string{`config.yaml:1: model_cache[0] key "repo_id": must not be empty: org/name for Hugging Face, s3://bucket/prefix or gs://bucket/prefix`}},
		{"repo_id not a string", "- repo_id: [a]\n  use_volume: false\n", []string{`config.yaml:1: model_cache[0] key "repo_id": must be a string, got a list`}},
		{"repo_id without org", "- repo_id: gpt2\n  use_volume: false\n", []string{`config.yaml:1: model_cache[0] (gpt2) key "repo_id": "gpt2" is not org/name: Hugging Face repo ids need the owner (e.g. openai-community/gpt2); object stores use s3://bucket/prefix or gs://bucket/prefix`}},
		{"repo_id two slashes", "- repo_id: a/b/c\n  use_volume: false\n", []string{`config.yaml:1: model_cache[0] (a/b/c) key "repo_id": "a/b/c" is not org/name: it has more than one '/' (choose files inside a repo with allow_patterns)`}},
		{"repo_id with space", "- repo_id: acme/my llama\n  use_volume: false\n", []string{`config.yaml:1: model_cache[0] (acme/my llama) key "repo_id": "acme/my llama" must not contain spaces`}},
		{"repo_id with revision", "- repo_id: acme/llama@main\n  use_volume: false\n", []string{`config.yaml:1: model_cache[0] (acme/llama@main) key "repo_id": "acme/llama@main" has '@': write the repo id as org/name and put the branch or commit under revision`}},
		{"repo_id empty part", "- repo_id: /llama\n  use_volume: false\n", []string{`config.yaml:1: model_cache[0] (/llama) key "repo_id": "/llama" is not org/name: both parts must be non-empty`}},
		{"repo_id url", "- repo_id: https://huggingface.co/acme/llama/tree/main\n  use_volume: false\n", []string{`config.yaml:1: model_cache[0] (https://huggingface.co/acme/llama/tree/main) key "repo_id": "https://huggingface.co/acme/llama/tree/main" is a URL: write the repo id, acme/llama`}},
		{"s3 without bucket", "- repo_id: s3:///x\n  use_volume: false\n", []string{`config.yaml:1: model_cache[0] (s3:///x) key "repo_id": "s3:///x" has no bucket: write s3://bucket/prefix`}},
		{"gcs scheme", "- repo_id: gcs://b/p\n  use_volume: false\n", []string{`config.yaml:1: model_cache[0] (gcs://b/p) key "repo_id": "gcs://b/p": write gs://b/p for Google Cloud Storage`}},
		{"unknown scheme", "- repo_id: ftp://b/p\n  use_volume: false\n", []string{`config.yaml:1: model_cache[0] (ftp://b/p) key "repo_id": unsupported scheme "ftp://": use org/name for Hugging Face, s3://bucket/prefix or gs://bucket/prefix`}},
		{"revision required", "- repo_id: acme/llama\n  use_volume: true\n  volume_folder: l\n", []string{`config.yaml:1: model_cache[0] (acme/llama) key "revision": required for Hugging Face entries with use_volume: true (use a commit sha, a branch or a tag)`}},
		{"revision one char", "- repo_id: acme/llama\n  revision: a\n  use_volume: false\n", []string{`config.yaml:2: model_cache[0] (acme/llama) key "revision": "a" is 1 character long, which is not a valid revision: use a commit sha, a branch or a tag`}},
		{"revision number", "- repo_id: acme/llama\n  revision: 2.0\n  use_volume: false\n", []string{`config.yaml:2: model_cache[0] (acme/llama) key "revision": must be a string, got the number 2.0: quote it (revision: "2.0")`}},
		{"revision bad ref", "- repo_id: acme/llama\n  revision: main..dev\n  use_volume: false\n", []string{`config.yaml:2: model_cache[0] (acme/llama) key "revision": "main..dev" is not a valid git ref name: use a commit sha, a branch or a tag`}},
		{"revision space", "- repo_id: acme/llama\n  revision: 'my branch'\n  use_volume: false\n", []string{`config.yaml:2: model_cache[0] (acme/llama) key "revision": "my branch" must not contain spaces or control characters: use a commit sha, a branch or a tag`}},
		{"revision bad pr", "- repo_id: acme/llama\n  revision: refs/pr/x\n  use_volume: false\n", []string{`config.yaml:2: model_cache[0] (acme/llama) key "revision": "refs/pr/x": a pull-request ref is refs/pr/<number>, e.g. refs/pr/1`}},
		{"revision upper sha", "- repo_id: acme/llama\n  revision: 207B116DAE70ACE3637169F1DDD2434B91B3A8CD\n  use_volume: false\n", []string{`config.yaml:2: model_cache[0] (acme/llama) key "revision": "207B116DAE70ACE3637169F1DDD2434B91B3A8CD": write the commit sha in lower case`}},
		{"use_volume missing", "- repo_id: acme/llama\n", []string{required}},
		{"use_volume null", "- repo_id: acme/llama\n  use_volume:\n", []string{strings.Replace(required, ":1:", ":2:", 1)}},
		{"use_volume quoted string", "- repo_id: acme/llama\n  use_volume: \"yes\"\n", []string{`config.yaml:2: model_cache[0] (acme/llama) key "use_volume": must be true or false, got the string "yes": write use_volume: true (no quotes)`}},
		{"use_volume number", "- repo_id: acme/llama\n  use_volume: 0\n", []string{`config.yaml:2: model_cache[0] (acme/llama) key "use_volume": must be true or false, got the number 0: write use_volume: false`}},
		{"use_volume word", "- repo_id: acme/llama\n  use_volume: sometimes\n", []string{`config.yaml:2: model_cache[0] (acme/llama) key "use_volume": must be true or false, got the string "sometimes"`}},
		{"volume_folder missing", "- repo_id: acme/llama\n  revision: main\n  use_volume: true\n", []string{`config.yaml:1: model_cache[0] (acme/llama) key "volume_folder": required with use_volume: true: the folder the files appear under (<mountpoint>/<volume_folder>)`}},
		{"volume_folder empty", "- repo_id: acme/llama\n  revision: main\n  use_volume: true\n  volume_folder: ''\n", []string{`config.yaml:4: model_cache[0] (acme/llama) key "volume_folder": must not be empty: the folder the files appear under (<mountpoint>/<volume_folder>)`}},
		{"volume_folder slash", "- repo_id: acme/llama\n  revision: main\n  use_volume: true\n  volume_folder: a/b\n", []string{`config.yaml:4: model_cache[0] (acme/llama) key "volume_folder": "a/b" must be one folder name, without '/' or '\' (it appears as <mountpoint>/<volume_folder>)`}},
		{"volume_folder backslash", "- repo_id: acme/llama\n  revision: main\n  use_volume: true\n  volume_folder: 'a\\b'\n", []string{`config.yaml:4: model_cache[0] (acme/llama) key "volume_folder": "a\\b" must be one folder name, without '/' or '\' (it appears as <mountpoint>/<volume_folder>)`}},
		{"volume_folder dotdot", "- repo_id: acme/llama\n  revision: main\n  use_volume: true\n  volume_folder: ..\n", []string{`config.yaml:4: model_cache[0] (acme/llama) key "volume_folder": ".." is not a folder name: write one name, e.g. my-llama`}},
		{"volume_folder number", "- repo_id: acme/llama\n  revision: main\n  use_volume: true\n  volume_folder: 2024\n", []string{`config.yaml:4: model_cache[0] (acme/llama) key "volume_folder": must be a string, got the number 2024: quote it (volume_folder: "2024")`}},
		{"patterns single string", "- repo_id: acme/llama\n  use_volume: false\n  allow_patterns: \"*.json\"\n", []string{`config.yaml:3: model_cache[0] (acme/llama) key "allow_patterns": must be a list of strings, not a single string: write allow_patterns: ["*.json"]`}},
		{"patterns mapping", "- repo_id: acme/llama\n  use_volume: false\n  ignore_patterns: {a: b}\n", []string{`config.yaml:3: model_cache[0] (acme/llama) key "ignore_patterns": must be a list of strings, got a mapping`}},
		{"pattern item not string", "- repo_id: acme/llama\n  use_volume: false\n  allow_patterns: [a, 1, [b]]\n", []string{
			`config.yaml:3: model_cache[0] (acme/llama) key "allow_patterns[1]": must be a string, got the number 1: quote it ("1")`,
			`config.yaml:3: model_cache[0] (acme/llama) key "allow_patterns[2]": must be a string, got a list`}},
		{"kind unknown", "- repo_id: acme/llama\n  use_volume: false\n  kind: huggingface\n", []string{`config.yaml:3: model_cache[0] (acme/llama) key "kind": must be one of hf, gcs, s3, azure, got "huggingface": did you mean hf?`}},
		{"kind azure", "- repo_id: acme/llama\n  use_volume: false\n  kind: azure\n", []string{`config.yaml:3: model_cache[0] (acme/llama) key "kind": azure is not supported by weightfs yet`}},
		{"azure scheme", "- repo_id: azure://acct/c/p\n  use_volume: false\n", []string{`config.yaml:1: model_cache[0] (azure://acct/c/p) key "repo_id": azure is not supported by weightfs yet`}},
		{"kind hf with s3 scheme", "- repo_id: s3://b/p\n  kind: hf\n  use_volume: false\n", []string{`config.yaml:2: model_cache[0] (s3://b/p) key "kind": hf does not match repo_id "s3://b/p": use kind: s3, or drop kind (it is inferred from s3://)`}},
		{"kind gcs with s3 scheme", "- repo_id: s3://b/p\n  kind: gcs\n  use_volume: false\n", []string{`config.yaml:2: model_cache[0] (s3://b/p) key "kind": gcs does not match repo_id "s3://b/p": use kind: s3, or drop kind (it is inferred from s3://)`}},
		{"kind s3 with hf repo", "- repo_id: acme/llama\n  kind: s3\n  use_volume: false\n", []string{`config.yaml:2: model_cache[0] (acme/llama) key "kind": s3 needs repo_id s3://bucket/prefix, got "acme/llama"`}},
		{"kind gcs with hf repo", "- repo_id: acme/llama\n  kind: gcs\n  use_volume: false\n", []string{`config.yaml:2: model_cache[0] (acme/llama) key "kind": gcs needs repo_id gs://bucket/prefix, got "acme/llama"`}},
		{"secret name path", "- repo_id: acme/llama\n  use_volume: false\n  runtime_secret_name: ../etc/passwd\n", []string{`config.yaml:3: model_cache[0] (acme/llama) key "runtime_secret_name": "../etc/passwd" must be a secret name (a file in the secrets folder), not a path`}},
		{"typo key", "- repo_id: acme/llama\n  use_volume: false\n  allow_pattern: [\"*.json\"]\n", []string{`config.yaml:3: model_cache[0] (acme/llama) key "allow_pattern": unknown key: did you mean allow_patterns?`}},
		{"typo key dash", "- repo_id: acme/llama\n  use-volume: false\n", []string{
			required,
			`config.yaml:2: model_cache[0] (acme/llama) key "use-volume": unknown key: did you mean use_volume?`}},
		{"alias key", "- repo_id: acme/llama\n  use_volume: false\n  branch: main\n", []string{`config.yaml:3: model_cache[0] (acme/llama) key "branch": unknown key: did you mean revision?`}},
		{"far key", "- repo_id: acme/llama\n  use_volume: false\n  zzzzzz: 1\n", []string{`config.yaml:3: model_cache[0] (acme/llama) key "zzzzzz": unknown key (known keys: repo_id, revision, use_volume, volume_folder, allow_patterns, ignore_patterns, kind, runtime_secret_name)`}},
		{"duplicate key", "- repo_id: acme/llama\n  use_volume: false\n  use_volume: true\n", []string{`config.yaml:3: model_cache[0] (acme/llama) key "use_volume": appears twice in this entry (first at line 2)`}},
		{"mixed use_volume", `- repo_id: acme/a
  revision: main
  use_volume: true
  volume_folder: a
- repo_id: acme/b
  use_volume: false
- repo_id: s3://b/c
  use_volume: false
`, []string{
			`config.yaml:6: model_cache[1] (acme/b) key "use_volume": is false but model_cache[0] (acme/a) has use_volume: true: all entries must share one use_volume value`,
			`config.yaml:8: model_cache[2] (s3://b/c) key "use_volume": is false but model_cache[0] (acme/a) has use_volume: true: all entries must share one use_volume value`}},
		{"duplicate volume_folder", `- repo_id: acme/a
  revision: main
  use_volume: true
  volume_folder: weights
- repo_id: gs://b/c
  use_volume: true
  volume_folder: weights
`, []string{`config.yaml:7: model_cache[1] (gs://b/c) key "volume_folder": "weights" is also used by model_cache[0] (acme/a): each entry needs its own folder`}},
		{"many problems at once", `model_name: x
model_cache:
  - repo_id: acme/llama
    use_volume: true
    volume_folder: llama
  - repo_id: acme/llama
    revision: main
    use_volume: "yes"
    volume_folder: a/b
    allow_pattern: ["*.json"]
    ignore_patterns: "*.onnx"
  - repo_id: gpt2
    use_volume: false
    kind: gs
`, []string{
			`config.yaml:3: model_cache[0] (acme/llama) key "revision": required for Hugging Face entries with use_volume: true (use a commit sha, a branch or a tag)`,
			`config.yaml:8: model_cache[1] (acme/llama) key "use_volume": must be true or false, got the string "yes": write use_volume: true (no quotes)`,
			`config.yaml:9: model_cache[1] (acme/llama) key "volume_folder": "a/b" must be one folder name, without '/' or '\' (it appears as <mountpoint>/<volume_folder>)`,
			`config.yaml:10: model_cache[1] (acme/llama) key "allow_pattern": unknown key: did you mean allow_patterns?`,
			`config.yaml:11: model_cache[1] (acme/llama) key "ignore_patterns": must be a list of strings, not a single string: write ignore_patterns: ["*.onnx"]`,
			`config.yaml:12: model_cache[2] (gpt2) key "repo_id": "gpt2" is not org/name: Hugging Face repo ids need the owner (e.g. openai-community/gpt2); object stores use s3://bucket/prefix or gs://bucket/prefix`,
			`config.yaml:13: model_cache[2] (gpt2) key "use_volume": is false but model_cache[0] (acme/llama) has use_volume: true: all entries must share one use_volume value`,
			`config.yaml:14: model_cache[2] (gpt2) key "kind": must be one of hf, gcs, s3, azure, got "gs": did you mean gcs?`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse([]byte(c.yaml), "config.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", got)
			}
			if got != nil {
				t.Errorf("entries returned with an error: %+v", got)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError: %v", err, err)
			}
			if lines := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(lines, c.want) {
				t.Errorf("got\n%s\nwant\n%s", err, strings.Join(c.want, "\n"))
			}
			if len(ve.Problems) != len(c.want) {
				t.Errorf("%d problems, want %d", len(ve.Problems), len(c.want))
			}
			for _, p := range ve.Problems {
				if p.Index >= 0 && (p.Key == "" && !strings.Contains(p.Msg, "mapping")) {
					t.Errorf("entry problem names no key: %+v", p)
				}
			}
		})
	}
}

func TestProblemFields(t *testing.T) {
	_, err := Parse([]byte("- repo_id: acme/llama\n  revision: main\n  use_volume: true\n  volume_folder: a/b\n"), "c.yaml")
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	want := []Problem{{Index: 0, RepoID: "acme/llama", Key: "volume_folder", Line: 4,
		Msg: `"a/b" must be one folder name, without '/' or '\' (it appears as <mountpoint>/<volume_folder>)`}}
	if !reflect.DeepEqual(ve.Problems, want) || ve.Source != "c.yaml" {
		t.Errorf("got %+v (source %q), want %+v", ve.Problems, ve.Source, want)
	}
}

func TestParseNotYAML(t *testing.T) {
	_, err := Parse([]byte("model_cache:\n- repo_id: a/b\n  allow_patterns:\n  - *.json\n"), "config.yaml")
	var ve *ValidationError
	if err == nil || errors.As(err, &ve) {
		t.Fatalf("want a plain YAML error, got %v", err)
	}
	want := `config.yaml: yaml: line 4: did not find expected alphabetic or numeric character (a value starting with '*' must be quoted, e.g. "*.json")`
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(jinaTruss), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil || len(got) != 1 || got[0].VolumeFolder != "my_jina" {
		t.Fatalf("Load = %+v, %v", got, err)
	}
	if err := os.WriteFile(path, []byte("- repo_id: gpt2\n  use_volume: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.HasPrefix(err.Error(), path+`:1: model_cache[0] (gpt2) key "repo_id"`) {
		t.Errorf("Load error does not name the path: %v", err)
	}
	missing := filepath.Join(dir, "nope.yaml")
	if _, err := Load(missing); err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v", err)
	}
}
