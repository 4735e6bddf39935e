// Package gcssrc lists and reads model_cache entries of kind gcs
// (repo_id gs://bucket/prefix) on Google Cloud Storage or an emulator at
// STORAGE_EMULATOR_HOST. It owns finding GCS credentials (service account
// secret, data/service_account.json, Application Default Credentials,
// anonymous), the paginated listing with generations and checksums, and
// ranged reads pinned to the listed generation, so bytes of two versions of
// an object are never mixed.
//
// It must not cache bytes (chunkcache does that), must not retry reads on its
// own (fetch.Retrying does; the library's retries are switched off), and must
// never put a key or a token into an error or a log line.
package gcssrc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"
	"cloud.google.com/go/auth/httptransport"
	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/objstore"
)

// EmulatorEnv names the emulator variable the storage library also honours.
const EmulatorEnv = "STORAGE_EMULATOR_HOST"

// Options configure a Source. Every field has a usable zero value.
type Options struct {
	// ServiceAccount is a key to authenticate with; nil: Application Default
	// Credentials, else anonymous (public buckets).
	ServiceAccount *ServiceAccount
	// Anonymous skips the Application Default Credentials lookup when
	// ServiceAccount is nil; default false.
	Anonymous bool
	// Emulator is STORAGE_EMULATOR_HOST ("host:port" or "http://host:port");
	// default "" (GCS). When set, requests are unauthenticated and go to
	// <emulator>/storage/v1/, reads through the JSON API.
	Emulator string
	// Endpoint overrides the JSON API endpoint with credentials kept (a
	// private or regional endpoint, or a test server), e.g.
	// "https://storage.example.internal/storage/v1/"; default "" (GCS).
	// Reads then go through the JSON API too.
	Endpoint string
	// SecretName is the entry's runtime_secret_name, for hints; default hf_access_token.
	SecretName string
	// DataDir is where service_account.json is looked for, for hints; default "data".
	DataDir string
	// Transport is the base round tripper under authentication; default
	// NewTransport().
	Transport http.RoundTripper
	Logger    *slog.Logger      // default: discard
	Retry     fetch.RetryPolicy // List's retries; zero: fetch.DefaultRetryPolicy
	PageSize  int               // objects per list page; default 1000 (tests page smaller)
	// ReadWrite asks for storage.ScopeReadWrite instead of ScopeReadOnly,
	// for a client that writes (NewClient for the shared chunk cache); a
	// Source only reads. Default false.
	ReadWrite bool

	// xmlReads keeps XML API reads with an Endpoint or Emulator (tests of
	// the path real GCS takes).
	xmlReads bool
}

// OptionsFromEnv gathers what the contract says a gcs entry uses: a service
// account key from the entry's secret or <dataDir>/service_account.json (see
// FindServiceAccount), and STORAGE_EMULATOR_HOST, read through getenv (nil:
// os.Getenv).
func OptionsFromEnv(e config.Entry, secrets config.Secrets, dataDir string, getenv func(string) string) (Options, error) {
	sa, err := FindServiceAccount(secrets, e.SecretName, dataDir)
	if err != nil {
		return Options{}, fmt.Errorf("%s: %w", e.Name(), err)
	}
	o := Options{ServiceAccount: sa, SecretName: e.SecretName, DataDir: dataDir}
	err = envSettings(&o, e.Name(), getenv)
	return o, err
}

// EnvOptions gathers the settings of the environment alone, for a client
// that is not a model_cache entry's (see NewClient): STORAGE_EMULATOR_HOST,
// read through getenv (nil: os.Getenv). what names the user in errors.
// ServiceAccount stays nil: Application Default Credentials, unless the
// caller sets one.
func EnvOptions(what string, getenv func(string) string) (Options, error) {
	var o Options
	err := envSettings(&o, what, getenv)
	return o, err
}

func envSettings(o *Options, what string, getenv func(string) string) error {
	if v := strings.TrimSpace(objstore.OrGetenv(getenv)(EmulatorEnv)); v != "" {
		if _, err := emulatorEndpoint(v); err != nil {
			return fmt.Errorf("%s: %s: %w", what, EmulatorEnv, err)
		}
		o.Emulator = v
	}
	return nil
}

// Source serves one gcs entry. It is safe for concurrent use.
type Source struct {
	b      objstore.Bucket
	opts   Options
	what   string                     // names the client's user in messages; "": the entry (see name)
	client objstore.Lazy[clientState] // built on first use
}

type clientState struct {
	c    *storage.Client
	from string // the credential source, for messages
	// compressed: reads ask for the stored bytes (no decompressive
	// transcoding), so gzip-encoded objects match the listed size and
	// checksums. The library allows it on XML reads only; with JSON reads
	// a transcoded object fails the size check instead.
	compressed bool
}

var (
	_ fetch.Source       = (*Source)(nil)
	_ fetch.SecretHolder = (*Source)(nil)
)

// Secrets are the service account's private key and its ID. Application
// Default Credentials are the auth library's, and it echoes none.
func (s *Source) Secrets() []string { return s.opts.Secrets() }

// Secrets are the private key and key ID of o's service account; none for
// Application Default Credentials, which the auth library holds and never
// echoes.
func (o Options) Secrets() []string {
	if o.ServiceAccount == nil {
		return nil
	}
	var key struct {
		PrivateKey   string `json:"private_key"`
		PrivateKeyID string `json:"private_key_id"`
	}
	_ = json.Unmarshal(o.ServiceAccount.JSON, &key)
	return []string{key.PrivateKey, key.PrivateKeyID}
}

