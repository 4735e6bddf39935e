package config

import (
	"fmt"
	"slices"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// entryCheck validates one model_cache entry; every problem it adds names
// the entry's index, repo_id and key.
type entryCheck struct {
	v    *validator
	i    int
	repo string // repo_id as written, for messages
	line int    // of the entry
	f    fields
}

func (c *entryCheck) problem(key string, line int, format string, args ...any) {
	c.v.add(Problem{Index: c.i, RepoID: c.repo, Key: key, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// entry validates the i-th item of the list and records it.
func (v *validator) entry(i int, raw *yaml.Node) {
	n := deref(raw)
	if n.Kind != yaml.MappingNode {
		msg := "must be a mapping of keys (repo_id, revision, use_volume, volume_folder, ...), got " + describe(n)
		if isString(n) {
			msg += fmt.Sprintf(": write - repo_id: %s", n.Value)
		}
		v.add(Problem{Index: i, Line: n.Line, Msg: msg})
		return
	}
	c := &entryCheck{v: v, i: i, line: n.Line, f: mappingFields(n)}
	if f, ok := c.f.byName["repo_id"]; ok && isString(deref(f.val)) {
		c.repo = deref(f.val).Value
	}
	for _, d := range c.f.dups {
		c.problem(d.key.Value, d.key.Line, "appears twice in this entry (first at line %d)", c.f.byName[d.key.Value].key.Line)
	}
	for _, f := range c.f.order {
		if slices.Contains(knownKeys, f.key.Value) {
			continue
		}
		if s := closestKey(f.key.Value); s != "" {
			c.problem(f.key.Value, f.key.Line, "unknown key: did you mean %s?", s)
		} else {
			c.problem(f.key.Value, f.key.Line, "unknown key (known keys: %s)", strings.Join(knownKeys, ", "))
		}
	}

	e := Entry{Index: i, RepoID: c.repo, SecretName: DefaultSecretName}
	p := parsedEntry{line: n.Line}

	// repo_id, and the kind its scheme implies ("" when it has none).
	repo, _, present, ok := c.str("repo_id")
	repoKind, repoOK := "", false
	switch {
	case !present && ok:
		c.problem("repo_id", c.line, "required: org/name for Hugging Face, s3://bucket/prefix or gs://bucket/prefix")
	case ok:
		var msg string
		if repoKind, msg = checkRepoID(repo); msg != "" {
			c.problem("repo_id", c.lineOf("repo_id"), "%s", msg)
		} else {
			repoOK = true
		}
	}

	// kind: given, or inferred from the scheme.
	e.Kind = repoKind
	if e.Kind == "" {
		e.Kind = KindHF
	}
	kind, kindLine, present, ok := c.str("kind")
	if present && ok {
		switch kind {
		case KindHF, KindS3, KindGCS:
			e.Kind = kind
			if repoOK && repoKind != KindAzure {
				c.kindMatches(kind, repoKind, repo, kindLine)
			}
		case KindAzure:
			c.problem("kind", kindLine, "azure is not supported by weightfs yet")
		default:
			msg := fmt.Sprintf("must be one of hf, gcs, s3, azure, got %q", kind)
			if s := closestKind(kind); s != "" {
				msg += fmt.Sprintf(": did you mean %s?", s)
			}
			c.problem("kind", kindLine, "%s", msg)
		}
	}
	if repoKind == KindAzure && kind != KindAzure {
		c.problem("repo_id", c.lineOf("repo_id"), "azure is not supported by weightfs yet")
	}

	// use_volume: a required bool.
	if f, found := c.f.byName["use_volume"]; !found || isNull(deref(f.val)) {
		c.problem("use_volume", c.lineOf("use_volume"), "required: true serves the files under <mountpoint>/<volume_folder>; false fills the Hugging Face cache (the legacy path)")
	} else if b, ok := parseBool(deref(f.val)); ok {
		e.UseVolume, p.useVolumeSet, p.useVolLine = b, true, f.key.Line
	} else {
		n := deref(f.val)
		msg := "must be true or false, got " + describe(n)
		if b, ok := boolish(n); ok {
			msg += fmt.Sprintf(": write use_volume: %t", b)
			if isString(n) {
				msg += " (no quotes)"
			}
		}
		c.problem("use_volume", n.Line, "%s", msg)
	}

	// revision: syntax always; required for Hugging Face with use_volume.
	rev, revLine, present, ok := c.str("revision")
	if present && ok && rev != "" {
		if msg := checkRevision(rev); msg != "" {
			c.problem("revision", revLine, "%s", msg)
		} else {
			e.Revision = rev
		}
	}
	if ok && rev == "" && e.Kind == KindHF && p.useVolumeSet && e.UseVolume {
		c.problem("revision", revLine, "required for Hugging Face entries with use_volume: true (use a commit sha, a branch or a tag)")
	}

	// volume_folder: required with use_volume: true, ignored with false.
	folder, folderLine, present, ok := c.str("volume_folder")
	switch {
	case p.useVolumeSet && !e.UseVolume:
	case !present && ok && p.useVolumeSet:
		c.problem("volume_folder", folderLine, "required with use_volume: true: the folder the files appear under (<mountpoint>/<volume_folder>)")
	case present && ok:
		if msg := checkFolder(folder); msg != "" {
			c.problem("volume_folder", folderLine, "%s", msg)
		} else if e.UseVolume {
			e.VolumeFolder, p.folderLine = folder, folderLine
		}
	}

	e.AllowPatterns = c.patterns("allow_patterns")
	e.IgnorePatterns = c.patterns("ignore_patterns")

	if name, line, present, ok := c.str("runtime_secret_name"); present && ok && name != "" {
		if msg := checkSecretName(name); msg != "" {
			c.problem("runtime_secret_name", line, "%s", msg)
		} else {
			e.SecretName = name
		}
	}

	p.Entry = e
	v.parsed = append(v.parsed, p)
}

// kindMatches reports a kind that disagrees with the repo_id's scheme.
func (c *entryCheck) kindMatches(kind, repoKind, repo string, line int) {
	switch {
	case repoKind == "" && kind != KindHF:
		c.problem("kind", line, "%s needs repo_id %s://bucket/prefix, got %q", kind, schemeOf(kind), repo)
	case repoKind != "" && kind != repoKind:
		c.problem("kind", line, "%s does not match repo_id %q: use kind: %s, or drop kind (it is inferred from %s://)",
			kind, repo, repoKind, schemeOf(repoKind))
	}
}

func schemeOf(kind string) string {
	if kind == KindGCS {
		return "gs"
	}
	return kind
}

func closestKind(k string) string {
	l := strings.ToLower(strings.TrimSpace(k))
	switch l {
	case "hf", "huggingface", "hugging_face", "hub":
		return KindHF
	case "s3", "aws":
		return KindS3
	case "gcs", "gs", "gcp", "google":
		return KindGCS
	}
	return ""
}

// lineOf is the line of key's value, or of the entry when the key is absent.
func (c *entryCheck) lineOf(key string) int {
	if f, ok := c.f.byName[key]; ok {
		return deref(f.val).Line
	}
	return c.line
}

// str returns key's string value. present is false when the key is absent
// or null; ok is false, after a problem is added, when it holds no string.
func (c *entryCheck) str(key string) (s string, line int, present, ok bool) {
	f, found := c.f.byName[key]
	if !found {
		return "", c.line, false, true
	}
	n := deref(f.val)
	if isNull(n) {
		return "", f.key.Line, false, true
	}
	if !isString(n) {
		msg := "must be a string, got " + describe(n)
		if n.Kind == yaml.ScalarNode {
			msg += fmt.Sprintf(`: quote it (%s: "%s")`, key, n.Value)
		}
		c.problem(key, n.Line, "%s", msg)
		return "", n.Line, true, false
	}
	return n.Value, n.Line, true, true
}

// patterns reads a list of strings; nil when absent, null or empty.
func (c *entryCheck) patterns(key string) []string {
	f, found := c.f.byName[key]
	if !found || isNull(deref(f.val)) {
		return nil
	}
	n := deref(f.val)
	switch {
	case isString(n):
		c.problem(key, n.Line, "must be a list of strings, not a single string: write %s: [%q]", key, n.Value)
		return nil
	case n.Kind != yaml.SequenceNode:
		c.problem(key, n.Line, "must be a list of strings, got %s", describe(n))
		return nil
	}
	var out []string
	for j, item := range n.Content {
		it := deref(item)
		if !isString(it) {
			msg := "must be a string, got " + describe(it)
			if it.Kind == yaml.ScalarNode && !isNull(it) {
				msg += fmt.Sprintf(`: quote it ("%s")`, it.Value)
			}
			c.problem(fmt.Sprintf("%s[%d]", key, j), it.Line, "%s", msg)
			continue
		}
		out = append(out, it.Value)
	}
	return out
}

// parseBool reads a YAML boolean: true/false, and the unquoted YAML 1.1
// spellings (yes/no/on/off) that PyYAML, and so Truss, reads as booleans.
func parseBool(n *yaml.Node) (bool, bool) {
	if n.Kind != yaml.ScalarNode {
		return false, false
	}
	switch n.ShortTag() {
	case "!!bool":
	case "!!str":
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
			return false, false
		}
	default:
		return false, false
	}
	switch n.Value {
	case "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON":
		return true, true
	case "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF":
		return false, true
	}
	return false, false
}

// boolish guesses the boolean a wrongly typed value meant, for the hint.
func boolish(n *yaml.Node) (bool, bool) {
	if n.Kind != yaml.ScalarNode {
		return false, false
	}
	switch strings.ToLower(strings.TrimSpace(n.Value)) {
	case "true", "yes", "on", "y", "1":
		return true, true
	case "false", "no", "off", "n", "0":
		return false, true
	}
	return false, false
}

// checkRepoID returns the kind the repo_id's scheme implies ("" for the
// Hugging Face form) and what is wrong with it ("" when nothing).
func checkRepoID(id string) (kind, msg string) {
	const forms = "org/name for Hugging Face, s3://bucket/prefix or gs://bucket/prefix"
	if id == "" {
		return "", "must not be empty: " + forms
	}
	if strings.ContainsFunc(id, unicode.IsSpace) {
		return "", fmt.Sprintf("%q must not contain spaces", id)
	}
	if scheme, rest, ok := strings.Cut(id, "://"); ok {
		switch strings.ToLower(scheme) {
		case "s3":
			kind = KindS3
		case "gs":
			kind = KindGCS
		case "gcs":
			return "", fmt.Sprintf("%q: write gs://%s for Google Cloud Storage", id, rest)
		case "azure", "az", "abfs", "abfss", "wasb", "wasbs":
			return KindAzure, ""
		case "http", "https":
			if r, ok := strings.CutPrefix(rest, "huggingface.co/"); ok {
				if parts := strings.SplitN(r, "/", 3); len(parts) >= 2 {
					return "", fmt.Sprintf("%q is a URL: write the repo id, %s/%s", id, parts[0], parts[1])
				}
			}
			return "", fmt.Sprintf("%q is a URL: use %s", id, forms)
		default:
			return "", fmt.Sprintf("unsupported scheme %q: use %s", scheme+"://", forms)
		}
		if scheme != strings.ToLower(scheme) {
			return "", fmt.Sprintf("%q: write the scheme in lower case (%s://)", id, strings.ToLower(scheme))
		}
		if bucket, _, _ := strings.Cut(rest, "/"); bucket == "" {
			return "", fmt.Sprintf("%q has no bucket: write %s://bucket/prefix", id, scheme)
		}
		return kind, ""
	}
	org, name, _ := strings.Cut(id, "/")
	switch {
	case !strings.Contains(id, "/"):
		return "", fmt.Sprintf("%q is not org/name: Hugging Face repo ids need the owner (e.g. openai-community/gpt2); object stores use s3://bucket/prefix or gs://bucket/prefix", id)
	case strings.Contains(name, "/"):
		return "", fmt.Sprintf("%q is not org/name: it has more than one '/' (choose files inside a repo with allow_patterns)", id)
	case org == "" || name == "":
		return "", fmt.Sprintf("%q is not org/name: both parts must be non-empty", id)
	}
	for _, r := range id {
		switch {
		case r == '@' || r == ':':
			return "", fmt.Sprintf("%q has %q: write the repo id as org/name and put the branch or commit under revision", id, r)
		case r != '/' && !isWordRune(r) && r != '-' && r != '.':
			return "", fmt.Sprintf("%q has %q: Hugging Face repo ids use only letters, digits, '-', '_' and '.'", id, r)
		}
	}
	if strings.Contains(id, "--") || strings.Contains(id, "..") {
		return "", fmt.Sprintf("%q: Hugging Face repo ids cannot contain \"--\" or \"..\"", id)
	}
	for _, part := range []string{org, name} {
		if !isWordRune(rune(part[0])) || !isWordRune(rune(part[len(part)-1])) {
			return "", fmt.Sprintf("%q: each part of org/name must start and end with a letter, digit or '_'", id)
		}
	}
	if len(name) > 96 {
		return "", fmt.Sprintf("%q: a Hugging Face repo name has at most 96 characters", id)
	}
	return "", ""
}

func isWordRune(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_'
}

// checkRevision returns what is wrong with a non-empty revision, or "".
// It applies git's ref-name rules, which the Hub enforces too.
func checkRevision(rev string) string {
	const use = "use a commit sha, a branch or a tag"
	if len([]rune(rev)) == 1 {
		return fmt.Sprintf("%q is 1 character long, which is not a valid revision: %s", rev, use)
	}
	if IsCommit(rev) {
		return ""
	}
	if len(rev) == 40 && IsCommit(strings.ToLower(rev)) {
		return fmt.Sprintf("%q: write the commit sha in lower case", rev)
	}
	if n, ok := strings.CutPrefix(rev, "refs/pr/"); ok {
		if n == "" || strings.Trim(n, "0123456789") != "" {
			return fmt.Sprintf("%q: a pull-request ref is refs/pr/<number>, e.g. refs/pr/1", rev)
		}
		return ""
	}
	for _, r := range rev {
		if r <= ' ' || r == 0x7f || unicode.IsSpace(r) {
			return fmt.Sprintf("%q must not contain spaces or control characters: %s", rev, use)
		}
		if strings.ContainsRune(`~^:?*[\`, r) {
			return fmt.Sprintf("%q must not contain %q: %s", rev, r, use)
		}
	}
	switch {
	case strings.Contains(rev, ".."), strings.Contains(rev, "@{"), rev == "@",
		strings.HasPrefix(rev, "/"), strings.HasSuffix(rev, "/"), strings.Contains(rev, "//"),
		strings.HasSuffix(rev, "."), strings.HasSuffix(rev, ".lock"), strings.HasPrefix(rev, "-"):
		return fmt.Sprintf("%q is not a valid git ref name: %s", rev, use)
	}
	return ""
}

// checkFolder returns what is wrong with a volume_folder, or "".
func checkFolder(f string) string {
	switch {
	case f == "":
		return "must not be empty: the folder the files appear under (<mountpoint>/<volume_folder>)"
	case f == "." || f == "..":
		return fmt.Sprintf("%q is not a folder name: write one name, e.g. my-llama", f)
	case strings.ContainsAny(f, `/\`):
		return fmt.Sprintf("%q must be one folder name, without '/' or '\\' (it appears as <mountpoint>/<volume_folder>)", f)
	case strings.ContainsRune(f, 0):
		return fmt.Sprintf("%q must not contain a NUL byte", f)
	case len(f) > 255:
		return "is longer than 255 bytes, the limit for a file name"
	}
	return ""
}

// checkSecretName returns what is wrong with a secret name, or "": it names
// a file in the secrets folder and an environment variable.
func checkSecretName(name string) string {
	switch {
	case name == "":
		return "must not be empty"
	case name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00"):
		return fmt.Sprintf("%q must be a secret name (a file in the secrets folder), not a path", name)
	case strings.ContainsFunc(name, unicode.IsSpace) || strings.Contains(name, "="):
		return fmt.Sprintf("%q must not contain spaces or '='", name)
	}
	return ""
}
