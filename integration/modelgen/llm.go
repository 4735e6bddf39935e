package modelgen

import (
	"encoding/json"
	"fmt"
	"path/filepath"
)

// llamaDims are the shape parameters of a generated llama-like model.
type llamaDims struct {
	Hidden, Intermediate, Layers, Heads, KVHeads, Vocab int64
}

const headDim = 64

func dimsFor(hidden int64) llamaDims {
	d := llamaDims{Hidden: hidden, Heads: hidden / headDim}
	d.KVHeads = d.Heads
	if d.Heads%4 == 0 {
		d.KVHeads = d.Heads / 4 // grouped-query attention, as in Llama 2/3
	}
	mult := min(int64(256), hidden)
	d.Intermediate = (hidden*8/3 + mult - 1) / mult * mult // 4096 -> 11008, as Llama
	return d
}

func (d llamaDims) perLayer() int64 {
	h, kvd := d.Hidden, d.KVHeads*headDim
	return 2*h*h + 2*kvd*h + 3*d.Intermediate*h + 2*h
}

// llamaSize picks dims whose parameter count approaches elems: the widest
// hidden size that still gets at least hidden/128 layers (Llama-7B: 4096 and
// 32), embeddings taking about a quarter at most, and the vocabulary then
// absorbing what the whole layers leave over.
func llamaSize(elems int64) llamaDims {
	best := llamaDims{}
	for _, h := range []int64{64, 128, 256, 512, 768, 1024, 1536, 2048, 2560, 3072, 4096, 5120, 6144, 8192} {
		d := dimsFor(h)
		d.Vocab = min(32000, elems/4/(2*h)/64*64)
		if d.Vocab < 256 && h > 64 {
			continue
		}
		d.Layers = (elems - 2*d.Vocab*h - h) / d.perLayer()
		if d.Layers < max(2, h/128) {
			continue
		}
		best = d
	}
	if best.Hidden == 0 { // tiny target: one narrow layer
		best = dimsFor(64)
		best.Layers = 1
		best.Vocab = 0
	}
	rem := elems - 2*best.Vocab*best.Hidden - best.Hidden - best.Layers*best.perLayer()
	best.Vocab = max(64, best.Vocab+rem/(2*best.Hidden))
	return best
}

// llamaTensors lists tensors in natural (loading) order: embeddings, layer 0,
// layer 1, ..., final norm, lm_head.
func llamaTensors(d llamaDims, dtype string) []tensorSpec {
	h, kvd, in := d.Hidden, d.KVHeads*headDim, d.Intermediate
	ts := []tensorSpec{{"model.embed_tokens.weight", dtype, []int64{d.Vocab, h}}}
	for i := int64(0); i < d.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		ts = append(ts,
			tensorSpec{p + "input_layernorm.weight", dtype, []int64{h}},
			tensorSpec{p + "self_attn.q_proj.weight", dtype, []int64{h, h}},
			tensorSpec{p + "self_attn.k_proj.weight", dtype, []int64{kvd, h}},
			tensorSpec{p + "self_attn.v_proj.weight", dtype, []int64{kvd, h}},
			tensorSpec{p + "self_attn.o_proj.weight", dtype, []int64{h, h}},
			tensorSpec{p + "post_attention_layernorm.weight", dtype, []int64{h}},
			tensorSpec{p + "mlp.gate_proj.weight", dtype, []int64{in, h}},
			tensorSpec{p + "mlp.up_proj.weight", dtype, []int64{in, h}},
			tensorSpec{p + "mlp.down_proj.weight", dtype, []int64{h, in}},
		)
	}
	return append(ts,
		tensorSpec{"model.norm.weight", dtype, []int64{h}},
		tensorSpec{"lm_head.weight", dtype, []int64{d.Vocab, h}},
	)
}

// splitShards cuts the natural order into n contiguous shards of about
// equal bytes (a tensor goes where its midpoint falls), forcing a new shard
// when only as many tensors remain as shards to fill, so there are exactly n.
func splitShards(ts []tensorSpec, n int) [][]tensorSpec {
	n = max(1, min(n, len(ts)))
	var total int64
	for _, t := range ts {
		total += t.bytes()
	}
	out := make([][]tensorSpec, 1, n)
	var cum int64
	for i, t := range ts {
		cur := len(out) - 1
		mid := cum + t.bytes()/2
		if len(out[cur]) > 0 && len(out) < n &&
			(mid*int64(n) >= total*int64(len(out)) || len(ts)-i <= n-len(out)) {
			out = append(out, nil)
			cur++
		}
		out[cur] = append(out[cur], t)
		cum += t.bytes()
	}
	return out
}

var torchDTypes = map[string]string{"F16": "float16", "BF16": "bfloat16", "F32": "float32"}

