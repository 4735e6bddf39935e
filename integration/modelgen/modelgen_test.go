package modelgen

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// checkWeights parses every weight file from disk and checks it against the
// Model: header equal, file size = header + data, tensors in writer order.
func checkWeights(t *testing.T, m *Model) {
	t.Helper()
	for _, rel := range m.Safetensors {
		f, err := os.Open(filepath.Join(m.Dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		h, err := ParseHeader(f) // also proves no holes and no overlaps
		st, _ := f.Stat()
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if !reflect.DeepEqual(h, m.Headers[rel]) {
			t.Fatalf("%s: parsed header differs from the Model's", rel)
		}
		if st.Size() != h.DataStart+h.DataLen() {
			t.Fatalf("%s: %d bytes, header says %d", rel, st.Size(), h.DataStart+h.DataLen())
		}
		order := h.Order()
		sorted := append([]string(nil), order...)
		sort.SliceStable(sorted, func(i, j int) bool {
			a, b := h.Tensors[sorted[i]], h.Tensors[sorted[j]]
			sa, _ := DTypeSize(a.DType)
			sb, _ := DTypeSize(b.DType)
			if sa != sb {
				return sa > sb
			}
			return sorted[i] < sorted[j]
		})
		if !reflect.DeepEqual(order, sorted) {
			t.Fatalf("%s: file order is not alignment-then-name order", rel)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestGenerateLLM(t *testing.T) {
	tests := []struct {
		spec   Spec
		shards int
		dtype  string
		tol    float64 // relative distance of weight bytes to TotalSize
	}{
		{Spec{TotalSize: 64 << 10, Seed: 1}, 1, "F16", 1.0}, // too small for one real layer: best effort
		{Spec{TotalSize: 1 << 20, Shards: 1, Seed: 3}, 1, "F16", 0.01},
		{Spec{TotalSize: 8 << 20, Shards: 3, DType: "BF16", Seed: 4}, 3, "BF16", 0.01},
		{Spec{TotalSize: 24 << 20, Shards: 4, DType: "F32", Seed: 5}, 4, "F32", 0.01},
		{Spec{TotalSize: 4 << 20, Shards: 5000, Seed: 6}, 5000, "F16", 0.01}, // clamped to the tensor count
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d-%d-%s", tc.spec.TotalSize, tc.spec.Shards, tc.dtype), func(t *testing.T) {
			dir := t.TempDir()
			m, err := Generate(dir, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			checkWeights(t, m)
			if d := math.Abs(float64(m.WeightBytes-tc.spec.TotalSize)) / float64(tc.spec.TotalSize); d > tc.tol {
				t.Fatalf("weights %d bytes, target %d (off by %.2f%%)", m.WeightBytes, tc.spec.TotalSize, d*100)
			}

			var cfg struct {
				Hidden, Inter, Layers, Heads, KV, Vocab int64
				DType                                   string `json:"torch_dtype"`
				Arch                                    []string
			}
			raw := map[string]any{}
			readJSON(t, filepath.Join(dir, "config.json"), &raw)
			for k, p := range map[string]*int64{"hidden_size": &cfg.Hidden, "intermediate_size": &cfg.Inter,
				"num_hidden_layers": &cfg.Layers, "num_attention_heads": &cfg.Heads,
				"num_key_value_heads": &cfg.KV, "vocab_size": &cfg.Vocab} {
				*p = int64(raw[k].(float64))
			}
			if raw["model_type"] != "llama" || raw["torch_dtype"] != torchDTypes[tc.dtype] {
				t.Fatalf("config %v", raw)
			}
			if cfg.Heads*64 != cfg.Hidden || cfg.Heads%cfg.KV != 0 {
				t.Fatalf("heads %d kv %d hidden %d", cfg.Heads, cfg.KV, cfg.Hidden)
			}
			for _, f := range []string{"generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} {
				readJSON(t, filepath.Join(dir, f), &map[string]any{})
			}

			// Every expected tensor, with shapes matching config.json.
			all := map[string]TensorInfo{}
			where := map[string]string{}
			for rel, h := range m.Headers {
				for n, ti := range h.Tensors {
					if ti.DType != tc.dtype {
						t.Fatalf("%s: dtype %s", n, ti.DType)
					}
					all[n], where[n] = ti, rel
				}
			}
			want := map[string][]int64{
				"model.embed_tokens.weight": {cfg.Vocab, cfg.Hidden},
				"lm_head.weight":            {cfg.Vocab, cfg.Hidden},
				"model.norm.weight":         {cfg.Hidden},
			}
			for i := int64(0); i < cfg.Layers; i++ {
				p := fmt.Sprintf("model.layers.%d.", i)
				want[p+"self_attn.q_proj.weight"] = []int64{cfg.Hidden, cfg.Hidden}
				want[p+"self_attn.k_proj.weight"] = []int64{cfg.KV * 64, cfg.Hidden}
				want[p+"self_attn.v_proj.weight"] = []int64{cfg.KV * 64, cfg.Hidden}
				want[p+"self_attn.o_proj.weight"] = []int64{cfg.Hidden, cfg.Hidden}
				want[p+"mlp.gate_proj.weight"] = []int64{cfg.Inter, cfg.Hidden}
				want[p+"mlp.up_proj.weight"] = []int64{cfg.Inter, cfg.Hidden}
				want[p+"mlp.down_proj.weight"] = []int64{cfg.Hidden, cfg.Inter}
				want[p+"input_layernorm.weight"] = []int64{cfg.Hidden}
				want[p+"post_attention_layernorm.weight"] = []int64{cfg.Hidden}
			}
			if len(all) != len(want) {
				t.Fatalf("%d tensors, want %d", len(all), len(want))
			}
			for n, shape := range want {
				if !reflect.DeepEqual(all[n].Shape, shape) {
					t.Fatalf("%s: shape %v, want %v", n, all[n].Shape, shape)
				}
			}

			wantShards := min(tc.shards, len(want))
			if wantShards == 1 {
				if !reflect.DeepEqual(m.Safetensors, []string{"model.safetensors"}) || m.WeightMap != nil {
					t.Fatalf("files %v: want model.safetensors and no index", m.Files)
				}
				if _, err := os.Stat(filepath.Join(dir, "model.safetensors.index.json")); err == nil {
					t.Fatal("index written for a single file")
				}
				return
			}
			if len(m.Safetensors) != wantShards {
				t.Fatalf("%d shards, want %d", len(m.Safetensors), wantShards)
			}
			for i, rel := range m.Safetensors {
				if w := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, wantShards); rel != w {
					t.Fatalf("shard %d named %s, want %s", i, rel, w)
				}
			}
			var index struct {
				Metadata struct {
					TotalSize int64 `json:"total_size"`
				} `json:"metadata"`
				WeightMap map[string]string `json:"weight_map"`
			}
			readJSON(t, filepath.Join(dir, "model.safetensors.index.json"), &index)
			if index.Metadata.TotalSize != m.WeightBytes || !reflect.DeepEqual(index.WeightMap, where) {
				t.Fatalf("index total %d (want %d) or weight_map inconsistent with the shard headers", index.Metadata.TotalSize, m.WeightBytes)
			}
			// Natural layer order across shards: layer i never sits in a
			// later shard than layer i+1.
			shardOf := func(n string) string { return where[n] }
			prev := shardOf("model.embed_tokens.weight")
			for i := int64(0); i < cfg.Layers; i++ {
				s := shardOf(fmt.Sprintf("model.layers.%d.mlp.down_proj.weight", i))
				if s < prev {
					t.Fatalf("layer %d in %s after %s", i, s, prev)
				}
				prev = s
			}
			if shardOf("lm_head.weight") != m.Safetensors[len(m.Safetensors)-1] {
				t.Fatal("lm_head is not in the last shard")
			}
		})
	}
}

func TestGenerateDiffusers(t *testing.T) {
	dir := t.TempDir()
	const total = 12 << 20
	m, err := Generate(dir, Spec{TotalSize: total, Layout: "diffusers", Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	checkWeights(t, m)
	want := []string{
		"model_index.json", "scheduler/scheduler_config.json",
		"text_encoder/config.json", "text_encoder/model.fp16.safetensors",
		"tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
		"unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
		"vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors",
	}
	if !reflect.DeepEqual(m.Files, want) {
		t.Fatalf("files\n got %v\nwant %v", m.Files, want)
	}
	if d := math.Abs(float64(m.WeightBytes-total)) / total; d > 0.01 {
		t.Fatalf("weights %d bytes, target %d", m.WeightBytes, total)
	}
	for _, f := range want {
		if strings.HasSuffix(f, ".json") {
			readJSON(t, filepath.Join(dir, f), new(any))
		}
	}
	var te map[string]any
	readJSON(t, filepath.Join(dir, "text_encoder/config.json"), &te)
	emb := m.Headers["text_encoder/model.fp16.safetensors"].Tensors["text_model.embeddings.token_embedding.weight"]
	if int64(te["vocab_size"].(float64)) != emb.Shape[0] || int64(te["hidden_size"].(float64)) != emb.Shape[1] {
		t.Fatalf("text encoder config %v disagrees with token_embedding %v", te, emb.Shape)
	}
	var unet map[string]any
	readJSON(t, filepath.Join(dir, "unet/config.json"), &unet)
	convIn := m.Headers["unet/diffusion_pytorch_model.fp16.safetensors"].Tensors["conv_in.weight"]
	if int64(unet["block_out_channels"].([]any)[0].(float64)) != convIn.Shape[0] {
		t.Fatalf("unet block_out_channels %v disagrees with conv_in %v", unet["block_out_channels"], convIn.Shape)
	}
}

func TestGenerateRejects(t *testing.T) {
	for _, spec := range []Spec{{DType: "F8"}, {Layout: "gguf"}} {
		if _, err := Generate(t.TempDir(), spec); err == nil {
			t.Errorf("%+v: want an error", spec)
		}
	}
}
