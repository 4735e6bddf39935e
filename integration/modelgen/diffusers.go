package modelgen

import "fmt"

const diffusersVersion = "0.30.0"

// variantSuffix is the diffusers "variant" in weight file names.
var variantSuffix = map[string]string{"F16": ".fp16", "BF16": ".bf16", "F32": ""}

func sumBytes(ts []tensorSpec) int64 {
	var n int64
	for _, t := range ts {
		n += t.bytes()
	}
	return n
}

// fitWidth returns the widest channel count (a multiple of 32, at least 32)
// whose tensors fit in budget bytes.
func fitWidth(budget int64, build func(c int64) []tensorSpec) int64 {
	c := int64(32)
	for sumBytes(build(c+32)) <= budget {
		c += 32
	}
	return c
}

// resnet is a diffusers ResnetBlock2D; temb adds the time-embedding
// projection the UNet has and the VAE lacks.
func resnet(p, dt string, c int64, temb bool) []tensorSpec {
	ts := []tensorSpec{
		{p + "norm1.weight", dt, []int64{c}}, {p + "norm1.bias", dt, []int64{c}},
		{p + "conv1.weight", dt, []int64{c, c, 3, 3}}, {p + "conv1.bias", dt, []int64{c}},
		{p + "norm2.weight", dt, []int64{c}}, {p + "norm2.bias", dt, []int64{c}},
		{p + "conv2.weight", dt, []int64{c, c, 3, 3}}, {p + "conv2.bias", dt, []int64{c}},
	}
	if temb {
		ts = append(ts, tensorSpec{p + "time_emb_proj.weight", dt, []int64{c, 4 * c}}, tensorSpec{p + "time_emb_proj.bias", dt, []int64{c}})
	}
	return ts
}

// transformer is a diffusers Transformer2DModel with one block, cross
// attending to 768-wide text embeddings.
func transformer(p, dt string, c int64) []tensorSpec {
	b := p + "transformer_blocks.0."
	ts := []tensorSpec{
		{p + "norm.weight", dt, []int64{c}}, {p + "norm.bias", dt, []int64{c}},
		{p + "proj_in.weight", dt, []int64{c, c}}, {p + "proj_in.bias", dt, []int64{c}},
	}
	for _, a := range []string{"attn1.", "attn2."} {
		kvIn := c
		if a == "attn2." {
			kvIn = 768
		}
		ts = append(ts,
			tensorSpec{b + a + "to_q.weight", dt, []int64{c, c}},
			tensorSpec{b + a + "to_k.weight", dt, []int64{c, kvIn}},
			tensorSpec{b + a + "to_v.weight", dt, []int64{c, kvIn}},
			tensorSpec{b + a + "to_out.0.weight", dt, []int64{c, c}},
			tensorSpec{b + a + "to_out.0.bias", dt, []int64{c}})
	}
	for _, n := range []string{"norm1.", "norm2.", "norm3."} {
		ts = append(ts, tensorSpec{b + n + "weight", dt, []int64{c}}, tensorSpec{b + n + "bias", dt, []int64{c}})
	}
	return append(ts,
		tensorSpec{b + "ff.net.0.proj.weight", dt, []int64{8 * c, c}}, tensorSpec{b + "ff.net.0.proj.bias", dt, []int64{8 * c}},
		tensorSpec{b + "ff.net.2.weight", dt, []int64{c, 4 * c}}, tensorSpec{b + "ff.net.2.bias", dt, []int64{c}},
		tensorSpec{p + "proj_out.weight", dt, []int64{c, c}}, tensorSpec{p + "proj_out.bias", dt, []int64{c}},
	)
}

func conv(name, dt string, out, in, k int64) []tensorSpec {
	return []tensorSpec{{name + ".weight", dt, []int64{out, in, k, k}}, {name + ".bias", dt, []int64{out}}}
}

func norm(name, dt string, c int64) []tensorSpec {
	return []tensorSpec{{name + ".weight", dt, []int64{c}}, {name + ".bias", dt, []int64{c}}}
}

