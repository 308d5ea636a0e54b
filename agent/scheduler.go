package agent

import (
	"context"
	"sync"
	"time"

	"github.com/virtmq/virtmq/agent/virt"
)

// job is what a domain's worker does next.
type job struct {
	guest  bool // run the guest step (then verify)
	verify bool // verify over QMP
}

func (j job) merge(o job) job { return job{guest: j.guest || o.guest, verify: j.verify || o.verify} }

// runFunc runs one attempt of a job; it reports whether the job should be
// tried again later (a transient failure).
type runFunc func(ctx context.Context, d virt.Domain, j job, attempt int) (retry bool)

// scheduler runs jobs with at most one worker per domain and a global
// limit on workers running at once. Jobs for a domain whose worker is busy
// are merged into one follow-up run; a job that asks for a retry is run
// again after a growing delay (without holding a concurrency slot) until it
// has been tried attempts times or a new job for the domain arrives.
type scheduler struct {
	ctx      context.Context
	sem      chan struct{}
	attempts int
	delay    time.Duration
	run      runFunc

	mu    sync.Mutex
	slots map[string]*slot
	wg    sync.WaitGroup
}

type slot struct {
	d       virt.Domain
	next    job
	has     bool // next holds a job to run
	attempt int  // attempts of the current job so far
}

func newScheduler(ctx context.Context, concurrency, attempts int, delay time.Duration, run runFunc) *scheduler {
	return &scheduler{
		ctx:      ctx,
		sem:      make(chan struct{}, concurrency),
		attempts: attempts,
		delay:    delay,
		run:      run,
		slots:    map[string]*slot{},
	}
}

// schedule queues j for d. It never blocks.
func (s *scheduler) schedule(d virt.Domain, j job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	key := domainKey(d)
	if sl := s.slots[key]; sl != nil {
		sl.d, sl.next, sl.has, sl.attempt = d, sl.next.merge(j), true, 0
		return
	}
	sl := &slot{d: d, next: j, has: true}
	s.slots[key] = sl
	s.wg.Add(1)
	go s.work(key, sl)
}

// work is the domain's worker: it runs the slot's job until none is left.
func (s *scheduler) work(key string, sl *slot) {
	defer s.wg.Done()
	delay := s.delay
	for {
		select {
		case s.sem <- struct{}{}:
		case <-s.ctx.Done():
			s.remove(key)
			return
		}
		s.mu.Lock()
		j, d := sl.next, sl.d
		sl.next, sl.has = job{}, false
		sl.attempt++
		attempt := sl.attempt
		s.mu.Unlock()

		retry := s.run(s.ctx, d, j, attempt)
		<-s.sem

		s.mu.Lock()
		switch {
		case retry && sl.has:
			// A new job arrived meanwhile: run both now, with fresh attempts.
			sl.next = sl.next.merge(j)
			retry = false
		case retry && attempt < s.attempts:
			sl.next, sl.has = j, true
		default:
			retry = false
		}
		if !sl.has {
			delete(s.slots, key)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		if !retry {
			delay = s.delay
			continue
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			s.remove(key)
			return
		}
		delay *= 2
	}
}

func (s *scheduler) remove(key string) {
	s.mu.Lock()
	delete(s.slots, key)
	s.mu.Unlock()
}

// wait blocks until every worker has returned; call it after ctx ended.
func (s *scheduler) wait() { s.wg.Wait() }