func generateLLM(dir string, spec Spec, m *Model) error {
	es := int64(dtypeSizes[spec.DType])
	d := llamaSize(spec.TotalSize / es)
	m.Llama = &LlamaInfo{
		HiddenSize: d.Hidden, IntermediateSize: d.Intermediate, NumHiddenLayers: d.Layers,
		NumAttentionHeads: d.Heads, NumKeyValueHeads: d.KVHeads, VocabSize: d.Vocab,
	}
	torchDType := torchDTypes[spec.DType]
	config := orderedJSON{
		{"architectures", []string{"LlamaForCausalLM"}},
		{"attention_bias", false},
		{"attention_dropout", 0.0},
		{"bos_token_id", 1},
		{"eos_token_id", 2},
		{"head_dim", headDim},
		{"hidden_act", "silu"},
		{"hidden_size", d.Hidden},
		{"initializer_range", 0.02},
		{"intermediate_size", d.Intermediate},
		{"max_position_embeddings", 2048},
		{"mlp_bias", false},
		{"model_type", "llama"},
		{"num_attention_heads", d.Heads},
		{"num_hidden_layers", d.Layers},
		{"num_key_value_heads", d.KVHeads},
		{"pretraining_tp", 1},
		{"rms_norm_eps", 1e-05},
		{"rope_scaling", nil},
		{"rope_theta", 10000.0},
		{"tie_word_embeddings", false},
		{"torch_dtype", torchDType},
		{"transformers_version", "4.44.0"},
		{"use_cache", true},
		{"vocab_size", d.Vocab},
	}
	files := map[string]any{
		"config.json": config,
		"generation_config.json": orderedJSON{
			{"_from_model_config", true}, {"bos_token_id", 1}, {"eos_token_id", 2},
			{"transformers_version", "4.44.0"},
		},
		"tokenizer.json": tokenizerJSON(),
		"tokenizer_config.json": orderedJSON{
			{"add_bos_token", true}, {"add_eos_token", false},
			{"bos_token", "<s>"}, {"clean_up_tokenization_spaces", false},
			{"eos_token", "</s>"}, {"model_max_length", 2048},
			{"pad_token", nil}, {"tokenizer_class", "PreTrainedTokenizerFast"},
			{"unk_token", "<unk>"},
		},
		"special_tokens_map.json": orderedJSON{
			{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"},
		},
	}
	for name, v := range files {
		if err := m.writeJSON(name, v); err != nil {
			return err
		}
	}

	shards := splitShards(llamaTensors(d, spec.DType), spec.Shards)
	if len(shards) == 1 {
		return m.writeWeights("model.safetensors", spec.Seed, shards[0])
	}
	weightMap := map[string]string{}
	var total int64
	for i, sh := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		if err := m.writeWeights(name, spec.Seed, sh); err != nil {
			return err
		}
		for _, t := range sh {
			weightMap[t.Name] = name
			total += t.bytes()
		}
	}
	m.WeightMap = weightMap
	return m.writeJSON("model.safetensors.index.json", orderedJSON{
		{"metadata", orderedJSON{{"total_size", total}}},
		{"weight_map", weightMap}, // encoding/json sorts keys, as transformers does
	})
}

// writeWeights writes one safetensors file and records it in the Model.
func (m *Model) writeWeights(rel string, seed uint64, ts []tensorSpec) error {
	h, err := writeSafetensors(filepath.Join(m.Dir, filepath.FromSlash(rel)), rel, seed, ts)
	if err != nil {
		return fmt.Errorf("modelgen: %s: %w", rel, err)
	}
	m.Safetensors = append(m.Safetensors, rel)
	m.Headers[rel] = h
	m.WeightBytes += h.DataLen()
	return nil
}

// tokenizerJSON is a small but loadable byte-level BPE tokenizer (the GPT-2
// byte alphabet plus three specials, no merges).
func tokenizerJSON() orderedJSON {
	special := func(id int, s string) orderedJSON {
		return orderedJSON{
			{"id", id}, {"content", s}, {"single_word", false}, {"lstrip", false},
			{"rstrip", false}, {"normalized", false}, {"special", true},
		}
	}
	vocab := orderedJSON{{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}}
	for i, r := range byteAlphabet() {
		vocab = append(vocab, kv{string(r), 3 + i})
	}
	byteLevel := orderedJSON{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}
	return orderedJSON{
		{"version", "1.0"},
		{"truncation", nil},
		{"padding", nil},
		{"added_tokens", []orderedJSON{special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")}},
		{"normalizer", nil},
		{"pre_tokenizer", byteLevel},
		{"post_processor", nil},
		{"decoder", byteLevel},
		{"model", orderedJSON{
			{"type", "BPE"}, {"dropout", nil}, {"unk_token", nil},
			{"continuing_subword_prefix", nil}, {"end_of_word_suffix", nil},
			{"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
			{"vocab", vocab}, {"merges", []string{}},
		}},
	}
}

// byteAlphabet is GPT-2's bytes_to_unicode: printable bytes map to
// themselves, the rest to code points from 256 up, in byte order.
func byteAlphabet() []rune {
	var out []rune
	next := rune(256)
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			out = append(out, rune(b))
		} else {
			out = append(out, next)
			next++
		}
	}
	return out
}

// kv and orderedJSON keep JSON keys in the order written, like the files
// Python tools produce (config.json is not alphabetical in the wild).
type kv struct {
	K string
	V any
}

type orderedJSON []kv

func (o orderedJSON) MarshalJSON() ([]byte, error) {
	buf := []byte{'{'}
	for i, e := range o {
		if i > 0 {
			buf = append(buf, ',')
		}
		k, _ := json.Marshal(e.K)
		v, err := json.Marshal(e.V)
		if err != nil {
			return nil, err
		}
		buf = append(append(append(buf, k...), ':'), v...)
	}
	return append(buf, '}'), nil
}
