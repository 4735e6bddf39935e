// Package s3src lists and reads model_cache entries of kind s3
// (repo_id s3://bucket/prefix) on Amazon S3 or an S3-compatible store. It
// owns finding S3 credentials (secret, data/s3_credentials.json, default AWS
// chain), the bucket's region, the paginated listing and ranged GETs pinned
// to the listed ETag with If-Match, so bytes of two versions of an object are
// never mixed.
//
// It must not cache bytes (chunkcache does that), must not retry reads on its
// own (fetch.Retrying does; the SDK's retryer is disabled), and must never put
// a key, a token or a signature into an error or a log line.
package s3src

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/objstore"
)

// fallbackRegion is used when nothing names the region and the store does
// not say (S3-compatible stores mostly ignore it).
const fallbackRegion = "us-east-1"

// Options configure a Source. Every field has a usable zero value.
type Options struct {
	// Credentials are static keys; nil: the default AWS credential chain
	// (environment, shared profile, web identity, ECS/EC2 roles), and
	// anonymous requests when that chain finds nothing.
	Credentials *Credentials
	// Region: AWS_REGION / AWS_DEFAULT_REGION. Default "": the region of the
	// Credentials, else the shared profile's, else asked of the bucket, else
	// us-east-1. A Credentials.Region wins over this.
	Region string
	// RegionFrom names where Region came from, for messages (e.g.
	// "AWS_REGION"); default "the configured region".
	RegionFrom string
	// Endpoint of an S3-compatible store (AWS_ENDPOINT_URL_S3, then
	// AWS_ENDPOINT_URL); default "" (AWS). When set, addressing is path-style.
	Endpoint string
	// EndpointFrom names the variable Endpoint came from, for messages.
	EndpointFrom string
	// SecretName is the entry's runtime_secret_name, for hints; default hf_access_token.
	SecretName string
	// DataDir is where s3_credentials.json is looked for, for hints; default "data".
	DataDir    string
	HTTPClient HTTPClient        // default: NewHTTPClient()
	Logger     *slog.Logger      // default: discard
	Retry      fetch.RetryPolicy // List's retries; zero: fetch.DefaultRetryPolicy
	PageSize   int32             // keys per ListObjectsV2 page; default 1000 (tests page smaller)
	// ChecksumLookups bounds the parallel HeadObject calls List makes to
	// settle each object's checksum (SHA-256, or whether the ETag really is
	// an MD5); default 16.
	ChecksumLookups int
}

// Getenv-driven settings, in priority order.
var (
	endpointVars = []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"}
	regionVars   = []string{"AWS_REGION", "AWS_DEFAULT_REGION"}
)

// OptionsFromEnv gathers what the contract says an S3 entry uses: static
// credentials from the entry's secret or <dataDir>/s3_credentials.json (see
// FindCredentials), the region from AWS_REGION / AWS_DEFAULT_REGION, and an
// S3-compatible endpoint from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, all read
// through getenv (nil: os.Getenv via secrets). The default AWS chain, when it
// is used, reads the process environment itself.
func OptionsFromEnv(e config.Entry, secrets config.Secrets, dataDir string, getenv func(string) string) (Options, error) {
	creds, err := FindCredentials(secrets, e.SecretName, dataDir)
	if err != nil {
		return Options{}, fmt.Errorf("%s: %w", e.Name(), err)
	}
	o := Options{Credentials: creds, SecretName: e.SecretName, DataDir: dataDir}
	err = envSettings(&o, e.Name(), getenv)
	return o, err
}

// EnvOptions gathers the settings of the environment alone, for a client
// that is not a model_cache entry's (see NewClient): the region from
// AWS_REGION / AWS_DEFAULT_REGION and an S3-compatible endpoint from
// AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, read through getenv (nil:
// os.Getenv). what names the user in errors. Credentials stay nil: the
// default AWS chain, unless the caller sets them.
func EnvOptions(what string, getenv func(string) string) (Options, error) {
	var o Options
	err := envSettings(&o, what, getenv)
	return o, err
}

