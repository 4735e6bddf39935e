package s3src

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/weightfs/weightfs/fetch"
)

// maxPages caps pagination: ten million keys at S3's page size, while still
// ending a store that loops.
const maxPages = 10000

// ExtraRegion is the File.Extra key holding the region the object was listed
// in, so reads after a restart need not ask the bucket again.
const ExtraRegion = "region"

// md5ETagRE is a single-part upload's ETag: the hex MD5 of the content
// (unless the object is SSE-C or SSE-KMS encrypted; see inspect).
var md5ETagRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// List pages through ListObjectsV2 under the prefix, keeps the objects the
// entry's patterns select (paths relative to the prefix), and records each
// object's ETag as its Version so reads are pinned to it.
func (s *Source) List(ctx context.Context) (*fetch.Manifest, error) {
	resolved := time.Now().UTC()
	var c *s3.Client
	err := s.retry.Do(ctx, func(ctx context.Context) error {
		var err error
		c, err = s.getClient(ctx, "")
		return err
	})
	if err != nil {
		return nil, err
	}
	region, _ := s.region()
	var (
		files       []fetch.File
		inspect     []int // indexes into files worth a HeadObject (see inspect)
		total       int
		skipped     []string
		token       *string
		where       = fmt.Sprintf("listing s3://%s/%s for %s", s.bucket, s.prefix, s.entry.Name())
		pageSize    = s.opts.PageSize
		pageNum     int
		prefixInput *string
	)
	if s.prefix != "" {
		prefixInput = aws.String(s.prefix)
	}
	for ; ; pageNum++ {
		if pageNum >= maxPages {
			return nil, fetch.Permanent(fmt.Errorf("%s: more than %d pages; narrow the prefix", where, maxPages))
		}
		var page *s3.ListObjectsV2Output
		err := s.retry.Do(ctx, func(ctx context.Context) error {
			out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
				Bucket: aws.String(s.bucket), Prefix: prefixInput, ContinuationToken: token, MaxKeys: aws.Int32(pageSize),
			})
			if err != nil {
				return s.classify(err, opInfo{op: "ListObjectsV2 s3://" + s.bucket + "/" + s.prefix, what: where})
			}
			page = out
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			rel, isFile := relKey(s.prefix, key)
			if !isFile {
				continue // a "directory marker" (console folders) or the prefix itself
			}
			if !fetch.ValidPath(rel) {
				skipped = append(skipped, key)
				continue
			}
			total++
			if !s.entry.Wants(rel) {
				continue
			}
			f, err := fileOf(rel, obj, region)
			if err != nil {
				// One broken entry never takes the mount down: it is
				// refused alone and the rest served.
				s.log.Error("refusing listed object", "listing", where, "err", err)
				continue
			}
			if hasFullSHA256(obj) || !f.Checksum.IsZero() {
				inspect = append(inspect, len(files))
			}
			files = append(files, f)
		}
		if !aws.ToBool(page.IsTruncated) {
			break
		}
		if aws.ToString(page.NextContinuationToken) == "" {
			return nil, fmt.Errorf("%s: the store said the listing is truncated but gave no continuation token", where)
		}
		token = page.NextContinuationToken
	}
	if len(skipped) > 0 {
		s.log.Warn("skipped objects whose keys are not usable as file paths (empty, '.' or '..' segments)",
			"count", len(skipped), "first", skipped[0])
	}
	if len(files) == 0 && total == 0 {
		return nil, fetch.Permanent(newErr([]error{ErrNoMatchingFiles}, nil,
			"%s: no objects at all under bucket %q prefix %q, so nothing for allow_patterns %q / ignore_patterns %q: check repo_id",
			s.entry.Name(), s.bucket, s.prefix, nonNil(s.entry.AllowPatterns), nonNil(s.entry.IgnorePatterns)))
	}
	if len(files) == 0 {
		return nil, fetch.Permanent(newErr([]error{ErrNoMatchingFiles}, nil,
			"%s: no object matches allow_patterns %q and ignore_patterns %q under bucket %q prefix %q (%d objects there)",
			s.entry.Name(), nonNil(s.entry.AllowPatterns), nonNil(s.entry.IgnorePatterns), s.bucket, s.prefix, total))
	}
	if err := s.inspect(ctx, c, files, inspect); err != nil {
		return nil, err
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return &fetch.Manifest{
		Volume:   s.entry.VolumeFolder,
		Kind:     "s3",
		RepoID:   s.entry.RepoID,
		Revision: "",
		Commit:   "",
		Resolved: resolved,
		Files:    files,
	}, nil
}

