package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultSecretsDir is where Truss mounts secrets, one file per secret.
const DefaultSecretsDir = "/secrets"

// secretEnvPrefix names a secret's environment variable: TRUSS_SECRET_<name>.
const secretEnvPrefix = "TRUSS_SECRET_"

// Secrets finds secrets the way Truss hands them to a model: an environment
// variable first, then a file in the secrets folder. The zero value is ready
// to use.
type Secrets struct {
	Dir    string              // secrets folder; default "/secrets" (the --secrets-dir flag)
	Getenv func(string) string // environment lookup; default os.Getenv (tests inject)
}

func (s Secrets) dir() string {
	if s.Dir == "" {
		return DefaultSecretsDir
	}
	return s.Dir
}

func (s Secrets) getenv(key string) string {
	if s.Getenv == nil {
		return os.Getenv(key)
	}
	return s.Getenv(key)
}

// Lookup returns the secret called name: the environment variable
// TRUSS_SECRET_<name>, then the file <Dir>/<name>, each trimmed of
// surrounding whitespace; an empty value counts as absent. from says where
// the value came from without showing it (`env TRUSS_SECRET_hf_access_token`,
// `file /secrets/hf_access_token`). err is set only when the file exists but
// cannot be read, or name is not a valid secret name; it names the path,
// never the content.
func (s Secrets) Lookup(name string) (value, from string, ok bool, err error) {
	if msg := checkSecretName(name); msg != "" {
		return "", "", false, fmt.Errorf("secret name %s", msg)
	}
	env := secretEnvPrefix + name
	if v := strings.TrimSpace(s.getenv(env)); v != "" {
		return v, "env " + env, true, nil
	}
	path := filepath.Join(s.dir(), name)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", "", false, nil
	case err != nil:
		// *PathError text is "open <path>: <reason>": it holds no content.
		return "", "", false, fmt.Errorf("secret %s: %w", name, err)
	}
	if v := strings.TrimSpace(string(data)); v != "" {
		return v, "file " + path, true, nil
	}
	return "", "", false, nil
}

// HFToken returns the Hugging Face token: the secret called name (default
// hf_access_token) as Lookup finds it, then the environment variables
// HF_TOKEN and HUGGING_FACE_HUB_TOKEN. No token is not an error (public repos
// need none): token and from are then "".
func (s Secrets) HFToken(name string) (token, from string, err error) {
	if name == "" {
		name = DefaultSecretName
	}
	v, from, ok, err := s.Lookup(name)
	if err != nil {
		return "", "", err
	}
	if ok {
		return v, from, nil
	}
	for _, env := range []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} {
		if v := strings.TrimSpace(s.getenv(env)); v != "" {
			return v, "env " + env, nil
		}
	}
	return "", "", nil
}

// ReadableByOthers reports whether the file at path (links followed) may be
// read by users other than its owner: a group or other read bit is set. It
// returns the file's permission bits for the message; a file that does not
// exist or cannot be looked at is not reported (reading it will say why).
// It never opens the file.
func ReadableByOthers(path string) (fs.FileMode, bool) {
	info, err := os.Stat(path)
	if err != nil || !info.Mode().IsRegular() {
		return 0, false
	}
	perm := info.Mode().Perm()
	return perm, perm&0o044 != 0
}

// SecretPath is the file Lookup reads for the secret called name ("" is
// the default name).
func (s Secrets) SecretPath(name string) string {
	if name == "" {
		name = DefaultSecretName
	}
	return filepath.Join(s.dir(), name)
}

// Redacted replaces a secret in text.
const Redacted = "[REDACTED]"

// Redact replaces every occurrence of the given secret values in s, also in
// their URL-escaped forms (a secret access key holds '/' and '+'), with
// "[REDACTED]". Empty secrets are skipped. Use it on any error text that may
// have passed near a credential, such as an origin's response body.
func Redact(s string, secrets ...string) string {
	var olds []string
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		olds = append(olds, sec)
		for _, esc := range []string{url.QueryEscape(sec), url.PathEscape(sec)} {
			if esc != sec {
				olds = append(olds, esc)
			}
		}
	}
	if len(olds) == 0 {
		return s
	}
	// Longest first, so a secret that contains another is replaced whole.
	sort.SliceStable(olds, func(i, j int) bool { return len(olds[i]) > len(olds[j]) })
	pairs := make([]string, 0, 2*len(olds))
	for _, o := range olds {
		pairs = append(pairs, o, Redacted)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}
