package gcssrc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weightfs/weightfs/fetch/config"
)

func TestParseServiceAccount(t *testing.T) {
	good := serviceAccountJSON(t, "https://oauth2.googleapis.com/token")
	with := func(k string, v any) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(good), &m); err != nil {
			t.Fatal(err)
		}
		m[k] = v
		b, _ := json.Marshal(m)
		return string(b)
	}
	cases := []struct{ name, json, err string }{
		{"good", good, ""},
		{"no client_email", serviceAccountJSON(t, "x", "client_email"), "src: field client_email is missing"},
		{"no private_key", serviceAccountJSON(t, "x", "private_key"), "src: field private_key is missing"},
		{"no type", serviceAccountJSON(t, "x", "type"), "src: field type is missing"},
		{"user credentials", with("type", "authorized_user"), `src: field type must be "service_account"`},
		{"key not PEM", with("private_key", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"), "src: field private_key is not a PEM private key"},
		{"key a number", with("private_key", 42), "src: field private_key must be a string"},
		{"empty email", with("client_email", " "), "src: field client_email is empty"},
		{"syntax", `{"type":"service_account",`, "src: not valid JSON (syntax error at byte"},
		{"array", `["service_account"]`, "src: not a JSON object"},
		{"token", "ya29.secret-token-value", "src: not valid JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sa, err := ParseServiceAccount([]byte(c.json), "src")
			if c.err == "" {
				if err != nil || sa.From != "src" || string(sa.JSON) != c.json {
					t.Fatalf("got %v, %v", sa, err)
				}
				return
			}
			if !errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("got %v, want %q", err, c.err)
			}
			for _, leak := range []string{"MIIE", "ya29", "authorized_user", "PRIVATE KEY"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error echoes content %q: %v", leak, err)
				}
			}
		})
	}
}

func TestServiceAccountNeverPrints(t *testing.T) {
	sa := &ServiceAccount{JSON: []byte(serviceAccountJSON(t, "x")), From: "file data/service_account.json"}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{sa, *sa, Options{ServiceAccount: sa}} {
			if out := fmt.Sprintf(verb, v); strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, "kid0123456789") {
				t.Errorf("%s of %T prints the key: %s", verb, v, out)
			}
		}
	}
}

func TestFindServiceAccount(t *testing.T) {
	good := serviceAccountJSON(t, "x")
	cases := []struct {
		name       string
		secretName string
		env        map[string]string
		files      map[string]string // secrets dir
		data       string            // data/service_account.json ("" = absent)
		wantFrom   string            // "" = nil (ADC, then anonymous)
		err        string
	}{
		{"secret file", "gcs_sa", nil, map[string]string{"gcs_sa": good}, good, "secret gcs_sa (file SECRETS/gcs_sa)", ""},
		{"secret env", "gcs_sa", map[string]string{"TRUSS_SECRET_gcs_sa": good}, nil, "", "secret gcs_sa (env TRUSS_SECRET_gcs_sa)", ""},
		{"default name holds an HF token: skipped", "", nil, map[string]string{"hf_access_token": "hf_abc"}, good, "file DATA/service_account.json", ""},
		{"default name holds a key: used", "", nil, map[string]string{"hf_access_token": good}, "", "secret hf_access_token (file SECRETS/hf_access_token)", ""},
		{"explicit name, not a key", "gcs_sa", nil, map[string]string{"gcs_sa": `{"type":"authorized_user"}`}, good, "",
			`secret gcs_sa (file SECRETS/gcs_sa): field type must be "service_account"`},
		{"data file malformed", "gcs_sa", nil, nil, serviceAccountJSON(t, "x", "private_key"), "", "file DATA/service_account.json: field private_key is missing"},
		{"nothing", "gcs_sa", nil, nil, "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			secretsDir, dataDir := t.TempDir(), t.TempDir()
			for n, v := range c.files {
				if err := os.WriteFile(filepath.Join(secretsDir, n), []byte(v), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if c.data != "" {
				if err := os.WriteFile(filepath.Join(dataDir, ServiceAccountFile), []byte(c.data), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			fix := strings.NewReplacer("SECRETS", secretsDir, "DATA", dataDir)
			sa, err := FindServiceAccount(config.Secrets{Dir: secretsDir, Getenv: func(k string) string { return c.env[k] }}, c.secretName, dataDir)
			switch {
			case c.err != "":
				if !errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), fix.Replace(c.err)) {
					t.Fatalf("got %v, want %q", err, fix.Replace(c.err))
				}
			case err != nil:
				t.Fatal(err)
			case c.wantFrom == "":
				if sa != nil {
					t.Fatalf("got %v, want none", sa)
				}
			case sa == nil || sa.From != fix.Replace(c.wantFrom):
				t.Fatalf("got %v, want from %q", sa, fix.Replace(c.wantFrom))
			}
		})
	}
}

func TestOptionsFromEnv(t *testing.T) {
	e := entry("gs://b/p", nil, nil)
	secrets := config.Secrets{Dir: t.TempDir(), Getenv: func(string) string { return "" }}
	for _, c := range []struct{ env, endpoint, err string }{
		{"", "", ""},
		{"127.0.0.1:4443", "http://127.0.0.1:4443/storage/v1/", ""},
		{"https://gcs.local:8443/", "https://gcs.local:8443/storage/v1/", ""},
		{"ftp://x", "", "model_cache[1] (gs://b/p): STORAGE_EMULATOR_HOST: not a host:port or an http(s) URL"},
	} {
		o, err := OptionsFromEnv(e, secrets, t.TempDir(), func(k string) string {
			if k == EmulatorEnv {
				return c.env
			}
			return ""
		})
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("%q: got %v, want %q", c.env, err, c.err)
			}
			continue
		}
		if err != nil || o.Emulator != c.env {
			t.Errorf("%q: got %+v, %v", c.env, o, err)
		}
		if c.endpoint != "" {
			if ep, _ := emulatorEndpoint(o.Emulator); ep != c.endpoint {
				t.Errorf("%q: endpoint %q, want %q", c.env, ep, c.endpoint)
			}
		}
	}
}
