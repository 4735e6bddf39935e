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
}

// sched runs background fetches: readahead (the loader's near future)
// before the whole-model prefetch plan. Demand reads are never queued here:
// they fetch at once, and while any reader waits on the network no new plan
// job starts, so prefetch never competes with a reader for the link.
type sched struct {
	c        *Cache
	urgentCh chan job
	quit     chan struct{}
	ctx      context.Context // canceled by stop, so Close never waits on a fetch
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	planMu sync.Mutex
	planCh chan job // GUARDED_BY(planMu); nil until a prefetch starts

	target  atomic.Int32 // plan workers allowed now (adaptive)
	waiting atomic.Int32 // readers blocked on the network right now

	hintMu  sync.Mutex
	hintObj *Object // GUARDED_BY(hintMu): where demand went last
	hintIdx int     // GUARDED_BY(hintMu)
}

func newSched(c *Cache) *sched {
	s := &sched{c: c, urgentCh: make(chan job, 4096), quit: make(chan struct{})}
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

func (s *sched) worker(id int32) {
	defer s.wg.Done()
	idle := time.NewTimer(time.Hour)
	defer idle.Stop()
	for {
		select {
		case j := <-s.urgentCh:
			s.run(j)
			continue
		case <-s.quit:
			return
		default:
		}
		plan := s.plan()
		if plan == nil || id >= s.target.Load() || s.waiting.Load() > 0 {
			// Only readahead for this worker now; look again soon.
			idle.Reset(5 * time.Millisecond)
			select {
			case j := <-s.urgentCh:
				s.run(j)
			case <-idle.C:
			case <-s.quit:
				return
			}
			continue
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
				if s.planCh == plan {
					s.planCh = nil
				}
				s.planMu.Unlock()
			}
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
	if err := j.o.Ensure(ctx, j.idx); err != nil {
		s.c.log.Debug("background fetch failed", "file", j.o.file.Path, "chunk", j.idx, "err", err)
	}
}
