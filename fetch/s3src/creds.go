package s3src

import (
	"encoding/json"
	"regexp"
	"strings"

	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/objstore"
)

// CredentialsFile is the older spelling's file name inside the Truss data
// folder: <data dir>/s3_credentials.json.
const CredentialsFile = "s3_credentials.json"

// DefaultDataDir is the data folder when none is given (relative to the
// working directory; the CLI makes it relative to the config file).
const DefaultDataDir = "data"

// Credentials are static AWS keys from a secret or a credentials file. They
// print as where they came from, never as their values (%v, %+v and %#v
// alike), so a stray log line cannot leak them.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string // optional
	Region          string // optional; wins over AWS_REGION
	// From names the origin for messages, e.g.
	// "secret aws_creds (file /secrets/aws_creds)" or "file data/s3_credentials.json".
	From string
}

func (c Credentials) String() string   { return "AWS credentials from " + c.From }
func (c Credentials) GoString() string { return c.String() }

// credFields lists, for each logical field, the accepted JSON keys: the
// secret spelling first, then the older data/s3_credentials.json spelling.
// Either spelling is accepted in either place.
var credFields = []struct {
	keys     []string
	required bool
	set      func(*Credentials, string)
}{
	{[]string{"access_key_id", "aws_access_key_id"}, true, func(c *Credentials, v string) { c.AccessKeyID = v }},
	{[]string{"secret_access_key", "aws_secret_access_key"}, true, func(c *Credentials, v string) { c.SecretAccessKey = v }},
	{[]string{"session_token", "aws_session_token"}, false, func(c *Credentials, v string) { c.SessionToken = v }},
	{[]string{"region", "aws_region"}, false, func(c *Credentials, v string) { c.Region = v }},
}

var regionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ParseCredentials reads a JSON object in either spelling:
// {"access_key_id","secret_access_key","session_token"?,"region"?} or
// {"aws_access_key_id","aws_secret_access_key","aws_session_token"?,"aws_region"?}.
// from names the origin in errors; errors name the field at fault and wrap
// ErrBadCredentials, and never quote the content.
func ParseCredentials(data []byte, from string) (*Credentials, error) {
	obj, err := objstore.CredentialObject(data, from, "an object with access_key_id and secret_access_key")
	if err != nil {
		return nil, err
	}
	c := &Credentials{From: from}
	for _, f := range credFields {
		key, raw, ok := pick(obj, f.keys)
		if !ok {
			if f.required {
				return nil, objstore.BadCredentials("%s: field %s (or %s) is missing", from, f.keys[0], f.keys[1])
			}
			continue
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, objstore.BadCredentials("%s: field %s must be a string", from, key)
		}
		v = strings.TrimSpace(v)
		if v == "" && f.required {
			return nil, objstore.BadCredentials("%s: field %s is empty", from, key)
		}
		if strings.ContainsAny(v, " \t\r\n") {
			return nil, objstore.BadCredentials("%s: field %s contains whitespace", from, key)
		}
		f.set(c, v)
	}
	if c.Region != "" && !regionRE.MatchString(c.Region) {
		return nil, objstore.BadCredentials("%s: field region is not an AWS region name (like us-east-1)", from)
	}
	return c, nil
}

// source names where c came from; nil: the default AWS credential chain.
func (c *Credentials) source() string {
	if c == nil {
		return "the default AWS credential chain"
	}
	return c.From
}

// pick returns the first of keys present in obj (JSON null counts as absent).
func pick(obj map[string]json.RawMessage, keys []string) (string, json.RawMessage, bool) {
	for _, k := range keys {
		if raw, ok := obj[k]; ok && string(raw) != "null" {
			return k, raw, true
		}
	}
	return "", nil, false
}

// looksLikeAWS reports whether data is a JSON object naming an access key
// in either spelling: the sign that a secret is meant for S3 at all.
func looksLikeAWS(data []byte) bool {
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil {
		return false
	}
	for _, f := range credFields[:2] {
		if _, _, ok := pick(obj, f.keys); ok {
			return true
		}
	}
	return false
}

// FindCredentials looks for static keys in the order of the contract:
//
//  1. the secret called secretName (TRUSS_SECRET_<name>, then <secrets
//     dir>/<name>). The Truss default name is hf_access_token, which usually
//     holds a Hugging Face token: under that default name the secret is used
//     only when it is a JSON object naming an access key, and skipped
//     otherwise. A secret named explicitly must hold valid credentials.
//  2. <dataDir>/s3_credentials.json (dataDir "" means "data").
//
// It returns nil, nil when neither exists: the caller then uses the default
// AWS credential chain. Errors name the secret or file and the field.
func FindCredentials(secrets config.Secrets, secretName, dataDir string) (*Credentials, error) {
	return objstore.FindCredential(secrets, secretName, objstore.Or(dataDir, DefaultDataDir), CredentialsFile,
		"S3 credentials", looksLikeAWS, ParseCredentials)
}
