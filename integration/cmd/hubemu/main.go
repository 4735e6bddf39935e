// Command hubemu serves directories as Hugging Face Hub repos over HTTP, with
// a separate CDN listener for LFS files and optional CDN-like throttling, so
// benchmarks can point any Hub client (weightfs, rclone, huggingface_hub) at
// HF_ENDPOINT on this machine. It prints the Hub URL on the first line of
// stdout and serves until SIGINT or SIGTERM.
//
//	hubemu -repo acme/llama=/data/llama -per-conn-rate 50MB -aggregate-rate 1.25GB -ttfb 100ms
//	hubemu -gen-size 2GiB -gen-repo acme/bench
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weightfs/weightfs/integration/hubemu"
	"github.com/weightfs/weightfs/integration/modelgen"
)

type repoFlags []string

func (r *repoFlags) String() string     { return strings.Join(*r, ",") }
func (r *repoFlags) Set(v string) error { *r = append(*r, v); return nil }

func main() {
	var repos repoFlags
	addr := flag.String("addr", "127.0.0.1:0", "Hub listen address")
	cdnAddr := flag.String("cdn-addr", "127.0.0.1:0", "CDN listen address (its URLs name the host localhost)")
	flag.Var(&repos, "repo", "org/name=DIR to serve (repeatable)")
	commit := flag.String("commit", "", "40-hex commit for every repo (default: derived from the content)")
	token := flag.String("token", "", "token accepted for gated/private repos")
	gated := flag.Bool("gated", false, "serve every repo as gated (needs -token)")
	pageSize := flag.Int("page-size", 50, "tree API entries per page")
	perConn := flag.String("per-conn-rate", "0", "per-response byte rate, e.g. 50MB (0 = unlimited)")
	aggregate := flag.String("aggregate-rate", "0", "total byte rate over all responses, e.g. 1.25GB (0 = unlimited)")
	ttfb := flag.Duration("ttfb", 0, "delay before each content response, e.g. 100ms")
	genSize := flag.String("gen-size", "", "generate a model of this size (e.g. 2GiB) and serve it")
	genRepo := flag.String("gen-repo", "weightfs/gen-model", "repo id of the generated model")
	genLayout := flag.String("gen-layout", "llm", "generated layout: llm or diffusers")
	genShards := flag.Int("gen-shards", 0, "safetensors shards of the generated model (0 = one per 512 MiB)")
	genSeed := flag.Uint64("gen-seed", 1, "seed of the generated tensor bytes")
	genDir := flag.String("gen-dir", "", "where to generate (default: a temp dir removed at exit)")
	verbose := flag.Bool("v", false, "log every request to stderr")
	flag.Parse()

	perConnRate, err := parseBytes(*perConn)
	check(err)
	aggregateRate, err := parseBytes(*aggregate)
	check(err)
	opts := hubemu.Options{
		Token: *token, PageSize: *pageSize, HubAddr: *addr, CDNAddr: *cdnAddr,
		PerConnBytesPerSec: perConnRate, AggregateBytesPerSec: aggregateRate, TTFB: *ttfb,
	}
	if *verbose {
		opts.Logf = log.Printf
	}

	var cleanup func()
	if *genSize != "" {
		size, err := parseBytes(*genSize)
		check(err)
		dir := *genDir
		if dir == "" {
			dir, err = os.MkdirTemp("", "hubemu-gen-")
			check(err)
			cleanup = func() { os.RemoveAll(dir) }
		}
		start := time.Now()
		m, err := modelgen.Generate(dir, modelgen.Spec{TotalSize: size, Shards: *genShards, Layout: *genLayout, Seed: *genSeed})
		check(err)
		log.Printf("generated %s: %d files, %d bytes in %s (%v)", dir, len(m.Files), m.TotalBytes, time.Since(start).Round(time.Millisecond), m.Safetensors)
		repos = append(repos, *genRepo+"="+dir)
	}
	if len(repos) == 0 {
		fmt.Fprintln(os.Stderr, "hubemu: nothing to serve: give -repo org/name=DIR or -gen-size")
		os.Exit(2)
	}

	s, err := hubemu.New(opts)
	check(err)
	for _, r := range repos {
		id, dir, ok := strings.Cut(r, "=")
		if !ok {
			check(fmt.Errorf("-repo %q: want org/name=DIR", r))
		}
		start := time.Now()
		check(s.AddRepo(hubemu.Repo{ID: id, Dir: dir, Commit: *commit, Gated: *gated}))
		c, _ := s.RepoCommit(id, "main")
		log.Printf("serving %s from %s at commit %s (hashed in %s)", id, dir, c, time.Since(start).Round(time.Millisecond))
	}
	fmt.Println(s.URL())
	log.Printf("hub %s, cdn %s; HF_ENDPOINT=%s", s.URL(), s.CDNURL(), s.URL())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	s.Close()
	log.Printf("served %d content requests, %d API requests, %d bytes", s.ContentRequests(), s.APIRequests(), s.BytesServed())
	if cleanup != nil {
		cleanup()
	}
}

// parseBytes reads "1048576", "512MiB", "1.25GB" or "50MB/s" (SI and IEC
// units, case-insensitive).
func parseBytes(v string) (int64, error) {
	s := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(v)), "/s")
	units := []struct {
		suffix string
		mult   float64
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
		{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
		{"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"b", 1},
	}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bad byte count %q (want e.g. 1048576, 512MiB, 1.25GB)", v)
	}
	return int64(f * mult), nil
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "hubemu:", err)
		os.Exit(1)
	}
}