// New returns a Source for e. Nothing is contacted until List or ReadRange.
func New(e config.Entry, o Options) *Source {
	s := &Source{b: objstore.New(e, "gs", "GCS", o.Logger, o.Retry), opts: o}
	if s.opts.Transport == nil {
		s.opts.Transport = NewTransport()
	}
	s.opts.PageSize = objstore.PageSize(s.opts.PageSize)
	return s
}

// NewTransport returns the base transport used when Options.Transport is
// nil: the one every origin shares (fetch.NewTransport).
func NewTransport() *http.Transport { return fetch.NewTransport() }

// getClient returns the storage client, building it on first use. A failed
// build is not remembered, so a transient failure is retried by the next
// caller.
func (s *Source) getClient(ctx context.Context) (*clientState, error) {
	return s.client.Get(ctx, s.name(), s.newClient)
}

func (s *Source) newClient(ctx context.Context) (*clientState, error) {
	hc, from, err := s.httpClient(ctx)
	if err != nil {
		return nil, err
	}
	// Our client already authenticates; WithoutAuthentication stops the
	// library from looking for credentials of its own.
	opts := []option.ClientOption{option.WithHTTPClient(hc), option.WithoutAuthentication()}
	ep := s.opts.Endpoint
	if s.opts.Emulator != "" {
		if ep, err = emulatorEndpoint(s.opts.Emulator); err != nil {
			return nil, fetch.Permanent(fmt.Errorf("%s: %s: %w", s.name(), EmulatorEnv, err))
		}
	}
	jsonReads := false
	if ep != "" {
		opts = append(opts, option.WithEndpoint(ep))
		// JSON reads: emulators and private endpoints serve the JSON API
		// on one host, while XML reads would need a public host name.
		if !s.opts.xmlReads {
			opts = append(opts, storage.WithJSONReads())
			jsonReads = true
		}
	}
	c, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: creating the GCS client: %s", s.name(), s.redact(err.Error()))
	}
	c.SetRetry(storage.WithPolicy(storage.RetryNever)) // fetch.RetryPolicy decides
	return &clientState{c: c, from: from, compressed: !jsonReads}, nil
}

// httpClient returns the authenticating HTTP client and names its
// credential source: the service account, else ADC, else none.
func (s *Source) httpClient(ctx context.Context) (*http.Client, string, error) {
	plain := &http.Client{Transport: s.opts.Transport}
	if s.opts.Emulator != "" {
		return plain, "no credentials (emulator at " + s.opts.Emulator + ")", nil
	}
	scopes := []string{storage.ScopeReadOnly}
	if s.opts.ReadWrite {
		scopes = []string{storage.ScopeReadWrite}
	}
	var creds *auth.Credentials
	var from string
	switch {
	case s.opts.ServiceAccount != nil:
		c, err := credentials.NewCredentialsFromJSON(credentials.ServiceAccount, s.opts.ServiceAccount.JSON,
			&credentials.DetectOptions{Scopes: scopes})
		if err != nil {
			return nil, "", fetch.Permanent(newErr([]error{ErrBadCredentials}, nil,
				"%s: %s: not a usable service account key: %s", s.name(), s.opts.ServiceAccount.From, s.redact(err.Error())))
		}
		creds, from = c, s.opts.ServiceAccount.From
	case s.opts.Anonymous:
		return plain, "no credentials (anonymous)", nil
	default:
		// DetectDefault may probe the GCE metadata server and takes no ctx:
		// wait for it only as long as ctx allows.
		type result struct {
			c   *auth.Credentials
			err error
		}
		done := make(chan result, 1)
		go func() {
			c, err := credentials.DetectDefault(&credentials.DetectOptions{Scopes: scopes})
			done <- result{c, err}
		}()
		var r result
		select {
		case r = <-done:
		case <-ctx.Done():
			return nil, "", fmt.Errorf("%s: looking for Application Default Credentials: %w", s.name(), ctx.Err())
		}
		if r.err != nil {
			s.b.Log.Warn("no Application Default Credentials: reading GCS anonymously", "reason", r.err)
			return plain, "no credentials (no service account key and no Application Default Credentials were found)", nil
		}
		creds, from = r.c, "Application Default Credentials"
	}
	hc, err := httptransport.NewClient(&httptransport.Options{Credentials: creds, BaseRoundTripper: s.opts.Transport, DisableTelemetry: true})
	if err != nil {
		return nil, "", fmt.Errorf("%s: building the GCS HTTP client with %s: %s", s.name(), from, s.redact(err.Error()))
	}
	return hc, from, nil
}

// emulatorEndpoint turns STORAGE_EMULATOR_HOST into the JSON API endpoint,
// the way the storage library does.
func emulatorEndpoint(host string) (string, error) {
	raw := host
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("not a host:port or an http(s) URL")
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	u.Path = "/storage/v1/"
	return u.String(), nil
}

// Message helpers: they describe, never quote, credentials.

func (s *Source) endpointName() string {
	if s.opts.Emulator != "" {
		return "the GCS emulator at " + s.opts.Emulator
	}
	if s.opts.Endpoint != "" {
		if u, err := url.Parse(s.opts.Endpoint); err == nil {
			return "GCS endpoint " + u.Redacted()
		}
		return "the configured GCS endpoint"
	}
	return "GCS"
}

// credFromName names the credentials in use: those the client was built
// with (none, for an emulator or when ADC found nothing), else those
// configured.
func (s *Source) credFromName() string {
	if st := s.client.Load(); st != nil {
		return st.from
	}
	return s.opts.ServiceAccount.source()
}

func (s *Source) secretName() string  { return objstore.Or(s.opts.SecretName, config.DefaultSecretName) }
func (s *Source) dataDirName() string { return objstore.Or(s.opts.DataDir, DefaultDataDir) }
