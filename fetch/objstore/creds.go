package objstore

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
)

// FindCredential looks for a store's credential document in the order of
// the contract:
//
//  1. the secret called secretName (TRUSS_SECRET_<name>, then <secrets
//     dir>/<name>). The Truss default name is hf_access_token, which
//     usually holds a Hugging Face token: under that default name the
//     secret is used only when ours says it is meant for this store, and
//     skipped otherwise. A secret named explicitly is always used.
//  2. <dataDir>/<file>.
//
// The document found is parsed with where it came from ("secret aws (env
// TRUSS_SECRET_aws)", "file data/s3_credentials.json"); nil, nil when
// neither exists. Reading errors wrap fetch.ErrBadCredentials and name the
// secret or path (what names the credential, e.g. "S3 credentials"), never
// the content.
func FindCredential[T any](secrets config.Secrets, secretName, dataDir, file, what string,
	ours func([]byte) bool, parse func(data []byte, from string) (*T, error)) (*T, error) {
	data, from, err := findCredential(secrets, secretName, dataDir, file, what, ours)
	if err != nil || data == nil {
		return nil, err
	}
	return parse(data, from)
}

// BadCredentials is an unusable credential: the message names where it
// came from and the field at fault, never the content.
func BadCredentials(format string, args ...any) error {
	return fetch.NewClassifiedError([]error{fetch.ErrBadCredentials}, nil, format, args...)
}

// CredentialObject decodes a credential document that must be a JSON
// object; from names it and expected says what it should be, for errors.
// The decoder's own text can quote a character of the input, so only the
// offset of a syntax error is told.
func CredentialObject(data []byte, from, expected string) (map[string]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, BadCredentials("%s: not valid JSON (syntax error at byte %d); expected %s", from, se.Offset, expected)
		}
		return nil, BadCredentials("%s: not a JSON object; expected %s", from, expected)
	}
	return obj, nil
}

func findCredential(secrets config.Secrets, secretName, dataDir, file, what string, ours func([]byte) bool) (data []byte, from string, err error) {
	explicit := secretName != "" && secretName != config.DefaultSecretName
	secretName = Or(secretName, config.DefaultSecretName)
	v, from, ok, err := secrets.Lookup(secretName)
	if err != nil {
		return nil, "", fetch.NewClassifiedError([]error{fetch.ErrBadCredentials, err}, nil, "reading %s: %s", what, err)
	}
	if ok && (explicit || ours([]byte(v))) {
		return []byte(v), "secret " + secretName + " (" + from + ")", nil
	}
	path := filepath.Join(dataDir, file)
	data, err = os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, "", nil
	case err != nil: // *PathError names the path and the reason only
		return nil, "", fetch.NewClassifiedError([]error{fetch.ErrBadCredentials, err}, nil, "reading %s: %s", what, err)
	}
	return data, "file " + path, nil
}
