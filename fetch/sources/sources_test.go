package sources

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/config"
)

// A listing that stalls before its headers must cost Env.Retry's
// per-attempt deadline, on every origin, and be tried Env.Retry.Attempts
// times. Fails before this change: Env had no Retry, every origin listed
// with fetch.DefaultRetryPolicy, and each stalled attempt took 30 s
// whatever --fetch-timeout said.
func TestListingHonoursEnvRetry(t *testing.T) {
	var reqs atomic.Int64
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		select { // until the client gives up, or the server closes
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	}))
	t.Cleanup(stall.Close)
	s3Creds := `{"access_key_id":"AKIAEXAMPLE","secret_access_key":"not-a-real-secret","region":"us-east-1"}`
	cases := []struct {
		name  string
		entry config.Entry
		env   map[string]string
	}{
		{"hf", config.Entry{RepoID: "acme/llm", Revision: "main", Kind: config.KindHF, VolumeFolder: "v"},
			map[string]string{"HF_ENDPOINT": stall.URL}},
		{"s3", config.Entry{RepoID: "s3://bucket/prefix", Kind: config.KindS3, VolumeFolder: "v", SecretName: "aws"},
			map[string]string{"AWS_ENDPOINT_URL_S3": stall.URL, "TRUSS_SECRET_aws": s3Creds}},
		{"gcs", config.Entry{RepoID: "gs://bucket/prefix", Kind: config.KindGCS, VolumeFolder: "v"},
			map[string]string{"STORAGE_EMULATOR_HOST": strings.TrimPrefix(stall.URL, "http://")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			env := Env{
				Secrets: config.Secrets{Dir: t.TempDir(), Getenv: getenv},
				Getenv:  getenv,
				DataDir: t.TempDir(),
				Retry:   fetch.RetryPolicy{Attempts: 2, AttemptTimeout: 300 * time.Millisecond, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond},
			}
			src, err := Open(tc.entry, env)
			if err != nil {
				t.Fatal(err)
			}
			reqs.Store(0)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			_, err = src.List(ctx)
			d := time.Since(start)
			if err == nil {
				t.Fatal("a stalled listing succeeded")
			}
			if d > 3*time.Second {
				t.Errorf("List took %s; want about 2 attempts of 300ms (%v)", d, err)
			}
			if n := reqs.Load(); n != 2 {
				t.Errorf("%d listing requests, want 2 (Env.Retry.Attempts)", n)
			}
			if !strings.Contains(err.Error(), "timed out after 300ms") {
				t.Errorf("error does not name the deadline: %v", err)
			}
		})
	}
}
