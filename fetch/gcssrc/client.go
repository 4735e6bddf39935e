package gcssrc

import (
	"context"

	"cloud.google.com/go/storage"

	"github.com/weightfs/weightfs/fetch/config"
)

// NewClient builds a storage client for bucket exactly as a Source builds its own,
// for a user that is not a model_cache entry (the shared chunk cache): o's
// ServiceAccount, else Application Default Credentials (anonymous when
// there are none, unless o.Anonymous skips the lookup), no credentials at
// all for o's Emulator (JSON reads, as for an Endpoint), the library's
// retries off. Set o.ReadWrite for a client that writes. what names the
// user in messages (e.g. "--shared-cache gs://b/p"); none of them quotes a
// credential. Looking up ADC may probe the metadata server, under ctx.
func NewClient(ctx context.Context, what, bucket string, o Options) (*storage.Client, error) {
	s := New(config.Entry{RepoID: "gs://" + bucket, Kind: config.KindGCS}, o)
	s.what = what
	st, err := s.newClient(ctx)
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
