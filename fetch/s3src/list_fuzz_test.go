package s3src

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/fetchtest"
	"github.com/weightfs/weightfs/fetch/objstore"
)

var md5Hex = regexp.MustCompile(`^[0-9a-f]{32}$`)

// One object of a ListObjectsV2 page, as the SDK hands it over (it owns the
// XML), through what weightfs owns: the key becomes a path under the
// prefix, the ETag pins and may verify it, and fetch.CheckManifest (which
// every listing goes through before a mount) refuses impossible sizes and
// paths. A neighbour "a" or "a/b" is listed beside it to reach the
// file/directory collision.
//
// The seed without a size fails before this change: it became a 0-byte file.
func FuzzS3Object(f *testing.F) {
	const etag = `"9e107d9d372bb6826bd81d3542a419d6"`
	f.Add("models/llama/", "models/llama/config.json", true, int64(12), etag, "")
	f.Add("models/llama", "models/llama2/x.bin", true, int64(1), `"abc-2"`, "a")
	f.Add("", "a/b", true, int64(1), etag, "a")
	f.Add("", "a", true, int64(1), etag, "a/b")
	for _, size := range []int64{1 << 60, math.MaxInt64, -1, math.MinInt64, 0} {
		f.Add("p/", "p/model.safetensors", true, size, etag, "")
	}
	f.Add("p/", "p/model.safetensors", false, int64(0), etag, "")
	for _, key := range []string{"p/..", "p/a/../b", "p/../../etc/passwd", "p//a", "p/a/", "p/", "p/./a",
		"p/x\x00y", "p/new\nline", "p/esc\x1b[2J", "q/outside", "p/" + strings.Repeat("x", 256)} {
		f.Add("p/", key, true, int64(1), etag, "")
	}
	f.Add("p/", "p/a", true, int64(1), "", "")
	f.Add("p/", "p/a", true, int64(1), `W/"9E107D9D372BB6826BD81D3542A419D6"`, "")
	f.Fuzz(func(t *testing.T, prefix, key string, hasSize bool, size int64, etag, neighbour string) {
		// objstore.FuzzRelPath holds the path itself.
		rel, isFile := objstore.RelPath(prefix, key)
		if !isFile || !fetch.ValidPath(rel) {
			return // not a file, or List skips it with a warning
		}
		obj := types.Object{Key: aws.String(key), ETag: aws.String(etag)}
		if hasSize {
			obj.Size = aws.Int64(size)
		}
		fl, err := fileOf(rel, obj, "us-east-1")
		if (err != nil) != (etag == "" || !hasSize) {
			t.Fatalf("object %q size %v etag %q: error %v", key, hasSize, etag, err)
		}
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(key)) {
				t.Fatalf("error does not name the object: %v", err)
			}
			return
		}
		if fl.Path != rel || fl.Size != size || fl.Version != etag || fl.Extra[ExtraRegion] != "us-east-1" {
			t.Fatalf("object %q became %+v", key, fl)
		}
		if c := fl.Checksum; !c.IsZero() && (c.Algo != fetch.AlgoMD5 || !md5Hex.MatchString(c.Value) ||
			!strings.Contains(strings.ToLower(etag), c.Value)) {
			t.Fatalf("ETag %q gave checksum %s", etag, c)
		}
		fetchtest.CheckListed(t, fl, neighbour)
	})
}