// envSettings fills o's region and endpoint from getenv; what names the
// user in errors.
func envSettings(o *Options, what string, getenv func(string) string) error {
	getenv = objstore.OrGetenv(getenv)
	for _, k := range regionVars {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			if !regionRE.MatchString(v) {
				return fmt.Errorf("%s: %s is not an AWS region name (like us-east-1)", what, k)
			}
			o.Region, o.RegionFrom = v, k
			break
		}
	}
	for _, k := range endpointVars {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			if _, err := parseEndpoint(v); err != nil {
				return fmt.Errorf("%s: %s: %w", what, k, err)
			}
			o.Endpoint, o.EndpointFrom = v, k
			break
		}
	}
	return nil
}

// Source serves one s3 entry. It is safe for concurrent use.
type Source struct {
	b    objstore.Bucket
	opts Options
	what string // names the client's user in messages; "": the entry (see name)
	// client is built on first use (credentials, then the region, perhaps
	// asked of the bucket); callers waiting for the first caller's region
	// lookup still honour their own ctx.
	client objstore.Lazy[clientState]
}

// clientState is the client and the facts behind it, for messages.
type clientState struct {
	c      *s3.Client
	region string
	regSrc string // where region came from
	from   string // the credential source
}

var (
	_ fetch.Source       = (*Source)(nil)
	_ fetch.SecretHolder = (*Source)(nil)
)

// Secrets are the static keys' secret parts, or, when the default AWS chain
// is used, the secret parts it may read from the process environment. (The
// access key ID names the key; it does not sign.)
func (s *Source) Secrets() []string { return s.opts.Secrets() }

// Secrets are the secret parts of o's static keys, or, when o uses the
// default AWS chain, the secret parts that chain may read from the process
// environment.
func (o Options) Secrets() []string {
	if c := o.Credentials; c != nil {
		return []string{c.SecretAccessKey, c.SessionToken}
	}
	return []string{os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN")}
}

// New returns a Source for e. Nothing is contacted until List or ReadRange.
func New(e config.Entry, o Options) *Source {
	s := &Source{b: objstore.New(e, "s3", "S3", o.Logger, o.Retry), opts: o}
	if s.opts.HTTPClient == nil {
		s.opts.HTTPClient = NewHTTPClient()
	}
	s.opts.PageSize = objstore.PageSize(s.opts.PageSize)
	if s.opts.ChecksumLookups <= 0 {
		s.opts.ChecksumLookups = 16
	}
	return s
}

// HTTPClient is what the SDK sends requests with (*http.Client fits).
type HTTPClient interface {
	Do(*http.Request) (*http.Response, error)
}

// NewHTTPClient returns the client used when Options.HTTPClient is nil,
// with the settings every origin shares (fetch.TuneDialer,
// fetch.TuneTransport). It is the SDK's buildable client, so AWS_CA_BUNDLE
// still applies.
func NewHTTPClient() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithDialerOptions(fetch.TuneDialer).WithTransportOptions(fetch.TuneTransport)
}

// getClient returns the S3 client, building it on first use: credentials,
// then region (configured, else regionHint from a saved listing, else asked
// of the bucket). A failed build is not remembered, so a transient failure
// is retried by the next caller.
func (s *Source) getClient(ctx context.Context, regionHint string) (*s3.Client, error) {
	st, err := s.client.Get(ctx, s.name(), func(ctx context.Context) (*clientState, error) {
		return s.newClient(ctx, regionHint)
	})
	if err != nil {
		return nil, err
	}
	return st.c, nil
}

// newClient builds the client and the facts behind it.
func (s *Source) newClient(ctx context.Context, regionHint string) (*clientState, error) {
	var ep *url.URL
	if s.opts.Endpoint != "" {
		var err error
		if ep, err = parseEndpoint(s.opts.Endpoint); err != nil {
			return nil, fetch.Permanent(fmt.Errorf("%s: %s: %w", s.name(), s.opts.EndpointFrom, err))
		}
	}
	cfg, from, err := s.awsConfig(ctx)
	if err != nil {
		return nil, err
	}
	region, regSrc := s.opts.Region, s.opts.RegionFrom
	if regSrc == "" {
		regSrc = "the configured region"
	}
	switch {
	case s.opts.Credentials != nil && s.opts.Credentials.Region != "":
		region, regSrc = s.opts.Credentials.Region, s.opts.Credentials.From
	case region != "":
	case cfg.Region != "":
		region, regSrc = cfg.Region, "the AWS environment or shared config"
	case regionHint != "":
		region, regSrc = regionHint, "the saved listing"
	}
	mk := func(region string) *s3.Client {
		return s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.Region = region
			o.HTTPClient = s.opts.HTTPClient
			o.Retryer = aws.NopRetryer{} // fetch.RetryPolicy decides
			if ep != nil {
				o.BaseEndpoint = aws.String(ep.String())
				o.UsePathStyle = true
			}
			// Ranged GETs carry no whole-object checksum to validate;
			// the chunk cache verifies complete files itself.
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.DisableLogOutputChecksumValidationSkipped = true
		})
	}
	if region == "" {
		if region, err = s.discoverRegion(ctx, mk(fallbackRegion)); err != nil {
			return nil, err
		}
		regSrc = "the bucket's x-amz-bucket-region"
		if region == "" {
			region, regSrc = fallbackRegion, "the default"
		}
		s.b.Log.Debug("S3 region", "region", region, "from", regSrc)
	}
	return &clientState{c: mk(region), region: region, regSrc: regSrc, from: from}, nil
}

