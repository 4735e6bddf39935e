package main

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/weightfs/weightfs/integration/hubemu"
	"github.com/weightfs/weightfs/integration/modelgen"
)

// s3Bucket and the S3 credentials the emulator is addressed with (it does not
// check them; the tools insist on having some).
const (
	s3Bucket = "bench"
	s3Key    = "BENCHKEYID0000000001"
	s3Secret = "benchsecretbenchsecretbenchsecret0000000"
)

// fileInfo is one file of a model: its path relative to the model root.
type fileInfo struct {
	rel  string
	size int64
}

// origin is one generated model, served by the Hub emulator (and, for the
// main size, by the S3 emulator too).
type origin struct {
	sizeMB int64
	dir    string
	repoID string // Hub repo ID
	prefix string // S3 key prefix ("" when not in S3)
	model  *modelgen.Model
	files  []fileInfo // every file, in path order
	total  int64
	sums   map[string]string // rel -> sha256 hex
}

// shardBytes is the size of the safetensors files (what the transformers
// loader maps).
func (o *origin) shardBytes() int64 {
	var n int64
	for _, f := range o.files {
		if o.isShard(f.rel) {
			n += f.size
		}
	}
	return n
}

func (o *origin) isShard(rel string) bool {
	for _, s := range o.model.Safetensors {
		if s == rel {
			return true
		}
	}
	return false
}

// newOrigin generates a model of sizeMB and hashes its files.
func newOrigin(root string, sizeMB int64, shards int) (*origin, error) {
	if shards <= 0 {
		shards = max(2, int((sizeMB+511)/512))
	}
	dir := filepath.Join(root, fmt.Sprintf("model-%dMiB", sizeMB))
	os.RemoveAll(dir)
	m, err := modelgen.Generate(dir, modelgen.Spec{TotalSize: sizeMB << 20, Shards: shards, Seed: 42})
	if err != nil {
		return nil, err
	}
	o := &origin{sizeMB: sizeMB, dir: dir, repoID: fmt.Sprintf("bench/model-%dmib", sizeMB), model: m, sums: map[string]string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(m.Files))
	for _, rel := range m.Files {
		st, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			return nil, err
		}
		o.files = append(o.files, fileInfo{rel, st.Size()})
		o.total += st.Size()
		wg.Add(1)
		go func() {
			defer wg.Done()
			sum, err := modelgen.SHA256File(filepath.Join(dir, rel))
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			o.sums[rel] = sum
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return nil, err
	}
	return o, nil
}

// s3Origin is gofakes3 (in memory) behind the same CDN throttle as the Hub
// emulator's, with counters like the Hub emulator's.
type s3Origin struct {
	backend  *s3mem.Backend
	srv      *http.Server
	url      string
	requests atomic.Int64
	bytes    atomic.Int64
}

func newS3Origin(o hubemu.Options) (*s3Origin, error) {
	s := &s3Origin{backend: s3mem.New()}
	if err := s.backend.CreateBucket(s3Bucket); err != nil {
		return nil, err
	}
	faker := gofakes3.New(s.backend, gofakes3.WithLogger(gofakes3.DiscardLog()))
	inner := faker.Server()
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		inner.ServeHTTP(&countingWriter{ResponseWriter: w, n: &s.bytes}, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.url = "http://" + ln.Addr().String()
	// ErrorLog: gofakes3 writes a second header when a client hangs up
	// mid-body (rclone does, on seeks); net/http's complaint is noise here.
	s.srv = &http.Server{Handler: hubemu.Throttle(counted, o), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)}
	go s.srv.Serve(ln)
	return s, nil
}

// add uploads every file of the origin under prefix/.
func (s *s3Origin) add(o *origin, prefix string) error {
	for _, f := range o.files {
		fh, err := os.Open(filepath.Join(o.dir, f.rel))
		if err != nil {
			return err
		}
		// The metadata an upload through the S3 API would have stored;
		// without Last-Modified, s3fs serves zeros instead of reading.
		meta := map[string]string{"Last-Modified": time.Now().UTC().Format(http.TimeFormat), "Content-Type": "application/octet-stream"}
		_, err = s.backend.PutObject(s3Bucket, prefix+"/"+f.rel, meta, fh, f.size, nil)
		fh.Close()
		if err != nil {
			return fmt.Errorf("s3 emulator: put %s: %w", f.rel, err)
		}
	}
	o.prefix = prefix
	return nil
}

func (s *s3Origin) reset() { s.requests.Store(0); s.bytes.Store(0) }

func (s *s3Origin) close() { s.srv.Close() }

// countingWriter counts body bytes. Like the throttle's writer it has no
// ReadFrom, so every byte passes through Write.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	k, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(k))
	return k, err
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// originCounters reads and resets the counters of whichever origin a
// configuration uses, so each run reports what it cost the origin.
type originCounters interface {
	reset()
	read() (requests, bytes int64)
}

type hubCounters struct{ h *hubemu.Server }

func (c hubCounters) reset() { c.h.ResetCounters() }
func (c hubCounters) read() (int64, int64) {
	return c.h.ContentRequests() + c.h.APIRequests(), c.h.BytesServed()
}

type s3Counters struct{ s *s3Origin }

func (c s3Counters) reset()               { c.s.reset() }
func (c s3Counters) read() (int64, int64) { return c.s.requests.Load(), c.s.bytes.Load() }
