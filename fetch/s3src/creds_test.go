package s3src

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weightfs/weightfs/fetch/config"
)

func TestParseCredentials(t *testing.T) {
	cases := []struct {
		name, json string
		want       Credentials // From is "src"
		err        string      // substring of the error; "" means success
	}{
		{"secret spelling", `{"access_key_id":"` + testKeyID + `","secret_access_key":"` + testSecret + `","region":"eu-west-1","session_token":"tok"}`,
			Credentials{testKeyID, testSecret, "tok", "eu-west-1", "src"}, ""},
		{"data file spelling", `{"aws_access_key_id":"` + testKeyID + `","aws_secret_access_key":"` + testSecret + `","aws_region":"us-west-2","aws_session_token":null}`,
			Credentials{testKeyID, testSecret, "", "us-west-2", "src"}, ""},
		{"mixed, padded", ` {"access_key_id":" ` + testKeyID + ` ","aws_secret_access_key":"` + testSecret + `"} `,
			Credentials{testKeyID, testSecret, "", "", "src"}, ""},
		{"missing secret key", `{"access_key_id":"` + testKeyID + `"}`, Credentials{}, "src: field secret_access_key (or aws_secret_access_key) is missing"},
		{"missing key id", `{"aws_secret_access_key":"` + testSecret + `"}`, Credentials{}, "field access_key_id (or aws_access_key_id) is missing"},
		{"empty key id", `{"access_key_id":"","secret_access_key":"` + testSecret + `"}`, Credentials{}, "field access_key_id is empty"},
		{"number", `{"access_key_id":12345,"secret_access_key":"` + testSecret + `"}`, Credentials{}, "field access_key_id must be a string"},
		{"bad region", `{"access_key_id":"` + testKeyID + `","secret_access_key":"` + testSecret + `","region":"Mars Base"}`, Credentials{}, "field region"},
		{"whitespace inside", `{"access_key_id":"` + testKeyID + `","secret_access_key":"a b"}`, Credentials{}, "field secret_access_key contains whitespace"},
		{"syntax", `{"access_key_id":"` + testKeyID + `", secret_access_key:"` + testSecret + `"}`, Credentials{}, "src: not valid JSON (syntax error at byte"},
		{"not an object", `"` + testSecret + `"`, Credentials{}, "src: not a JSON object"},
		{"plain token", testSecret, Credentials{}, "src: not valid JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseCredentials([]byte(c.json), "src")
			if c.err == "" {
				if err != nil || *got != c.want {
					t.Fatalf("got %#v, %v", got, err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("got %v, want an ErrBadCredentials containing %q", err, c.err)
			}
			if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), testKeyID) ||
				strings.Contains(err.Error(), "Mars") {
				t.Errorf("error echoes a value: %v", err)
			}
		})
	}
}

func TestCredentialsNeverPrint(t *testing.T) {
	c := &Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret, SessionToken: "tok3n", From: "secret x (env TRUSS_SECRET_x)"}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{c, *c, Options{Credentials: c}} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, testSecret) || strings.Contains(out, testKeyID) || strings.Contains(out, "tok3n") {
				t.Errorf("%s of %T prints a credential: %s", verb, v, out)
			}
		}
	}
}

