package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/sources"
)

// Fails before this change: credential files anyone on the host could read
// were used without a word.
func TestWarnsOfCredentialFilesOthersCanRead(t *testing.T) {
	dir := t.TempDir()
	secrets, data := filepath.Join(dir, "secrets"), filepath.Join(dir, "data")
	for _, d := range []string{secrets, data} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	const content = "hf_SECRETVALUEdonotprint"
	files := map[string]os.FileMode{
		filepath.Join(secrets, "hf_access_token"):       0o644, // Kubernetes' default for secret volumes
		filepath.Join(secrets, "gcs_key"):               0o600,
		filepath.Join(data, "s3_credentials.json"):      0o640, // group-readable is exposed too
		filepath.Join(data, "service_account.json"):     0o400,
		filepath.Join(dir, "adc.json"):                  0o604,
		filepath.Join(secrets, "unrelated_other_token"): 0o644, // named by no entry: not ours to judge
	}
	for p, mode := range files {
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode) // past the umask
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(dir, "adc.json"))
	entries := []config.Entry{
		{Kind: config.KindHF, RepoID: "acme/gated", SecretName: "hf_access_token"},
		{Kind: config.KindS3, RepoID: "s3://b/m", SecretName: "hf_access_token"},
		{Kind: config.KindGCS, RepoID: "gs://b/m", SecretName: "gcs_key"},
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	warnExposedCredentials(log, entries, sources.Env{Secrets: config.Secrets{Dir: secrets}, DataDir: data})
	out := buf.String()
	want := map[string]string{
		filepath.Join(secrets, "hf_access_token"):  "0644",
		filepath.Join(data, "s3_credentials.json"): "0640",
		filepath.Join(dir, "adc.json"):             "0604",
	}
	if n := strings.Count(out, "readable by other users"); n != len(want) {
		t.Errorf("%d warnings, want %d:\n%s", n, len(want), out)
	}
	for p, mode := range want {
		if !strings.Contains(out, "path="+p+" mode="+mode) {
			t.Errorf("no warning naming %s (mode %s):\n%s", p, mode, out)
		}
	}
	for _, quiet := range []string{"gcs_key", "service_account.json", "unrelated_other_token", content} {
		if strings.Contains(out, quiet) {
			t.Errorf("output mentions %q:\n%s", quiet, out)
		}
	}
}