func unetTensors(dt string, c int64) []tensorSpec {
	ts := conv("conv_in", dt, c, 4, 3)
	ts = append(ts,
		tensorSpec{"time_embedding.linear_1.weight", dt, []int64{4 * c, c}}, tensorSpec{"time_embedding.linear_1.bias", dt, []int64{4 * c}},
		tensorSpec{"time_embedding.linear_2.weight", dt, []int64{4 * c, 4 * c}}, tensorSpec{"time_embedding.linear_2.bias", dt, []int64{4 * c}})
	for b := 0; b < 4; b++ {
		for r := 0; r < 2; r++ {
			ts = append(ts, resnet(fmt.Sprintf("down_blocks.%d.resnets.%d.", b, r), dt, c, true)...)
			if b < 3 {
				ts = append(ts, transformer(fmt.Sprintf("down_blocks.%d.attentions.%d.", b, r), dt, c)...)
			}
		}
		if b < 3 {
			ts = append(ts, conv(fmt.Sprintf("down_blocks.%d.downsamplers.0.conv", b), dt, c, c, 3)...)
		}
	}
	ts = append(ts, resnet("mid_block.resnets.0.", dt, c, true)...)
	ts = append(ts, transformer("mid_block.attentions.0.", dt, c)...)
	ts = append(ts, resnet("mid_block.resnets.1.", dt, c, true)...)
	for b := 0; b < 4; b++ {
		for r := 0; r < 3; r++ {
			ts = append(ts, resnet(fmt.Sprintf("up_blocks.%d.resnets.%d.", b, r), dt, c, true)...)
			if b > 0 {
				ts = append(ts, transformer(fmt.Sprintf("up_blocks.%d.attentions.%d.", b, r), dt, c)...)
			}
		}
		if b < 3 {
			ts = append(ts, conv(fmt.Sprintf("up_blocks.%d.upsamplers.0.conv", b), dt, c, c, 3)...)
		}
	}
	ts = append(ts, norm("conv_norm_out", dt, c)...)
	return append(ts, conv("conv_out", dt, 4, c, 3)...)
}

func vaeTensors(dt string, c int64) []tensorSpec {
	ts := conv("encoder.conv_in", dt, c, 3, 3)
	for b := 0; b < 4; b++ {
		for r := 0; r < 2; r++ {
			ts = append(ts, resnet(fmt.Sprintf("encoder.down_blocks.%d.resnets.%d.", b, r), dt, c, false)...)
		}
		if b < 3 {
			ts = append(ts, conv(fmt.Sprintf("encoder.down_blocks.%d.downsamplers.0.conv", b), dt, c, c, 3)...)
		}
	}
	mid := func(p string) []tensorSpec {
		ts := resnet(p+"mid_block.resnets.0.", dt, c, false)
		ts = append(ts, norm(p+"mid_block.attentions.0.group_norm", dt, c)...)
		for _, n := range []string{"to_q", "to_k", "to_v", "to_out.0"} {
			ts = append(ts, tensorSpec{p + "mid_block.attentions.0." + n + ".weight", dt, []int64{c, c}},
				tensorSpec{p + "mid_block.attentions.0." + n + ".bias", dt, []int64{c}})
		}
		return append(ts, resnet(p+"mid_block.resnets.1.", dt, c, false)...)
	}
	ts = append(ts, mid("encoder.")...)
	ts = append(ts, norm("encoder.conv_norm_out", dt, c)...)
	ts = append(ts, conv("encoder.conv_out", dt, 8, c, 3)...)
	ts = append(ts, conv("quant_conv", dt, 8, 8, 1)...)
	ts = append(ts, conv("post_quant_conv", dt, 4, 4, 1)...)
	ts = append(ts, conv("decoder.conv_in", dt, c, 4, 3)...)
	ts = append(ts, mid("decoder.")...)
	for b := 0; b < 4; b++ {
		for r := 0; r < 3; r++ {
			ts = append(ts, resnet(fmt.Sprintf("decoder.up_blocks.%d.resnets.%d.", b, r), dt, c, false)...)
		}
		if b < 3 {
			ts = append(ts, conv(fmt.Sprintf("decoder.up_blocks.%d.upsamplers.0.conv", b), dt, c, c, 3)...)
		}
	}
	ts = append(ts, norm("decoder.conv_norm_out", dt, c)...)
	return append(ts, conv("decoder.conv_out", dt, 3, c, 3)...)
}

