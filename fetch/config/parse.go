package config

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a config.
type Problem struct {
	Index  int    // position in model_cache; -1 for the file or the list itself
	RepoID string // the entry's repo_id as written, when it is a string
	Key    string // offending key, e.g. "revision" or "allow_patterns[2]"; "" for the whole entry
	Line   int    // 1-based line in the source; 0 when unknown
	Msg    string // what is wrong and what to write instead
}

// String is the problem without the source and line:
// `model_cache[1] (acme/llama) key "revision": required ...`.
func (p Problem) String() string {
	if p.Index < 0 {
		return p.Msg
	}
	var b strings.Builder
	fmt.Fprintf(&b, "model_cache[%d]", p.Index)
	if p.RepoID != "" {
		r := p.RepoID
		if strings.ContainsFunc(r, func(c rune) bool { return c < ' ' || c == 0x7f }) {
			r = strconv.Quote(r)
		}
		fmt.Fprintf(&b, " (%s)", r)
	}
	if p.Key != "" {
		fmt.Fprintf(&b, " key %q", p.Key)
	}
	b.WriteString(": ")
	b.WriteString(p.Msg)
	return b.String()
}

// ValidationError holds every problem found in one config, in file order.
type ValidationError struct {
	Source   string // the path or name the config was read from
	Problems []Problem
}

// Error prints one problem per line, `source:line: problem`.
func (e *ValidationError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Source)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Load reads the file at path and parses it as Parse does.
func Load(path string) ([]Entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model_cache config: %w", err)
	}
	return Parse(data, path)
}

// Parse reads the model_cache list from data, which holds a whole Truss
// config.yaml (only its model_cache key is read), a file holding just
// `model_cache:`, or just the list. It returns the validated entries with
// defaults applied, or a *ValidationError listing every problem found, or a
// plain error when data is not YAML at all. source names data in messages.
func Parse(data []byte, source string) ([]Entry, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		hint := ""
		if strings.Contains(err.Error(), "anchor") || strings.Contains(err.Error(), "alphabetic or numeric character") {
			hint = ` (a value starting with '*' must be quoted, e.g. "*.json")`
		}
		return nil, fmt.Errorf("%s: %w%s", source, err, hint)
	}
	v := &validator{}
	if list := v.findList(&doc); list != nil {
		for i, item := range list.Content {
			v.entry(i, item)
		}
		v.crossCheck()
	}
	if len(v.problems) > 0 {
		sort.SliceStable(v.problems, func(a, b int) bool {
			pa, pb := v.problems[a], v.problems[b]
			if pa.Index != pb.Index {
				return pa.Index < pb.Index
			}
			return pa.Line < pb.Line
		})
		return nil, &ValidationError{Source: source, Problems: v.problems}
	}
	entries := make([]Entry, len(v.parsed))
	for i, p := range v.parsed {
		entries[i] = p.Entry
	}
	return entries, nil
}

// knownKeys are the keys of a model_cache entry, in the order Truss documents them.
var knownKeys = []string{"repo_id", "revision", "use_volume", "volume_folder",
	"allow_patterns", "ignore_patterns", "kind", "runtime_secret_name"}

type validator struct {
	problems []Problem
	parsed   []parsedEntry
}

// parsedEntry is an entry with what the cross-entry checks need.
type parsedEntry struct {
	Entry
	useVolumeSet bool // use_volume was a valid bool
	line         int  // of the entry
	useVolLine   int
	folderLine   int
}

func (v *validator) add(p Problem) { v.problems = append(v.problems, p) }

// findList returns the model_cache sequence node, or nil after adding a problem.
func (v *validator) findList(doc *yaml.Node) *yaml.Node {
	if doc.Kind == 0 || len(doc.Content) == 0 {
		v.add(Problem{Index: -1, Msg: "the file is empty: expected a Truss config with a model_cache list"})
		return nil
	}
	root := deref(doc.Content[0])
	var list *yaml.Node
	switch {
	case root.Kind == yaml.SequenceNode:
		list = root
	case root.Kind == yaml.MappingNode:
		f, ok := mappingFields(root).byName["model_cache"]
		if !ok {
			v.add(Problem{Index: -1, Line: root.Line, Msg: "no model_cache key: add a model_cache list of entries (repo_id, revision, use_volume, volume_folder)"})
			return nil
		}
		list = deref(f.val)
		if isNull(list) {
			v.add(Problem{Index: -1, Line: f.key.Line, Msg: "model_cache is empty: list at least one entry"})
			return nil
		}
		if list.Kind != yaml.SequenceNode {
			v.add(Problem{Index: -1, Line: list.Line, Msg: fmt.Sprintf(`model_cache must be a list of entries, got %s: start each entry with "- " (- repo_id: acme/llama)`, describe(list))})
			return nil
		}
	case isNull(root):
		v.add(Problem{Index: -1, Line: root.Line, Msg: "the file is empty: expected a Truss config with a model_cache list"})
		return nil
	default:
		v.add(Problem{Index: -1, Line: root.Line, Msg: fmt.Sprintf("expected a Truss config with a model_cache key, or a model_cache list, got %s", describe(root))})
		return nil
	}
	if len(list.Content) == 0 {
		v.add(Problem{Index: -1, Line: list.Line, Msg: "model_cache is empty: list at least one entry"})
		return nil
	}
	return list
}

