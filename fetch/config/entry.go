// Package config reads the model_cache list of a Truss config.yaml and the
// secrets that go with it. It validates exactly as the Truss contract says and
// reports every problem at once, each naming the entry, the key and the line.
// It also owns the file-selection rules (allow_patterns / ignore_patterns with
// the Hugging Face client's fnmatch semantics).
//
// It must not talk to the network or to any origin, and it never logs: a
// secret's value is returned to the caller and appears in no error text.
package config

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Kinds of origin.
const (
	KindHF    = "hf"
	KindS3    = "s3"
	KindGCS   = "gcs"
	KindAzure = "azure" // accepted by Truss; rejected here with a clear error
)

// DefaultSecretName is the Truss default for runtime_secret_name.
const DefaultSecretName = "hf_access_token"

// Entry is one validated model_cache item, defaults applied.
type Entry struct {
	Index          int      // position in the model_cache list, for messages
	RepoID         string   // org/name, s3://bucket/prefix or gs://bucket/prefix
	Revision       string   // branch, tag, refs/pr/N or commit; "" only where allowed
	UseVolume      bool     // true: served under <mountpoint>/<VolumeFolder>
	VolumeFolder   string   // one path segment; "" when UseVolume is false
	AllowPatterns  []string // keep files matching any (empty: keep all)
	IgnorePatterns []string // drop files matching any (wins over allow)
	Kind           string   // hf | s3 | gcs (inferred from the scheme when absent)
	SecretName     string   // runtime_secret_name; default hf_access_token
}

// Name identifies the entry in messages: `model_cache[2] (acme/llama)`.
func (e Entry) Name() string {
	if e.RepoID == "" {
		return fmt.Sprintf("model_cache[%d]", e.Index)
	}
	return fmt.Sprintf("model_cache[%d] (%s)", e.Index, e.RepoID)
}

// Bucket is the bucket of an s3:// or gs:// entry, "" for Hugging Face.
func (e Entry) Bucket() string {
	b, _, _ := splitObjectURL(e.RepoID)
	return b
}

// Prefix is the object prefix of an s3:// or gs:// entry, as written but
// without leading '/' (may be ""); "" for Hugging Face. A prefix written
// without a trailing '/' is kept that way: "models/llama" also covers
// "models/llama2/..." at the origin, exactly as a plain prefix listing does.
func (e Entry) Prefix() string {
	_, p, _ := splitObjectURL(e.RepoID)
	return p
}

// Wants reports whether the file at path (relative to the repo or prefix,
// '/'-separated) is selected by the entry's allow and ignore patterns.
func (e Entry) Wants(path string) bool { return Match(path, e.AllowPatterns, e.IgnorePatterns) }

// Key is a stable canonical string of everything that determines the
// entry's listing: kind, repo_id, revision, the patterns in their order,
// use_volume and volume_folder. It names the persisted manifest, so any
// change to these keys makes a new one. Index and SecretName are left out: the
// same repo moved in the list, or read with another token, lists the same.
func (e Entry) Key() string {
	kind := e.Kind
	if kind == "" {
		kind = KindHF
	}
	k := struct {
		Kind         string   `json:"kind"`
		RepoID       string   `json:"repo_id"`
		Revision     string   `json:"revision"`
		Allow        []string `json:"allow_patterns"`
		Ignore       []string `json:"ignore_patterns"`
		UseVolume    bool     `json:"use_volume"`
		VolumeFolder string   `json:"volume_folder"`
	}{kind, e.RepoID, e.Revision, nonNil(e.AllowPatterns), nonNil(e.IgnorePatterns), e.UseVolume, e.VolumeFolder}
	b, err := json.Marshal(k)
	if err != nil { // strings, bools and string slices always marshal
		panic(err)
	}
	return string(b)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// splitObjectURL splits s3://bucket/prefix or gs://bucket/prefix.
func splitObjectURL(repo string) (bucket, prefix string, ok bool) {
	for _, scheme := range []string{"s3://", "gs://"} {
		if rest, found := strings.CutPrefix(repo, scheme); found {
			b, p, _ := strings.Cut(rest, "/")
			return b, strings.TrimLeft(p, "/"), true
		}
	}
	return "", "", false
}

// IsCommit reports whether rev is a full git commit sha: 40 lowercase hex
// digits, the form the Hub serves and pins.
func IsCommit(rev string) bool {
	if len(rev) != 40 {
		return false
	}
	for i := 0; i < len(rev); i++ {
		c := rev[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Warnings returns one line for each entry whose served content is not pinned
// by the config: a Hugging Face revision that is a branch, tag or PR ref (or
// absent), and a revision given to an object-store entry, where it means
// nothing. Each line starts with the entry's Name.
func Warnings(entries []Entry) []string {
	var out []string
	for _, e := range entries {
		switch {
		case e.Kind != KindHF && e.Kind != "":
			if e.Revision != "" {
				out = append(out, fmt.Sprintf("%s revision %q is ignored: %s entries have no revisions; the objects are listed once at mount and that listing is served",
					e.Name(), e.Revision, e.Kind))
			}
		case e.Revision == "":
			out = append(out, fmt.Sprintf("%s has no revision: the default branch (main) is resolved to a commit once at mount and that commit is served; pin a commit sha for reproducible deploys", e.Name()))
		case IsCommit(e.Revision):
		case strings.HasPrefix(e.Revision, "refs/pr/"):
			out = append(out, fmt.Sprintf("%s revision %q is a pull-request ref: it is resolved to a commit once at mount and that commit is served; pin a commit sha for reproducible deploys", e.Name(), e.Revision))
		default:
			out = append(out, fmt.Sprintf("%s revision %q is a branch or tag: it is resolved to a commit once at mount and that commit is served; pin a commit sha for reproducible deploys", e.Name(), e.Revision))
		}
	}
	return out
}
