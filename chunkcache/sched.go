package chunkcache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// job asks for one chunk of one object.
type job struct {
	o   *Object
	idx int
	// patient: wait for a chunk another node of the fleet is fetching
	// rather than move on (readahead); final: the plan's last pass, which
	// also waits for the chunks other nodes own (shared.Patient); own:
	// the last pass's job for a chunk this node owns (gather.go).
	patient, final, own bool
}

// sched runs background fetches: readahead (the loader's near future)
// before the whole-model prefetch plan. Demand reads are never queued here:
// they fetch at once, and while any reader waits on the network no new plan
// job starts, so prefetch never competes with a reader for the link.
//
// Workers sleep in a select on the queues and on gate, a channel closed
// whenever what they may take changes (a reader starts or stops waiting,
// the plan starts, the adaptive target moves): an idle daemon has no timer
// armed and no counter polled.
type sched struct {
	c        *Cache
	urgentCh chan job
	quit     chan struct{}
	ctx      context.Context // canceled by stop, so Close never waits on a fetch
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	planMu sync.Mutex
	planCh chan job // GUARDED_BY(planMu); nil until a prefetch starts

	target  atomic.Int32 // plan workers allowed now (adaptive); change it with setTarget
	waiting atomic.Int32 // readers blocked on the network right now; see readerWaits

	gateMu sync.Mutex
	gate   chan struct{} // GUARDED_BY(gateMu); closed and replaced by changed

	hintMu  sync.Mutex
	hintObj *Object // GUARDED_BY(hintMu): where demand went last
	hintIdx int     // GUARDED_BY(hintMu)
}

func newSched(c *Cache) *sched {
	s := &sched{c: c, urgentCh: make(chan job, 4096), quit: make(chan struct{}), gate: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.target.Store(int32(c.opts.MaxWorkers))
	for i := 0; i < c.opts.MaxWorkers; i++ {
		s.wg.Add(1)
		go s.worker(int32(i))
	}
	return s
}

func (s *sched) stop() {
	close(s.quit)
	s.cancel()
	s.wg.Wait()
}

// urgent queues readahead; when the queue is full the job is dropped (the
// reader will fetch it on demand).
func (s *sched) urgent(j job) {
	select {
	case s.urgentCh <- j:
	default:
	}
}

// hint tells the plan where a reader went, so it continues from there.
func (s *sched) hint(o *Object, idx int) {
	s.hintMu.Lock()
	s.hintObj, s.hintIdx = o, idx
	s.hintMu.Unlock()
}

func (s *sched) takeHint() (*Object, int) {
	s.hintMu.Lock()
	defer s.hintMu.Unlock()
	o, idx := s.hintObj, s.hintIdx
	s.hintObj = nil
	return o, idx
}

func (s *sched) plan() chan job {
	s.planMu.Lock()
	defer s.planMu.Unlock()
	return s.planCh
}

// setPlan installs (or, with nil, retires) the prefetch plan.
func (s *sched) setPlan(ch chan job) {
	s.planMu.Lock()
	s.planCh = ch
	s.planMu.Unlock()
	s.changed()
}

// changed wakes every worker to look again at what it may take.
func (s *sched) changed() {
	s.gateMu.Lock()
	close(s.gate)
	s.gate = make(chan struct{})
	s.gateMu.Unlock()
}

func (s *sched) gateCh() chan struct{} {
	s.gateMu.Lock()
	defer s.gateMu.Unlock()
	return s.gate
}

// readerWaits and readerDone bracket a reader blocked on the network: the
// plan pauses while any is, so prefetch never competes with it.
func (s *sched) readerWaits() {
	if s.waiting.Add(1) == 1 {
		s.changed()
	}
}

func (s *sched) readerDone() {
	if s.waiting.Add(-1) == 0 {
		s.changed()
	}
}

func (s *sched) setTarget(n int32) {
	if s.target.Swap(n) != n {
		s.changed()
	}
}

func (s *sched) worker(id int32) {
	defer s.wg.Done()
	for {
		select {
		case j := <-s.urgentCh:
			s.run(j)
			continue
		case <-s.quit:
			return
		default:
		}
		// The gate is taken before the conditions are read, so a change
		// made after the read closes this very channel.
		gate := s.gateCh()
		var plan chan job // nil (never ready) unless this worker may take plan jobs now
		if p := s.plan(); p != nil && id < s.target.Load() && s.waiting.Load() == 0 {
			plan = p
		}
		select {
		case j := <-s.urgentCh:
			s.run(j)
		case j, ok := <-plan:
			if ok {
				// select picks at random among ready cases: readahead
				// queued meanwhile still goes first.
				s.runUrgent()
				s.run(j)
			} else {
				s.planMu.Lock()
				retired := s.planCh == plan
				if retired {
					s.planCh = nil
				}
				s.planMu.Unlock()
				if retired {
					s.changed()
				}
			}
		case <-gate:
		case <-s.quit:
			return
		}
	}
}

// runUrgent runs queued readahead until there is none.
func (s *sched) runUrgent() {
	for {
		select {
		case j := <-s.urgentCh:
			s.run(j)
		default:
			return
		}
	}
}

func (s *sched) run(j job) {
	if j.o.Present(j.idx) {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.c.opts.FetchTimeout)
	defer cancel()
	ensure := j.o.ensurePlan
	switch {
	case j.final:
		ensure = j.o.ensureFinal
	case j.patient:
		ensure = j.o.Ensure
	}
	if err := ensure(ctx, j.idx); err != nil {
		s.c.log.Debug("background fetch failed", "file", j.o.file.Path, "chunk", j.idx, "err", err)
	}
}

// adapt tunes how many plan workers run: more while throughput grows,
// fewer when adding them made it worse (a slow link gains nothing from
// more connections but latency for readers).
func (s *sched) adapt(ctx context.Context) {
	maxW := int32(s.c.opts.MaxWorkers)
	minW := max(maxW/4, 1)
	s.setTarget(max(maxW/2, minW))
	// The ticker runs only while the plan does: once every plan job is
	// taken there is nothing left to tune.
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := s.c.fetchedBytes.Load()
	var lastRate float64
	grew := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.quit:
			return
		case <-t.C:
		}
		if s.plan() == nil {
			s.setTarget(maxW)
			return
		}
		now := s.c.fetchedBytes.Load()
		rate := float64(now - last)
		last = now
		cur := s.target.Load()
		switch {
		case rate == 0:
			// Idle (done, paused or offline): nothing to learn.
		case grew && rate < lastRate*0.9 && cur > minW:
			s.setTarget(cur - 1)
			grew = false
		case rate >= lastRate*1.05 && cur < maxW:
			s.setTarget(min(cur+2, maxW))
			grew = true
		default:
			grew = false
		}
		lastRate = rate
	}
}