const clipLayers = 12

// clipTensors is a CLIP text encoder of width d (a multiple of 32) without
// its token embedding, which the caller sizes to absorb the budget.
func clipTensors(dt string, d int64) []tensorSpec {
	ts := []tensorSpec{{"text_model.embeddings.position_embedding.weight", dt, []int64{77, d}}}
	for i := 0; i < clipLayers; i++ {
		p := fmt.Sprintf("text_model.encoder.layers.%d.", i)
		for _, n := range []string{"q_proj", "k_proj", "v_proj", "out_proj"} {
			ts = append(ts, tensorSpec{p + "self_attn." + n + ".weight", dt, []int64{d, d}}, tensorSpec{p + "self_attn." + n + ".bias", dt, []int64{d}})
		}
		ts = append(ts, norm(p+"layer_norm1", dt, d)...)
		ts = append(ts, norm(p+"layer_norm2", dt, d)...)
		ts = append(ts,
			tensorSpec{p + "mlp.fc1.weight", dt, []int64{4 * d, d}}, tensorSpec{p + "mlp.fc1.bias", dt, []int64{4 * d}},
			tensorSpec{p + "mlp.fc2.weight", dt, []int64{d, 4 * d}}, tensorSpec{p + "mlp.fc2.bias", dt, []int64{d}})
	}
	return append(ts, norm("text_model.final_layer_norm", dt, d)...)
}