// awsConfig builds the SDK config and says where its credentials come from.
// The shared config is loaded in both cases, for AWS_CA_BUNDLE and a
// profile's region; static keys replace only the credential chain.
func (s *Source) awsConfig(ctx context.Context) (aws.Config, string, error) {
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithHTTPClient(s.opts.HTTPClient),
		awsconfig.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		// The SDK's own notes (an IMDS fallback, a skipped checksum) go to
		// our log at debug level instead of stderr. Request and response
		// logging stays off, so no header or signature reaches it.
		awsconfig.WithLogger(logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
			s.b.Log.Debug("aws sdk: "+fmt.Sprintf(format, v...), "class", string(c))
		})),
	}
	c := s.opts.Credentials
	if c != nil {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		// Errors here name a profile or a file, not a key.
		return aws.Config{}, "", fetch.Permanent(newErr([]error{ErrBadCredentials}, nil,
			"%s: loading the AWS configuration: %s", s.name(), s.redact(err.Error())))
	}
	if c != nil {
		return cfg, c.From, nil
	}
	from := "the default AWS credential chain"
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		if ctx.Err() != nil {
			return aws.Config{}, "", fmt.Errorf("%s: looking up AWS credentials: %w", s.name(), ctx.Err())
		}
		// Public buckets need none; a private one fails with a message
		// that says no credentials were found.
		s.b.Log.Warn("no AWS credentials found: reading S3 anonymously", "reason", err)
		cfg.Credentials = aws.AnonymousCredentials{}
		from = "no credentials (the default AWS credential chain found none)"
	}
	return cfg, from, nil
}

// discoverRegion asks the bucket where it lives: S3 answers HeadBucket, even
// a refused or misdirected one, with x-amz-bucket-region. "" means it did not
// say (S3-compatible stores; a missing bucket, which List then reports).
func (s *Source) discoverRegion(ctx context.Context, c *s3.Client) (string, error) {
	out, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.b.Name)})
	if err == nil {
		return aws.ToString(out.BucketRegion), nil
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.Header.Get("X-Amz-Bucket-Region"), nil
	}
	return "", s.classify(err, opInfo{op: "HeadBucket " + s.b.Name, what: fmt.Sprintf("%s: finding the region of bucket %q", s.name(), s.b.Name)})
}

// parseEndpoint accepts an http(s) URL with a host.
func parseEndpoint(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("endpoint is not an http(s) URL with a host")
	}
	u.User = nil
	return u, nil
}

// Message helpers: they describe, never quote, credentials.

func (s *Source) endpointName() string {
	if s.opts.Endpoint == "" {
		return "S3"
	}
	if u, err := parseEndpoint(s.opts.Endpoint); err == nil {
		return u.Redacted()
	}
	return s.opts.EndpointFrom
}

// credFromName names the credentials in use: those the client was built
// with (the chain may have found none), else those configured.
func (s *Source) credFromName() string {
	if st := s.client.Load(); st != nil {
		return st.from
	}
	return s.opts.Credentials.source()
}

// region names the region in use and where it came from.
func (s *Source) region() (region, from string) {
	if st := s.client.Load(); st != nil {
		return st.region, st.regSrc
	}
	return fallbackRegion, "the default"
}

func (s *Source) secretName() string  { return objstore.Or(s.opts.SecretName, config.DefaultSecretName) }
func (s *Source) dataDirName() string { return objstore.Or(s.opts.DataDir, DefaultDataDir) }
