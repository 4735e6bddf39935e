package s3src

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/weightfs/weightfs/fetch"
)

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
	err := s.b.Retry.Do(ctx, func(ctx context.Context) error {
		var err error
		c, err = s.getClient(ctx, "")
		return err
	})
	if err != nil {
		return nil, err
	}
	region, _ := s.region()
	var (
		l           = s.b.NewListing("keys")
		inspect     []int // indexes into l.Files() worth a HeadObject (see inspect)
		token       *string
		pageSize    = s.opts.PageSize
		prefixInput *string
	)
	if s.b.Prefix != "" {
		prefixInput = aws.String(s.b.Prefix)
	}
	for {
		if err := l.Page(); err != nil {
			return nil, err
		}
		var page *s3.ListObjectsV2Output
		err := s.b.Retry.Do(ctx, func(ctx context.Context) error {
			out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
				Bucket: aws.String(s.b.Name), Prefix: prefixInput, ContinuationToken: token, MaxKeys: aws.Int32(pageSize),
			})
			if err != nil {
				return s.classify(err, opInfo{op: "ListObjectsV2 " + s.b.URL(s.b.Prefix), what: l.Where()})
			}
			page = out
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, obj := range page.Contents {
			kept := l.Add(aws.ToString(obj.Key), func(rel string) (fetch.File, error) { return fileOf(rel, obj, region) })
			if files := l.Files(); kept && (hasFullSHA256(obj) || !files[len(files)-1].Checksum.IsZero()) {
				inspect = append(inspect, len(files)-1)
			}
		}
		if !aws.ToBool(page.IsTruncated) {
			break
		}
		if aws.ToString(page.NextContinuationToken) == "" {
			return nil, fmt.Errorf("%s: the store said the listing is truncated but gave no continuation token", l.Where())
		}
		token = page.NextContinuationToken
	}
	// Before Done sorts them: inspect holds indexes in listing order.
	if err := s.inspect(ctx, c, l.Files(), inspect); err != nil {
		return nil, err
	}
	files, err := l.Done()
	if err != nil {
		return nil, err
	}
	return &fetch.Manifest{
		Volume:   s.b.Entry.VolumeFolder,
		Kind:     "s3",
		RepoID:   s.b.Entry.RepoID,
		Revision: "",
		Commit:   "",
		Resolved: resolved,
		Files:    files,
	}, nil
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
			err := s.b.Retry.Do(ctx, func(ctx context.Context) error {
				o, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.b.Name), Key: aws.String(s.b.Prefix + f.Path),
					IfMatch: aws.String(f.Version), ChecksumMode: types.ChecksumModeEnabled})
				if err != nil {
					return s.classify(err, opInfo{op: "HeadObject s3://" + s.b.Name + "/" + s.b.Prefix + f.Path, what: s.b.Where(f.Path), read: true})
				}
				out = o
				return nil
			})
			if err != nil {
				if ctx.Err() == nil {
					s.b.Log.Warn("could not confirm the object's checksum; serving it unverified", "path", f.Path, "err", err)
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
		return fmt.Errorf("%s: %w", s.b.Entry.Name(), ctx.Err())
	}
	return nil
}
