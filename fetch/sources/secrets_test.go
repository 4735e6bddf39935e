package sources

import (
	"encoding/json"
	"encoding/pem"
	"slices"
	"strings"
	"testing"

	"github.com/weightfs/weightfs/fetch/config"
)

// Every credential a Source can send is returned for redaction, asked of
// the Sources themselves: the Hub token, S3's secret key and session token
// (static, or the default chain's from the environment), and the GCS
// service account's private key and its ID. Never the S3 access key ID,
// which only names the key, nor values too short to redact safely.
// Fails before this change: sources.Secrets did not exist (cmd switched on
// the kinds itself).
func TestSecretsAskTheSources(t *testing.T) {
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not really a key, but PEM")}))
	sa, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "p", "client_email": "a@p.iam.gserviceaccount.com",
		"private_key_id": "kid-0123456789", "private_key": pemKey})
	vars := map[string]string{
		"TRUSS_SECRET_hf_tok": "hf_token_value_123",
		"TRUSS_SECRET_aws":    `{"access_key_id":"AKIAEXAMPLEKEYID","secret_access_key":"s3-secret-key-value","session_token":"s3-session-token-value","region":"us-east-1"}`,
		"TRUSS_SECRET_gcs_sa": string(sa),
		"TRUSS_SECRET_short":  "tiny",
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "env-secret-access-key")
	t.Setenv("AWS_SESSION_TOKEN", "env-session-token")
	getenv := func(k string) string { return vars[k] }
	dir := t.TempDir()
	env := Env{Secrets: config.Secrets{Dir: dir, Getenv: getenv}, Getenv: getenv, DataDir: dir}
	entries := []config.Entry{
		{Index: 0, RepoID: "acme/llm", Kind: config.KindHF, VolumeFolder: "a", SecretName: "hf_tok"},
		{Index: 1, RepoID: "s3://b/p", Kind: config.KindS3, VolumeFolder: "b", SecretName: "aws"},
		{Index: 2, RepoID: "gs://b/p", Kind: config.KindGCS, VolumeFolder: "c", SecretName: "gcs_sa"},
		{Index: 3, RepoID: "s3://b/q", Kind: config.KindS3, VolumeFolder: "d", SecretName: "none_here"}, // default AWS chain
		{Index: 4, RepoID: "acme/tiny", Kind: config.KindHF, VolumeFolder: "e", SecretName: "short"},
	}
	got := Secrets(entries, env)
	want := []string{"hf_token_value_123", "s3-secret-key-value", "s3-session-token-value", pemKey, "kid-0123456789",
		"env-secret-access-key", "env-session-token"}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("Secrets lacks %q", strings.TrimSpace(w)[:min(12, len(w))])
		}
	}
	for _, g := range got {
		if g == "AKIAEXAMPLEKEYID" || g == "tiny" {
			t.Errorf("Secrets holds %q", g)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d values, want %d", len(got), len(want))
	}
}
