// Package modelgen owns generating realistic model repos on disk for tests,
// demos and benchmarks: a llama-like transformers checkpoint (config,
// tokenizer, safetensors shards and their index) or a diffusers pipeline
// (nested component folders). The safetensors files follow the format
// exactly (header padding, tensor order, no holes) and hold deterministic
// pseudo-random data, so a test can compare bytes served through the
// filesystem with the bytes on disk. It also parses safetensors headers so
// tests can check what they read.
//
// It knows nothing about the Hub or the filesystem: it only writes files.
package modelgen

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Spec describes the model to generate.
type Spec struct {
	TotalSize int64  // approximate bytes of weights (default 64 MiB); diffusers floor ~6 MB at F16
	Shards    int    // safetensors shards for "llm" (default ceil(TotalSize/512 MiB)); 1 = model.safetensors, no index
	Layout    string // "llm" (default) or "diffusers"
	DType     string // "F16" (default), "BF16" or "F32"
	Seed      uint64 // selects the tensor bytes; same Spec, same bytes
}

// DefaultShardSize is the shard size behind the default Spec.Shards.
const DefaultShardSize = 512 << 20

// LlamaInfo is the architecture written to config.json of an "llm" model.
type LlamaInfo struct {
	HiddenSize, IntermediateSize, NumHiddenLayers  int64
	NumAttentionHeads, NumKeyValueHeads, VocabSize int64
}

// Model is what Generate wrote.
type Model struct {
	Dir         string
	Files       []string          // every file, relative '/'-separated paths, sorted
	Safetensors []string          // weight files in load order (shard order, then component)
	Headers     map[string]Header // weight file -> its parsed header
	WeightMap   map[string]string // tensor -> shard, from the index (nil when unsharded)
	WeightBytes int64             // sum of tensor bytes (the index's total_size)
	TotalBytes  int64             // sum of all file sizes
	Llama       *LlamaInfo        // "llm" layout only
}

// Generate writes a model into dir (created if missing; best empty, since
// Model.Files lists everything under it) and describes it. Weight bytes land
// within 1% of TotalSize except below a layout's floor (one llama layer, or
// the narrowest diffusers pipeline), where it overshoots.
func Generate(dir string, spec Spec) (*Model, error) {
	if spec.TotalSize <= 0 {
		spec.TotalSize = 64 << 20
	}
	if spec.Layout == "" {
		spec.Layout = "llm"
	}
	if spec.DType == "" {
		spec.DType = "F16"
	}
	if _, ok := torchDTypes[spec.DType]; !ok {
		return nil, fmt.Errorf("modelgen: dtype %q: want F16, BF16 or F32", spec.DType)
	}
	if spec.Shards <= 0 {
		spec.Shards = int((spec.TotalSize + DefaultShardSize - 1) / DefaultShardSize)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("modelgen: %w", err)
	}
	m := &Model{Dir: dir, Headers: map[string]Header{}}
	var err error
	switch spec.Layout {
	case "llm":
		err = generateLLM(dir, spec, m)
	case "diffusers":
		err = generateDiffusers(dir, spec, m)
	default:
		err = fmt.Errorf("modelgen: layout %q: want llm or diffusers", spec.Layout)
	}
	if err != nil {
		return nil, err
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		m.Files = append(m.Files, filepath.ToSlash(rel))
		m.TotalBytes += info.Size()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("modelgen: %w", err)
	}
	sort.Strings(m.Files)
	return m, nil
}

func (m *Model) writeJSON(rel string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("modelgen: %s: %w", rel, err)
	}
	return m.writeFile(rel, append(b, '\n'))
}

func (m *Model) writeFile(rel string, b []byte) error {
	p := filepath.Join(m.Dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("modelgen: %w", err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return fmt.Errorf("modelgen: %w", err)
	}
	return nil
}
