package faultproxy

import (
	"net/http"
	"strings"
)

// HubContent: the Hub's GET /{repo}/resolve/{rev}/{path} (small files are
// served there, LFS files redirect) and its CDN's GET /repos/...; never the
// /api/ listings.
func HubContent(r *http.Request) bool {
	if r.Method != http.MethodGet || strings.HasPrefix(r.URL.Path, "/api/") {
		return false
	}
	return strings.HasPrefix(r.URL.Path, "/repos/") || strings.Contains(r.URL.Path, "/resolve/")
}

// s3SubResources are the query keys that make a GET on /bucket/key
// something other than GetObject.
var s3SubResources = []string{"list-type", "attributes", "acl", "tagging", "uploads", "uploadId",
	"location", "versioning", "versions", "policy", "cors", "lifecycle", "delete", "retention", "legal-hold"}

// S3Content: a path-style GetObject, GET /bucket/key with no subresource
// (the SDK's own "x-id=GetObject" is allowed). GCS XML-API reads have the
// same shape and are content too.
func S3Content(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	if !strings.Contains(strings.Trim(r.URL.Path, "/"), "/") {
		return false // a bucket: ListObjects, GetBucketLocation, ...
	}
	q := r.URL.Query()
	for _, k := range s3SubResources {
		if q.Has(k) {
			return false
		}
	}
	return true
}

// GCSContent: a JSON-API media download (?alt=media, on /storage/v1/ or
// /download/storage/v1/), as the storage client sends with JSON reads.
func GCSContent(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	return r.URL.Query().Get("alt") == "media" || strings.HasPrefix(r.URL.Path, "/download/")
}

// AnyContent is the default classifier: content on any of the three
// origins. JSON-API metadata and listings (/storage/v1/ without alt=media)
// and Hub API calls are not content, though S3Content alone would take
// their shape for an object path.
func AnyContent(r *http.Request) bool {
	if GCSContent(r) || HubContent(r) {
		return true
	}
	for _, api := range []string{"/storage/v1/", "/upload/", "/api/", "/_internal/"} {
		if strings.HasPrefix(r.URL.Path, api) {
			return false
		}
	}
	return S3Content(r)
}
