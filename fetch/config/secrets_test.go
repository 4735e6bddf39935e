package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakeEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLookup(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("hf_access_token", "  hf_file_token\n")
	write("empty", "\n \n")
	write("only_file", "file-value")
	cases := []struct {
		name  string
		env   map[string]string
		value string
		from  string
		ok    bool
	}{
		{"hf_access_token", map[string]string{"TRUSS_SECRET_hf_access_token": "hf_env_token\n"}, "hf_env_token", "env TRUSS_SECRET_hf_access_token", true},
		{"hf_access_token", nil, "hf_file_token", "file " + filepath.Join(dir, "hf_access_token"), true},
		{"hf_access_token", map[string]string{"TRUSS_SECRET_hf_access_token": "  "}, "hf_file_token", "file " + filepath.Join(dir, "hf_access_token"), true},
		{"only_file", nil, "file-value", "file " + filepath.Join(dir, "only_file"), true},
		{"empty", nil, "", "", false},
		{"absent", nil, "", "", false},
		{"absent", map[string]string{"HF_TOKEN": "x"}, "", "", false}, // HF_TOKEN is for HFToken only
	}
	for _, c := range cases {
		s := Secrets{Dir: dir, Getenv: fakeEnv(c.env)}
		value, from, ok, err := s.Lookup(c.name)
		if err != nil || value != c.value || from != c.from || ok != c.ok {
			t.Errorf("Lookup(%q) env %v = %q, %q, %v, %v; want %q, %q, %v", c.name, c.env, value, from, ok, err, c.value, c.from, c.ok)
		}
	}
}

func TestLookupErrors(t *testing.T) {
	dir := t.TempDir()
	s := Secrets{Dir: dir, Getenv: fakeEnv(nil)}
	for _, name := range []string{"", "../x", "a/b", ".."} {
		if _, _, ok, err := s.Lookup(name); ok || err == nil {
			t.Errorf("Lookup(%q) = ok %v, err %v; want an error", name, ok, err)
		}
	}
	// A folder where a file should be cannot be read: an error naming the path.
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, _, ok, err := s.Lookup("adir")
	if ok || err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "adir")) {
		t.Errorf("Lookup(adir) = ok %v, err %v", ok, err)
	}
	// Permission denied (skipped as root, who reads anything).
	if os.Geteuid() != 0 {
		p := filepath.Join(dir, "locked")
		if err := os.WriteFile(p, []byte("sekrit-value"), 0o000); err != nil {
			t.Fatal(err)
		}
		_, _, _, err := s.Lookup("locked")
		if err == nil || !strings.Contains(err.Error(), p) || strings.Contains(err.Error(), "sekrit") {
			t.Errorf("Lookup(locked) err = %v", err)
		}
	}
	// A secrets folder that does not exist means no secrets, not an error.
	s.Dir = filepath.Join(dir, "missing")
	if _, _, ok, err := s.Lookup("hf_access_token"); ok || err != nil {
		t.Errorf("missing dir: ok %v, err %v", ok, err)
	}
}

func TestSecretsDefaults(t *testing.T) {
	var s Secrets
	if s.dir() != "/secrets" {
		t.Errorf("default dir %q", s.dir())
	}
	t.Setenv("TRUSS_SECRET_weightfs_test_secret", "from-os-env")
	v, from, ok, err := s.Lookup("weightfs_test_secret")
	if v != "from-os-env" || from != "env TRUSS_SECRET_weightfs_test_secret" || !ok || err != nil {
		t.Errorf("zero Secrets Lookup = %q, %q, %v, %v", v, from, ok, err)
	}
}

func TestHFToken(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "my_token"), []byte("hf_from_file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hf_access_token"), []byte("hf_default_file"), 0o600); err != nil {
		t.Fatal(err)
	}
	both := map[string]string{"HF_TOKEN": "hf_env", "HUGGING_FACE_HUB_TOKEN": "hf_legacy"}
	cases := []struct {
		secret string
		env    map[string]string
		token  string
		from   string
	}{
		{"my_token", map[string]string{"TRUSS_SECRET_my_token": "hf_truss_env", "HF_TOKEN": "hf_env"}, "hf_truss_env", "env TRUSS_SECRET_my_token"},
		{"my_token", both, "hf_from_file", "file " + filepath.Join(dir, "my_token")},
		{"", nil, "hf_default_file", "file " + filepath.Join(dir, "hf_access_token")},
		{"other", both, "hf_env", "env HF_TOKEN"},
		{"other", map[string]string{"HF_TOKEN": "", "HUGGING_FACE_HUB_TOKEN": "hf_legacy"}, "hf_legacy", "env HUGGING_FACE_HUB_TOKEN"},
		{"other", nil, "", ""},
	}
	for _, c := range cases {
		s := Secrets{Dir: dir, Getenv: fakeEnv(c.env)}
		token, from, err := s.HFToken(c.secret)
		if err != nil || token != c.token || from != c.from {
			t.Errorf("HFToken(%q) env %v = %q, %q, %v; want %q, %q", c.secret, c.env, token, from, err, c.token, c.from)
		}
	}
	if _, _, err := (Secrets{Dir: dir, Getenv: fakeEnv(nil)}).HFToken("a/b"); err == nil {
		t.Errorf("HFToken with a path for a name: no error")
	}
}

func TestRedact(t *testing.T) {
	cases := []struct {
		in      string
		secrets []string
		want    string
	}{
		{"GET https://x/?token=hf_abc failed: hf_abc", []string{"hf_abc"}, "GET https://x/?token=[REDACTED] failed: [REDACTED]"},
		{"nothing here", []string{"hf_abc", ""}, "nothing here"},
		{"no secrets", nil, "no secrets"},
		{"empty secret changes nothing", []string{""}, "empty secret changes nothing"},
		{"key abc/def+g and escaped abc%2Fdef%2Bg", []string{"abc/def+g"}, "key [REDACTED] and escaped [REDACTED]"},
		{"longer wins: secret-long", []string{"secret", "secret-long"}, "longer wins: [REDACTED]"},
	}
	for _, c := range cases {
		if got := Redact(c.in, c.secrets...); got != c.want {
			t.Errorf("Redact(%q, %q) = %q, want %q", c.in, c.secrets, got, c.want)
		}
	}
}

func TestReadableByOthers(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		mode os.FileMode
		want bool
	}{{0o600, false}, {0o400, false}, {0o700, false}, {0o640, true}, {0o604, true}, {0o644, true}, {0o444, true}}
	for _, tc := range cases {
		p := filepath.Join(dir, tc.mode.String())
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		perm, got := ReadableByOthers(p)
		if got != tc.want || perm != tc.mode {
			t.Errorf("mode %04o: (%04o, %v), want (%04o, %v)", tc.mode, perm, got, tc.mode, tc.want)
		}
	}
	// A link is judged by its target (Kubernetes secret files are links).
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, os.FileMode(0o644).String()), link); err != nil {
		t.Fatal(err)
	}
	if _, ok := ReadableByOthers(link); !ok {
		t.Error("a link to a 0644 file is not reported")
	}
	for _, p := range []string{filepath.Join(dir, "missing"), dir} {
		if _, ok := ReadableByOthers(p); ok {
			t.Errorf("%s reported", p)
		}
	}
	if got := (Secrets{Dir: "/s"}).SecretPath(""); got != "/s/hf_access_token" {
		t.Errorf("SecretPath(\"\") = %s", got)
	}
}