func TestFindCredentials(t *testing.T) {
	good := `{"access_key_id":"` + testKeyID + `","secret_access_key":"` + testSecret + `"}`
	old := `{"aws_access_key_id":"` + testKeyID + `","aws_secret_access_key":"` + testSecret + `","aws_region":"ap-south-1"}`
	cases := []struct {
		name       string
		secretName string
		env        map[string]string // TRUSS_SECRET_* and friends
		files      map[string]string // secrets dir
		data       string            // data/s3_credentials.json ("" = absent)
		wantFrom   string            // "" = nil credentials (default chain)
		wantRegion string
		err        string
	}{
		{"secret file", "aws_creds", nil, map[string]string{"aws_creds": good}, old, "secret aws_creds (file SECRETS/aws_creds)", "", ""},
		{"secret env wins", "aws_creds", map[string]string{"TRUSS_SECRET_aws_creds": old}, map[string]string{"aws_creds": good}, "",
			"secret aws_creds (env TRUSS_SECRET_aws_creds)", "ap-south-1", ""},
		{"default name holds an HF token: skipped", "", nil, map[string]string{"hf_access_token": "hf_abcdef"}, old, "file DATA/s3_credentials.json", "ap-south-1", ""},
		{"default name holds AWS JSON: used", "hf_access_token", nil, map[string]string{"hf_access_token": old}, "", "secret hf_access_token (file SECRETS/hf_access_token)", "ap-south-1", ""},
		{"default name, AWS JSON missing a field", "", nil, map[string]string{"hf_access_token": `{"aws_access_key_id":"` + testKeyID + `"}`}, "", "", "",
			"secret hf_access_token (file SECRETS/hf_access_token): field secret_access_key (or aws_secret_access_key) is missing"},
		{"explicit name not JSON", "aws_creds", nil, map[string]string{"aws_creds": testSecret}, old, "", "", "secret aws_creds (file SECRETS/aws_creds): not valid JSON"},
		{"absent secret: data file", "aws_creds", nil, nil, old, "file DATA/s3_credentials.json", "ap-south-1", ""},
		{"malformed data file", "aws_creds", nil, nil, `{"aws_access_key_id":"` + testKeyID + `","aws_secret_access_key":7}`, "", "",
			"file DATA/s3_credentials.json: field aws_secret_access_key must be a string"},
		{"nothing: default chain", "aws_creds", nil, nil, "", "", "", ""},
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
				if err := os.WriteFile(filepath.Join(dataDir, CredentialsFile), []byte(c.data), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			secrets := config.Secrets{Dir: secretsDir, Getenv: func(k string) string { return c.env[k] }}
			got, err := FindCredentials(secrets, c.secretName, dataDir)
			fix := strings.NewReplacer("SECRETS", secretsDir, "DATA", dataDir)
			if c.err != "" {
				if !errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), fix.Replace(c.err)) {
					t.Fatalf("got %v, want %q", err, fix.Replace(c.err))
				}
				if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), testKeyID) {
					t.Errorf("error echoes a value: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.wantFrom == "" {
				if got != nil {
					t.Fatalf("got %v, want none", got)
				}
				return
			}
			if got == nil || got.From != fix.Replace(c.wantFrom) || got.Region != c.wantRegion ||
				got.AccessKeyID != testKeyID || got.SecretAccessKey != testSecret {
				t.Fatalf("got %#v (region %q), want from %q", got, got.Region, fix.Replace(c.wantFrom))
			}
		})
	}
}

func TestOptionsFromEnv(t *testing.T) {
	e := entry("s3://b/p", nil, nil)
	env := map[string]string{
		"AWS_ENDPOINT_URL":    "http://generic:9000",
		"AWS_ENDPOINT_URL_S3": "http://minio:9000/",
		"AWS_DEFAULT_REGION":  "eu-north-1",
	}
	secrets := config.Secrets{Dir: t.TempDir(), Getenv: func(string) string { return "" }}
	o, err := OptionsFromEnv(e, secrets, t.TempDir(), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.Endpoint != "http://minio:9000/" || o.EndpointFrom != "AWS_ENDPOINT_URL_S3" || o.Region != "eu-north-1" ||
		o.RegionFrom != "AWS_DEFAULT_REGION" || o.Credentials != nil {
		t.Errorf("got %+v", o)
	}
	env["AWS_REGION"] = "us-west-1"
	delete(env, "AWS_ENDPOINT_URL_S3")
	o, _ = OptionsFromEnv(e, secrets, t.TempDir(), func(k string) string { return env[k] })
	if o.Endpoint != "http://generic:9000" || o.Region != "us-west-1" {
		t.Errorf("got %+v", o)
	}
	env["AWS_ENDPOINT_URL"] = "minio:9000"
	if _, err := OptionsFromEnv(e, secrets, t.TempDir(), func(k string) string { return env[k] }); err == nil ||
		!strings.Contains(err.Error(), "model_cache[0] (s3://b/p): AWS_ENDPOINT_URL: endpoint is not an http(s) URL") {
		t.Errorf("bad endpoint: %v", err)
	}
}
