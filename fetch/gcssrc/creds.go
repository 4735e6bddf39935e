package gcssrc

import (
	"encoding/json"
	"encoding/pem"
	"strings"

	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/objstore"
)

// ServiceAccountFile is the older spelling's file inside the Truss data
// folder: <data dir>/service_account.json.
const ServiceAccountFile = "service_account.json"

// DefaultDataDir is the data folder when none is given.
const DefaultDataDir = "data"

// ServiceAccount is a validated service-account key. It prints as where it
// came from, never as its content (%v, %+v and %#v alike).
type ServiceAccount struct {
	JSON []byte // the key file as given, for the auth library
	From string // e.g. "secret gcs_sa (file /secrets/gcs_sa)" or "file data/service_account.json"
}

func (sa ServiceAccount) String() string   { return "GCS service account key from " + sa.From }
func (sa ServiceAccount) GoString() string { return sa.String() }

// ParseServiceAccount checks that data is a service-account key: a JSON
// object with type "service_account", a client_email and a PEM private_key.
// Errors wrap ErrBadCredentials, name from and the field at fault, and never
// quote the content.
func ParseServiceAccount(data []byte, from string) (*ServiceAccount, error) {
	obj, err := objstore.CredentialObject(data, from, "a service account key file")
	if err != nil {
		return nil, err
	}
	str := func(key string) (string, error) {
		raw, ok := obj[key]
		if !ok || string(raw) == "null" {
			return "", objstore.BadCredentials("%s: field %s is missing", from, key)
		}
		var v string
		if json.Unmarshal(raw, &v) != nil {
			return "", objstore.BadCredentials("%s: field %s must be a string", from, key)
		}
		if strings.TrimSpace(v) == "" {
			return "", objstore.BadCredentials("%s: field %s is empty", from, key)
		}
		return v, nil
	}
	typ, err := str("type")
	if err != nil {
		return nil, err
	}
	if typ != "service_account" {
		return nil, objstore.BadCredentials(`%s: field type must be "service_account" (other credential types go through Application Default Credentials)`, from)
	}
	if _, err := str("client_email"); err != nil {
		return nil, err
	}
	key, err := str("private_key")
	if err != nil {
		return nil, err
	}
	if block, _ := pem.Decode([]byte(key)); block == nil || !strings.HasSuffix(block.Type, "PRIVATE KEY") {
		return nil, objstore.BadCredentials("%s: field private_key is not a PEM private key (\\n escapes must stay in the JSON string)", from)
	}
	return &ServiceAccount{JSON: data, From: from}, nil
}

// source names where sa came from; nil: Application Default Credentials.
func (sa *ServiceAccount) source() string {
	if sa == nil {
		return "Application Default Credentials"
	}
	return sa.From
}

// isServiceAccount reports whether data is a JSON object of type
// service_account: the sign that a secret is meant for GCS at all.
func isServiceAccount(data []byte) bool {
	var obj struct {
		Type string `json:"type"`
	}
	return json.Unmarshal(data, &obj) == nil && obj.Type == "service_account"
}

// FindServiceAccount looks for a key in the order of the contract:
//
//  1. the secret called secretName. Under the Truss default name
//     hf_access_token (which usually holds a Hugging Face token) the secret
//     is used only when it is a JSON object of type service_account; a
//     secret named explicitly must be a valid key.
//  2. <dataDir>/service_account.json (dataDir "" means "data").
//
// It returns nil, nil when neither exists: the caller then uses Application
// Default Credentials, else anonymous access.
func FindServiceAccount(secrets config.Secrets, secretName, dataDir string) (*ServiceAccount, error) {
	return objstore.FindCredential(secrets, secretName, objstore.Or(dataDir, DefaultDataDir), ServiceAccountFile,
		"the GCS service account", isServiceAccount, ParseServiceAccount)
}
