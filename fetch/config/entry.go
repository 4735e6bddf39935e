// Package config reads the model_cache list of a Truss config.yaml and the
// secrets that go with it. It validates exactly as the Truss contract says and
// reports every problem at once, each naming the entry and the key.
package config

import "fmt"

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
func (e Entry) Name() string { return fmt.Sprintf("model_cache[%d] (%s)", e.Index, e.RepoID) }