// relKey is key's path under prefix, and whether it names a file there: the
// prefix itself and "directory markers" (console folders, ending in '/') do
// not. The path may still be unusable; see fetch.ValidPath.
func relKey(prefix, key string) (string, bool) {
	rel, ok := strings.CutPrefix(key, prefix)
	return rel, ok && rel != "" && !strings.HasSuffix(rel, "/")
}

// fileOf turns a listed object at rel into a File pinned to its ETag. Its
// size is taken as listed (fetch.CheckManifest refuses impossible ones); a
// listing without a size or ETag cannot describe the object.
func fileOf(rel string, obj types.Object, region string) (fetch.File, error) {
	key := aws.ToString(obj.Key)
	etag := aws.ToString(obj.ETag)
	if etag == "" {
		return fetch.File{}, fmt.Errorf("object %q has no ETag; reads could not be pinned to it", key)
	}
	if obj.Size == nil {
		// Serving it as 0 bytes would hand loaders an empty file.
		return fetch.File{}, fmt.Errorf("object %q is listed without a size", key)
	}
	return fetch.File{Path: rel, Size: *obj.Size, Version: etag, Checksum: checksumOf(etag),
		Extra: map[string]string{ExtraRegion: region}}, nil
}

// checksumOf turns a listed ETag into a checksum: a single-part ETag is the
// content's MD5; a multipart one ("<md5 of md5s>-<parts>") verifies nothing.
// SSE-C and SSE-KMS objects have single-part-looking ETags that are not MD5s;
// the listing cannot tell them apart, so inspect confirms each one.
func checksumOf(etag string) fetch.Checksum {
	v := strings.ToLower(strings.Trim(etag, `"`))
	if md5ETagRE.MatchString(v) {
		return fetch.Checksum{Algo: fetch.AlgoMD5, Value: v}
	}
	return fetch.Checksum{}
}

// hasFullSHA256 reports whether the listing says the object carries a
// SHA-256 of its whole content (not a composite of parts).
func hasFullSHA256(obj types.Object) bool {
	if obj.ChecksumType != "" && obj.ChecksumType != types.ChecksumTypeFullObject {
		return false
	}
	for _, a := range obj.ChecksumAlgorithm {
		if a == types.ChecksumAlgorithmSha256 {
			return true
		}
	}
	return false
}

// inspect settles the checksum of each object in idx with one HeadObject
// (checksum mode on, If-Match the listed ETag), a few at a time:
//
//   - a full-object SHA-256, when the object has one, replaces the MD5;
//   - an SSE-KMS or SSE-C object's ETag is not the MD5 of its content, so
//     its MD5 is dropped (verifying with it would fail every download and
//     end in EIO);
//   - when the HEAD fails, the MD5 is dropped too: serving unverified is
//     better than failing on a checksum that was never confirmed.
//
// It fails only when ctx ends.
func (s *Source) inspect(ctx context.Context, c *s3.Client, files []fetch.File, idx []int) error {
	sem := make(chan struct{}, s.opts.ChecksumLookups)
	var wg sync.WaitGroup
	for _, i := range idx {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(f *fetch.File) {
			defer func() { <-sem; wg.Done() }()
			var out *s3.HeadObjectOutput
			err := s.retry.Do(ctx, func(ctx context.Context) error {
				o, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + f.Path),
					IfMatch: aws.String(f.Version), ChecksumMode: types.ChecksumModeEnabled})
				if err != nil {
					return s.classify(err, opInfo{op: "HeadObject s3://" + s.bucket + "/" + s.prefix + f.Path, what: s.where(f.Path), read: true})
				}
				out = o
				return nil
			})
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("could not confirm the object's checksum; serving it unverified", "path", f.Path, "err", err)
				}
				f.Checksum = fetch.Checksum{}
				return
			}
			if out.ChecksumType == "" || out.ChecksumType == types.ChecksumTypeFullObject {
				if raw, err := base64.StdEncoding.DecodeString(aws.ToString(out.ChecksumSHA256)); err == nil && len(raw) == 32 {
					f.Checksum = fetch.Checksum{Algo: fetch.AlgoSHA256, Value: hex.EncodeToString(raw)}
					return
				}
			}
			if f.Checksum.Algo == fetch.AlgoMD5 && (strings.HasPrefix(string(out.ServerSideEncryption), "aws:kms") || aws.ToString(out.SSECustomerAlgorithm) != "") {
				f.Checksum = fetch.Checksum{}
			}
		}(&files[i])
	}
	wg.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", s.entry.Name(), ctx.Err())
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