// crossCheck applies the rules that span entries: one shared use_volume
// value and distinct volume folders.
func (v *validator) crossCheck() {
	var first *parsedEntry
	folders := map[string]*parsedEntry{}
	for i := range v.parsed {
		p := &v.parsed[i]
		if !p.useVolumeSet {
			continue
		}
		if first == nil {
			first = p
		} else if p.UseVolume != first.UseVolume {
			v.add(Problem{Index: p.Index, RepoID: p.RepoID, Key: "use_volume", Line: p.useVolLine,
				Msg: fmt.Sprintf("is %t but %s has use_volume: %t: all entries must share one use_volume value",
					p.UseVolume, first.Name(), first.UseVolume)})
		}
		if p.UseVolume && p.VolumeFolder != "" {
			if other, dup := folders[p.VolumeFolder]; dup {
				v.add(Problem{Index: p.Index, RepoID: p.RepoID, Key: "volume_folder", Line: p.folderLine,
					Msg: fmt.Sprintf("%q is also used by %s: each entry needs its own folder", p.VolumeFolder, other.Name())})
			} else {
				folders[p.VolumeFolder] = p
			}
		}
	}
}

// field is one key: value pair of a mapping.
type field struct{ key, val *yaml.Node }

type fields struct {
	order  []field          // explicit keys in file order, then merged ones
	byName map[string]field // first occurrence of each key
	dups   []field          // later occurrences of a key already seen
}

// mappingFields lists the pairs of a mapping, expanding YAML merge keys
// (<<: *anchor) as PyYAML does: explicit keys win over merged ones.
func mappingFields(n *yaml.Node) fields { return flatten(n, map[*yaml.Node]*fields{}) }

// flatten is mappingFields remembering each mapping it has flattened
// (nil while in progress). Anchors make the node graph shared and even
// cyclic: "&a {<<: *a}" merged itself without end (a stack overflow), and
// ten lines of anchors each merging the one above ten times named one
// mapping 10^10 times. Now each mapping is flattened once, and a merge
// back into a mapping in progress adds nothing: its keys are there already.
func flatten(n *yaml.Node, memo map[*yaml.Node]*fields) fields {
	if fs, done := memo[n]; done {
		if fs == nil {
			return fields{byName: map[string]field{}}
		}
		return *fs
	}
	memo[n] = nil
	fs := fields{byName: map[string]field{}}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		f := field{n.Content[i], n.Content[i+1]}
		if f.key.Value == "<<" && f.key.ShortTag() == "!!merge" {
			merges = append(merges, deref(f.val))
			continue
		}
		if _, seen := fs.byName[f.key.Value]; seen {
			fs.dups = append(fs.dups, f)
			continue
		}
		fs.byName[f.key.Value] = f
		fs.order = append(fs.order, f)
	}
	for _, m := range merges {
		srcs := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			srcs = srcs[:0]
			for _, s := range m.Content {
				srcs = append(srcs, deref(s))
			}
		}
		for _, src := range srcs {
			if src.Kind != yaml.MappingNode {
				continue
			}
			for _, f := range flatten(src, memo).order {
				if _, seen := fs.byName[f.key.Value]; !seen {
					fs.byName[f.key.Value] = f
					fs.order = append(fs.order, f)
				}
			}
		}
	}
	memo[n] = &fs
	return fs
}

// deref follows aliases (*anchor) to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func isString(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" }

// describe names what a node holds, for "got ..." messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		case "!!null":
			return "null"
		case "!!timestamp":
			return "the date " + n.Value
		}
		return fmt.Sprintf("%s %s", n.ShortTag(), n.Value)
	}
	return "an unexpected YAML node"
}

// closestKey suggests a known key for an unknown one, or "".
func closestKey(k string) string {
	aliases := map[string]string{
		"model_id": "repo_id", "repo": "repo_id", "model": "repo_id", "source": "repo_id",
		"branch": "revision", "commit": "revision", "sha": "revision", "tag": "revision",
		"folder": "volume_folder", "secret": "runtime_secret_name", "secret_name": "runtime_secret_name",
		"include": "allow_patterns", "exclude": "ignore_patterns",
	}
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
	}
	if a, ok := aliases[norm(k)]; ok {
		return a
	}
	if a, ok := aliases[strings.ToLower(k)]; ok {
		return a
	}
	best, bestD := "", 1<<30
	for _, known := range knownKeys {
		d := editDistance(norm(k), norm(known))
		if d < bestD {
			best, bestD = known, d
		}
	}
	if bestD <= 2 || bestD <= len(best)/4 {
		return best
	}
	for _, known := range knownKeys {
		if len(k) >= 4 && strings.HasPrefix(known, strings.ToLower(k)) {
			return known
		}
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
