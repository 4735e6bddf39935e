package chunkcache

import (
	"context"
	"path"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Prefetcher streams every file of the mount into the cache in the order
// loaders want it:
//
//  1. small files (configs, tokenizers, index JSON) and the first chunk of
//     every safetensors file (its header);
//  2. tensor data in the loaders' order: tensors sorted by name in natural
//     order across the shards of a weight_map (what transformers does),
//     file by file otherwise;
//  3. anything left, in file order.
//
// It runs on the cache's background workers, behind readahead, and pauses
// while a reader waits on the network.
type Prefetcher struct {
	c       *Cache
	objs    []*Object
	total   int64
	started time.Time
	done    atomic.Bool
	planned atomic.Int64 // jobs handed to workers
}

// Progress is a snapshot of background streaming.
type Progress struct {
	TotalBytes  int64   `json:"total_bytes"`
	CachedBytes int64   `json:"cached_bytes"`
	Files       int     `json:"files"`
	FilesDone   int     `json:"files_done"` // complete and verified
	Failed      int     `json:"files_failed"`
	Complete    bool    `json:"complete"`
	Seconds     float64 `json:"seconds"`
}

// StartPrefetch plans and starts streaming objs. It returns at once.
func (c *Cache) StartPrefetch(ctx context.Context, objs []*Object) *Prefetcher {
	p := &Prefetcher{c: c, objs: objs, started: time.Now()}
	for _, o := range objs {
		p.total += o.file.Size
	}
	ch := make(chan job)
	c.sched.setPlan(ch)
	go p.produce(ctx, ch)
	go c.sched.adapt(ctx)
	return p
}

// Progress reports how much of the model is cached.
func (p *Prefetcher) Progress() Progress {
	pr := Progress{TotalBytes: p.total, Files: len(p.objs), Seconds: time.Since(p.started).Seconds()}
	for _, o := range p.objs {
		st := o.Stats()
		pr.CachedBytes += st.CachedBytes
		if o.Done() {
			pr.FilesDone++
		}
		if o.Failed() {
			pr.Failed++
		}
	}
	pr.Complete = pr.FilesDone == pr.Files
	return pr
}

// send hands one job to a worker, first following any reader hint.
func (p *Prefetcher) send(ctx context.Context, ch chan job, j job) bool {
	if o, idx := p.c.sched.takeHint(); o != nil {
		// Continue where the reader is, a bounded stretch ahead.
		for k := idx; k < min(o.nchunks, idx+32); k++ {
			if !o.Present(k) && !p.sendOne(ctx, ch, job{o: o, idx: k}) {
				return false
			}
		}
	}
	if j.o.Present(j.idx) {
		return true
	}
	return p.sendOne(ctx, ch, j)
}

func (p *Prefetcher) sendOne(ctx context.Context, ch chan job, j job) bool {
	if !p.c.planMayFetch(p.planned.Load()) { // a bounded cache (budget.go)
		return false
	}
	select {
	case ch <- j:
		p.planned.Add(1)
		return true
	case <-ctx.Done():
		return false
	case <-p.c.sched.quit:
		return false
	}
}

func (p *Prefetcher) produce(ctx context.Context, ch chan job) {
	defer close(ch)
	var small, st, rest []*Object
	for _, o := range p.objs {
		switch {
		case strings.HasSuffix(o.file.Path, ".safetensors"):
			st = append(st, o)
		case o.file.Size <= 4*p.c.opts.ChunkSize:
			small = append(small, o)
		default:
			rest = append(rest, o)
		}
	}
	sort.SliceStable(small, func(i, j int) bool { return small[i].file.Size < small[j].file.Size })
	sort.SliceStable(st, func(i, j int) bool { return naturalLess(st[i].file.Path, st[j].file.Path) })
	// Phase 1: small files and safetensors headers (each node of a fleet
	// starting at its own point of them, as in phase 2).
	var first []job
	for _, o := range small {
		for k := 0; k < o.nchunks; k++ {
			first = append(first, job{o: o, idx: k})
		}
	}
	for _, o := range st {
		if o.nchunks > 0 {
			first = append(first, job{o: o, idx: 0})
		}
	}
	for _, j := range p.spread(first) {
		if !p.send(ctx, ch, j) {
			return
		}
	}
	// Phase 2: tensor data in loader order.
	for _, j := range p.spread(p.tensorOrder(ctx, st)) {
		if !p.send(ctx, ch, j) {
			return
		}
	}
	// Phase 3: everything else.
	all := append(st, rest...)
	for _, o := range all {
		for k := 0; k < o.nchunks; k++ {
			if !p.send(ctx, ch, job{o: o, idx: k}) {
				return
			}
		}
	}
	// Phase 4, with a shared tier: the chunks other nodes were fetching
	// when the plan reached them (put off, see ensurePlan), read as they
	// land (gather.go).
	if p.c.opts.Shared != nil {
		p.gather(ctx, ch, append(small, all...))
	}
}

// spread rotates the plan's order by this node's place in the fleet (a
// hash of its lease holder name) when a shared tier is set: the nodes of a
// fleet then start their prefetch at different points of the model and
// rarely reach for one chunk at the same moment, which matters most where
// the store's exclusive create is weak (two racing creates on a DFS both
// succeed). Readers are unaffected: demand and readahead come first, and
// the plan follows a reader's hint.
func (p *Prefetcher) spread(jobs []job) []job {
	t := p.c.opts.Shared
	if t == nil || len(jobs) < 2 {
		return jobs
	}
	k := t.Spread(len(jobs))
	return append(append(make([]job, 0, len(jobs)), jobs[k:]...), jobs[:k]...)
}

// tensorOrder lists the chunks of the safetensors files in the order their
// tensors are loaded. Headers come from the cache (phase 1 fetched them).
func (p *Prefetcher) tensorOrder(ctx context.Context, st []*Object) []job {
	type span struct {
		o *Object
		tensorSpan
	}
	// Group shards by folder: a weight_map index applies to its folder.
	groups := map[string][]*Object{}
	var dirs []string
	for _, o := range st {
		d := path.Dir(o.file.Path)
		if _, ok := groups[d]; !ok {
			dirs = append(dirs, d)
		}
		groups[d] = append(groups[d], o)
	}
	var out []job
	seen := map[job]bool{}
	for _, d := range dirs {
		shards := groups[d]
		indexed := p.hasIndex(ctx, d, shards)
		var spans []span
		for _, o := range shards {
			hctx, cancel := context.WithTimeout(ctx, p.c.opts.FetchTimeout)
			ts, err := readSpans(hctx, o)
			cancel()
			if err != nil {
				p.c.log.Debug("prefetch: no header order", "file", o.file.Path, "err", err)
				continue
			}
			if !indexed {
				// Without an index loaders go file by file.
				sortSpansNatural(ts)
				for _, t := range ts {
					spans = append(spans, span{o, t})
				}
				continue
			}
			for _, t := range ts {
				spans = append(spans, span{o, t})
			}
		}
		if indexed {
			sort.SliceStable(spans, func(i, j int) bool { return naturalLess(spans[i].Name, spans[j].Name) })
		}
		cs := p.c.opts.ChunkSize
		for _, s := range spans {
			if s.End <= s.Begin {
				continue
			}
			for k := int(s.Begin / cs); k <= int((s.End-1)/cs); k++ {
				j := job{o: s.o, idx: k}
				if !seen[j] {
					seen[j] = true
					out = append(out, j)
				}
			}
		}
	}
	return out
}

// hasIndex reports whether folder d has a *.safetensors.index.json whose
// weight_map names these shards.
func (p *Prefetcher) hasIndex(ctx context.Context, d string, shards []*Object) bool {
	if len(shards) < 2 {
		return false
	}
	for _, o := range p.objs {
		if path.Dir(o.file.Path) != d || !strings.HasSuffix(o.file.Path, ".safetensors.index.json") || o.file.Size > 64<<20 {
			continue
		}
		b := make([]byte, o.file.Size)
		ictx, cancel := context.WithTimeout(ctx, p.c.opts.FetchTimeout)
		_, err := o.readInternal(ictx, b, 0)
		cancel()
		if err != nil {
			continue
		}
		if _, err := parseIndex(o.file.Path, b); err == nil {
			return true
		}
	}
	return false
}
