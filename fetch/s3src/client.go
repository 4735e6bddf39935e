package s3src

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/weightfs/weightfs/fetch/config"
)

// NewClient builds an S3 client for bucket exactly as a Source builds its
// own, for a user that is not a model_cache entry (the shared chunk cache):
// o's static Credentials, else the default AWS credential chain (anonymous
// when it finds nothing); o's Region, else the profile's, else the one the
// bucket names in x-amz-bucket-region; o's Endpoint with path-style
// addressing for S3-compatible stores; the SDK's retries off. what names
// the user in messages (e.g. "--shared-cache s3://b/p"); none of them
// quotes a credential. Only the region lookup contacts the store, under
// ctx.
func NewClient(ctx context.Context, what, bucket string, o Options) (*s3.Client, error) {
	s := New(config.Entry{RepoID: "s3://" + bucket, Kind: config.KindS3}, o)
	s.what = what
	st, err := s.newClient(ctx, "")
	if err != nil {
		return nil, err
	}
	return st.c, nil
}

// name names the client's user in messages: the entry, or NewClient's what.
func (s *Source) name() string {
	if s.what != "" {
		return s.what
	}
	return s.b.Entry.Name()
}
