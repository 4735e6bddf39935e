package gcssrc

import (
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"cloud.google.com/go/storage"

	"github.com/weightfs/weightfs/fetch"
	"github.com/weightfs/weightfs/fetch/fetchtest"
	"github.com/weightfs/weightfs/fetch/objstore"
)

// One object of a GCS listing, as the client library hands it over (it
// owns the JSON), through what weightfs owns: the name becomes a path under
// the prefix, the generation pins it, MD5 or CRC32C verifies it, and
// fetch.CheckManifest (which every listing goes through before a mount)
// refuses impossible sizes and paths. A neighbour "a" or "a/b" is listed
// beside it to reach the file/directory collision.
func FuzzGCSObject(f *testing.F) {
	md5 := []byte("0123456789abcdef")
	f.Add("models/llama/", "models/llama/config.json", int64(12), int64(1700000000000000), md5, uint32(0xdeadbeef), "")
	f.Add("models/llama", "models/llama2/x.bin", int64(1), int64(1), []byte(nil), uint32(0), "a")
	f.Add("", "a/b", int64(1), int64(1), md5, uint32(1), "a")
	f.Add("", "a", int64(1), int64(1), md5[:15], uint32(1), "a/b")
	// The JSON API sends sizes as uint64 strings: 2^64-1 arrives as -1.
	for _, size := range []int64{1 << 60, math.MaxInt64, -1, math.MinInt64, 0} {
		f.Add("p/", "p/model.safetensors", size, int64(7), md5, uint32(7), "")
	}
	for _, gen := range []int64{0, -1, math.MinInt64, math.MaxInt64} {
		f.Add("p/", "p/a", int64(1), gen, md5, uint32(7), "")
	}
	for _, name := range []string{"p/..", "p/a/../b", "p/../../etc/passwd", "p//a", "p/a/", "p/", "p/./a",
		"p/x\x00y", "p/new\nline", "p/esc\x1b[2J", "q/outside", "p/" + strings.Repeat("x", 256)} {
		f.Add("p/", name, int64(1), int64(1), md5, uint32(1), "")
	}
	f.Fuzz(func(t *testing.T, prefix, name string, size, gen int64, md5 []byte, crc uint32, neighbour string) {
		// objstore.FuzzRelPath holds the path itself.
		rel, isFile := objstore.RelPath(prefix, name)
		if !isFile || !fetch.ValidPath(rel) {
			return // not a file, or List skips it with a warning
		}
		o := &storage.ObjectAttrs{Name: name, Size: size, Generation: gen, MD5: md5, CRC32C: crc}
		fl, err := fileOf(rel, o)
		if (err != nil) != (gen <= 0) {
			t.Fatalf("object %q generation %d: error %v", name, gen, err)
		}
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(name)) {
				t.Fatalf("error does not name the object: %v", err)
			}
			return
		}
		if fl.Path != rel || fl.Size != size || fl.Version != strconv.FormatInt(gen, 10) {
			t.Fatalf("object %q became %+v", name, fl)
		}
		want := fetch.Checksum{Algo: fetch.AlgoCRC32C, Value: fmt.Sprintf("%08x", crc)}
		if len(md5) == 16 {
			want = fetch.Checksum{Algo: fetch.AlgoMD5, Value: hex.EncodeToString(md5)}
		}
		if fl.Checksum != want {
			t.Fatalf("object %q: checksum %s, want %s", name, fl.Checksum, want)
		}
		fetchtest.CheckListed(t, fl, neighbour)
	})
}