// generateDiffusers writes a Stable-Diffusion-like pipeline. The VAE gets
// about 10% of the budget, the text encoder 20% (its vocabulary absorbs the
// rounding) and the UNet the rest (an add_embedding projection absorbs its
// rounding), so the total lands within a row of the target.
func generateDiffusers(dir string, spec Spec, m *Model) error {
	dt, es := spec.DType, int64(dtypeSizes[spec.DType])
	variant := variantSuffix[dt]

	vc := fitWidth(spec.TotalSize/10, func(c int64) []tensorSpec { return vaeTensors(dt, c) })
	vae := vaeTensors(dt, vc)

	teBudget := spec.TotalSize / 5
	d := max(64, fitWidth(teBudget*9/10, func(c int64) []tensorSpec { return clipTensors(dt, c) })/64*64)
	te := clipTensors(dt, d)
	vocab := max(256, (teBudget-sumBytes(te))/(d*es))
	te = append(te, tensorSpec{"text_model.embeddings.token_embedding.weight", dt, []int64{vocab, d}})

	unetBudget := spec.TotalSize - sumBytes(vae) - sumBytes(te)
	uc := fitWidth(unetBudget, func(c int64) []tensorSpec { return unetTensors(dt, c) })
	unet := unetTensors(dt, uc)
	if rows := (unetBudget - sumBytes(unet)) / (uc * es); rows > 0 {
		unet = append(unet, tensorSpec{"add_embedding.linear_1.weight", dt, []int64{rows, uc}})
	}

	chans := []int64{uc, uc, uc, uc}
	jsons := []struct {
		rel string
		v   any
	}{
		{"model_index.json", orderedJSON{
			{"_class_name", "StableDiffusionPipeline"}, {"_diffusers_version", diffusersVersion},
			{"feature_extractor", []any{nil, nil}}, {"requires_safety_checker", false},
			{"safety_checker", []any{nil, nil}},
			{"scheduler", []string{"diffusers", "PNDMScheduler"}},
			{"text_encoder", []string{"transformers", "CLIPTextModel"}},
			{"tokenizer", []string{"transformers", "CLIPTokenizer"}},
			{"unet", []string{"diffusers", "UNet2DConditionModel"}},
			{"vae", []string{"diffusers", "AutoencoderKL"}},
		}},
		{"scheduler/scheduler_config.json", orderedJSON{
			{"_class_name", "PNDMScheduler"}, {"_diffusers_version", diffusersVersion},
			{"beta_end", 0.012}, {"beta_schedule", "scaled_linear"}, {"beta_start", 0.00085},
			{"num_train_timesteps", 1000}, {"set_alpha_to_one", false}, {"skip_prk_steps", true},
			{"steps_offset", 1}, {"timestep_spacing", "leading"}, {"trained_betas", nil},
		}},
		{"unet/config.json", orderedJSON{
			{"_class_name", "UNet2DConditionModel"}, {"_diffusers_version", diffusersVersion},
			{"attention_head_dim", 8}, {"block_out_channels", chans}, {"cross_attention_dim", 768},
			{"down_block_types", []string{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
			{"in_channels", 4}, {"layers_per_block", 2}, {"out_channels", 4}, {"sample_size", 64},
			{"up_block_types", []string{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}},
		}},
		{"vae/config.json", orderedJSON{
			{"_class_name", "AutoencoderKL"}, {"_diffusers_version", diffusersVersion},
			{"act_fn", "silu"}, {"block_out_channels", []int64{vc, vc, vc, vc}},
			{"down_block_types", []string{"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"}},
			{"in_channels", 3}, {"latent_channels", 4}, {"layers_per_block", 2}, {"out_channels", 3},
			{"sample_size", 512},
			{"up_block_types", []string{"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"}},
		}},
		{"text_encoder/config.json", orderedJSON{
			{"architectures", []string{"CLIPTextModel"}}, {"bos_token_id", 0}, {"eos_token_id", 2},
			{"hidden_act", "quick_gelu"}, {"hidden_size", d}, {"intermediate_size", 4 * d},
			{"layer_norm_eps", 1e-05}, {"max_position_embeddings", 77}, {"model_type", "clip_text_model"},
			{"num_attention_heads", max(1, d/64)}, {"num_hidden_layers", clipLayers}, {"pad_token_id", 1},
			{"projection_dim", 768}, {"torch_dtype", torchDTypes[dt]},
			{"transformers_version", "4.44.0"}, {"vocab_size", vocab},
		}},
		{"tokenizer/vocab.json", clipVocab()},
		{"tokenizer/special_tokens_map.json", orderedJSON{
			{"bos_token", "<|startoftext|>"}, {"eos_token", "<|endoftext|>"},
			{"pad_token", "<|endoftext|>"}, {"unk_token", "<|endoftext|>"},
		}},
		{"tokenizer/tokenizer_config.json", orderedJSON{
			{"bos_token", "<|startoftext|>"}, {"eos_token", "<|endoftext|>"},
			{"model_max_length", 77}, {"pad_token", "<|endoftext|>"},
			{"tokenizer_class", "CLIPTokenizer"}, {"unk_token", "<|endoftext|>"},
		}},
	}
	for _, j := range jsons {
		if err := m.writeJSON(j.rel, j.v); err != nil {
			return err
		}
	}
	if err := m.writeFile("tokenizer/merges.txt", []byte("#version: 0.2\nt h\nth e</w>\n")); err != nil {
		return err
	}
	// Load order: diffusers walks components alphabetically.
	for _, w := range []struct {
		rel string
		ts  []tensorSpec
	}{
		{"text_encoder/model" + variant + ".safetensors", te},
		{"unet/diffusion_pytorch_model" + variant + ".safetensors", unet},
		{"vae/diffusion_pytorch_model" + variant + ".safetensors", vae},
	} {
		if err := m.writeWeights(w.rel, spec.Seed, w.ts); err != nil {
			return err
		}
	}
	return nil
}

// clipVocab is CLIP's byte-level vocabulary, shrunk: the byte alphabet, the
// same with the end-of-word marker, the results of the two merges, and the
// two specials.
func clipVocab() orderedJSON {
	var v orderedJSON
	alpha := byteAlphabet()
	for _, r := range alpha {
		v = append(v, kv{string(r), len(v)})
	}
	for _, r := range alpha {
		v = append(v, kv{string(r) + "</w>", len(v)})
	}
	for _, s := range []string{"th", "the</w>", "<|startoftext|>", "<|endoftext|>"} {
		v = append(v, kv{s, len(v)})
	}
	return v
}
