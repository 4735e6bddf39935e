package main

import (
	"net/url"
	"os"
	"strings"

	"github.com/weightfs/weightfs/fetch/config"
	"github.com/weightfs/weightfs/fetch/hf"
	"github.com/weightfs/weightfs/fetch/sources"
)

// manifestKey names an entry's saved manifest: the entry's own key plus,
// when the origin is not its default, the endpoint it is listed from. Two
// Hubs (a mirror set with HF_ENDPOINT, and huggingface.co) or two S3 stores
// serve different listings under one repo_id; sharing a saved manifest
// would pin one to the other's commit. A default endpoint adds nothing, so
// manifests saved before endpoints were keyed keep their meaning.
func manifestKey(e config.Entry, env sources.Env) string {
	getenv := env.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	k := e.Key()
	if ep := originEndpoint(e, getenv); ep != "" {
		k += "\nendpoint=" + ep
	}
	return k
}

// originEndpoint is the non-default endpoint e is served from, normalised
// (scheme and host lower case, no trailing '/'), or "" for the default:
// HF_ENDPOINT for the Hub; AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, for
// S3 (the order s3src reads them in); STORAGE_EMULATOR_HOST for GCS.
func originEndpoint(e config.Entry, getenv func(string) string) string {
	var vars []string
	switch e.Kind {
	case config.KindHF, "":
		vars = []string{"HF_ENDPOINT"}
	case config.KindS3:
		vars = []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"}
	case config.KindGCS:
		vars = []string{"STORAGE_EMULATOR_HOST"}
	}
	for _, k := range vars {
		v := strings.TrimSpace(getenv(k))
		if v == "" {
			continue
		}
		ep := normalEndpoint(v)
		if e.Kind != config.KindS3 && e.Kind != config.KindGCS && ep == normalEndpoint(hf.DefaultEndpoint) {
			return ""
		}
		return ep
	}
	return ""
}

func normalEndpoint(raw string) string {
	s := raw
	if !strings.Contains(s, "://") {
		s = "http://" + s // STORAGE_EMULATOR_HOST may be a bare host:port
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return strings.TrimRight(raw, "/")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String()
}
