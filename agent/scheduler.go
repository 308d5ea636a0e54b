package agent

import (
	"context"
	"sync"
	"time"
)

// job is what a domain's worker does next.
type job struct {
	// guest: run the guest step first. Every job then verifies the NICs
	// over QMP.
	guest bool
	// boot: the domain (re)started (a new QEMU process): its guest step
	// backoff starts over.
	boot bool
}

func (j job) merge(o job) job {
	return job{guest: j.guest || o.guest, boot: j.boot || o.boot}
}

// runFunc runs one attempt of a job on the domain's newest view, taking
// its turns through l; it reports whether the job should be tried again
// later (a transient failure). attempt counts the domain's guest step
// attempts since its last success or boot, this one included.
type runFunc func(ctx context.Context, v *domainView, j job, attempt int, l *lease) (retry bool)

// scheduler runs jobs with at most one worker per domain and bounds how
// much of the host one domain can hold.
//
// Turns. What a run costs libvirt is its guest agent commands and QMP
// checks in flight: each holds one of libvirtd's worker threads and one of
// the connection's request slots (max_client_requests) until the guest (or
// QEMU) answers, and the reconciles share those slots. So the slots bound
// commands, not runs: at most Concurrency (connection slots) are in flight
// at once, whatever the lanes, the rest of libvirtd's per-connection limit
// is left to the reconciles. A run waiting between two guest-exec-status
// polls, or for its next turn, holds none; a guest that does not answer
// holds one for a guest.Options.ReplyTimeout at a time.
//
// A run starts in the fast lane, where at most admitPerSlot × Concurrency
// runs are at once; each of its guest agent commands and QMP checks waits
// for a connection slot, held for that command. It stays in the fast lane
// for at most slice: a healthy guest answers a whole guest step within a
// fraction of that, with the other runs' commands in between. A run still
// going after slice (a guest that stalls guest-exec-status, or answers each
// command just before its timeout) leaves the fast lane and goes on in the
// slow lane: each of its later commands first waits for one of the slow
// slots (slowSlots: a third of Concurrency, at least one), then for a
// connection slot. A run of a domain whose last attempt failed starts its
// guest step in the slow lane. So hostile guests take turns among
// themselves on at most a third of the connection slots, and a
// well-behaved domain waits at most about slice × (runs queued ahead of it
// / (admitPerSlot × Concurrency)) to start. The command in flight when a
// run is moved keeps its connection slot until it returns (libvirtd holds
// the request slot as long), bounded by its reply timeout.
//
// Backoff. A run that asks for a retry counts as a failure of the domain,
// keyed by its UUID: its next run waits delay × 2^(failures-1) (at most
// maxDelay), whatever brought the job — the retry itself or a new
// agent-connected event, so that a guest restarting qemu-ga does not get
// fresh attempts without limit. The scheduler retries on its own until
// attempts failures; later jobs (the next agent-connected event) still
// wait out the backoff. A success, a reason the guest gives (not retried),
// or a boot of the domain (job.boot: the STARTED event) forgets the
// failures. Retry waits hold no slot.
//
// Views. A job runs on the newest view of its domain the scheduler was
// given (schedule, refresh), not the one it was scheduled with: a run that
// waited out a backoff while the domain stopped or restarted sees that.
type scheduler struct {
	ctx      context.Context
	admit    chan struct{} // runs in the fast lane
	conn     chan struct{} // connection slots: every guest agent command and QMP check in flight
	slow     chan struct{} // slow slots: commands of runs in the slow lane, before their connection slot
	slice    time.Duration
	attempts int
	delay    time.Duration
	maxDelay time.Duration
	now      func() time.Time
	run      runFunc

	mu      sync.Mutex
	slots   map[string]*slot
	backoff map[string]*guestBackoff
	wg      sync.WaitGroup
}

type slot struct {
	v    *domainView // the newest
	next job
	has  bool          // next holds a job to run
	wake chan struct{} // the domain's backoff was reset
}

// guestBackoff is a domain's guest step failures since its last success or boot.
type guestBackoff struct {
	failures int
	until    time.Time // no run before
}

// schedOptions are the scheduler's bounds (see scheduler).
type schedOptions struct {
	concurrency     int
	slice           time.Duration
	attempts        int
	delay, maxDelay time.Duration
	now             func() time.Time
}

// admitPerSlot is how many runs may be in the fast lane per fast slot: a
// well-behaved run spends most of its time waiting for its guest (between
// guest-exec-status polls, for ethtool), so a few of them keep a slot busy.
const admitPerSlot = 4

// slowSlots is how many of the concurrency connection slots runs in the
// slow lane may hold at once: a third, at least one.
func slowSlots(concurrency int) int { return max(1, concurrency/3) }

func newScheduler(ctx context.Context, o schedOptions, run runFunc) *scheduler {
	if o.now == nil {
		o.now = time.Now
	}
	return &scheduler{
		ctx:      ctx,
		admit:    make(chan struct{}, admitPerSlot*o.concurrency),
		conn:     make(chan struct{}, o.concurrency),
		slow:     make(chan struct{}, slowSlots(o.concurrency)),
		slice:    o.slice,
		attempts: o.attempts,
		delay:    o.delay,
		maxDelay: max(o.maxDelay, o.delay),
		now:      o.now,
		run:      run,
		slots:    map[string]*slot{},
		backoff:  map[string]*guestBackoff{},
	}
}

// retryDelay is the backoff after a domain's failures-th failure in a row.
func (s *scheduler) retryDelay(failures int) time.Duration {
	d := s.delay
	for i := 1; i < failures && d < s.maxDelay; i++ {
		d *= 2
	}
	return min(d, s.maxDelay)
}

// schedule queues j for the domain of v, to run on v (or a newer view).
// It never blocks.
func (s *scheduler) schedule(v *domainView, j job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	key := domainKey(v.d)
	if j.boot {
		delete(s.backoff, key)
	}
	if sl := s.slots[key]; sl != nil {
		sl.v, sl.next, sl.has = v, sl.next.merge(j), true
		if j.boot {
			select {
			case sl.wake <- struct{}{}:
			default:
			}
		}
		return
	}
	sl := &slot{v: v, next: j, has: true, wake: make(chan struct{}, 1)}
	s.slots[key] = sl
	s.wg.Add(1)
	go s.work(key, sl)
}

// refresh gives the domain's queued or waiting job, if any, the newer view
// v; it schedules nothing.
func (s *scheduler) refresh(v *domainView) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl := s.slots[domainKey(v.d)]; sl != nil {
		sl.v = v
	}
}

// holdoff is how long the domain's backoff still defers its next run.
func (s *scheduler) holdoff(key string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.backoff[key]; b != nil {
		return b.until.Sub(s.now())
	}
	return 0
}

// work is the domain's worker: it runs the slot's job until none is left.
func (s *scheduler) work(key string, sl *slot) {
	defer s.wg.Done()
	for {
		if d := s.holdoff(key); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-sl.wake:
				t.Stop()
			case <-s.ctx.Done():
				t.Stop()
				s.remove(key)
				return
			}
			continue
		}
		select {
		case s.admit <- struct{}{}:
		case <-s.ctx.Done():
			s.remove(key)
			return
		}
		s.mu.Lock()
		j, v := sl.next, sl.v
		sl.next, sl.has = job{}, false
		attempt := 1
		if b := s.backoff[key]; b != nil {
			attempt = b.failures + 1
		}
		s.mu.Unlock()

		l := s.newLease()
		retry := s.run(s.ctx, v, j, attempt, l)
		l.end()

		s.mu.Lock()
		switch {
		case retry:
			b := s.backoff[key]
			if b == nil {
				b = &guestBackoff{}
				s.backoff[key] = b
			}
			b.failures++
			b.until = s.now().Add(s.retryDelay(b.failures))
			if !sl.has && b.failures < s.attempts {
				sl.next, sl.has = j, true
			} else {
				// A new job that arrived meanwhile waits out the backoff too.
				sl.next = sl.next.merge(job{guest: j.guest})
			}
			s.prune()
		case j.guest:
			delete(s.backoff, key)
		}
		if !sl.has {
			delete(s.slots, key)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// prune forgets the backoff of domains that have not failed for a while
// (undefined meanwhile, or no job since). Called with s.mu held.
func (s *scheduler) prune() {
	if len(s.backoff) <= 2*len(s.slots)+64 {
		return
	}
	old := s.now().Add(-2 * s.maxDelay)
	for k, b := range s.backoff {
		if b.until.Before(old) && s.slots[k] == nil {
			delete(s.backoff, k)
		}
	}
}

func (s *scheduler) remove(key string) {
	s.mu.Lock()
	delete(s.slots, key)
	s.mu.Unlock()
}

// wait blocks until every worker has returned; call it after ctx ended.
func (s *scheduler) wait() { s.wg.Wait() }

// lease is one run's hold on the scheduler's lanes: in the fast lane
// until demote (when the run has held connection slots for slice in all,
// or called by the run), then in the slow lane; a connection slot per turn
// in both.
type lease struct {
	s     *scheduler
	moved chan struct{} // closed by demote

	mu    sync.Mutex
	fast  bool          // in the fast lane (holds an admission)
	used  time.Duration // connection slots held in the fast lane, turns ended
	timer *time.Timer   // demotes the run at slice, while a fast turn holds a slot
}

// newLease wraps the admission to the fast lane the worker just took.
func (s *scheduler) newLease() *lease {
	return &lease{s: s, fast: true, moved: make(chan struct{})}
}

// demote moves the run to the slow lane: it gives back its admission;
// later turns take a slow slot first. The turn in flight, if any, keeps
// its connection slot until it returns.
func (l *lease) demote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fast {
		l.fast = false
		<-l.s.admit
		close(l.moved)
	}
}

func (l *lease) demoted() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.fast
}

// end releases whatever the run holds.
func (l *lease) end() {
	l.mu.Lock()
	if l.timer != nil {
		l.timer.Stop()
	}
	l.mu.Unlock()
	l.demote()
}

// fastTurn runs f as a turn of the fast lane, the slot already taken: its
// time counts against slice, and the run is moved to the slow lane when
// slice is used up, during f or after it.
func (l *lease) fastTurn(f func()) {
	start := time.Now()
	l.mu.Lock()
	l.timer = time.AfterFunc(l.s.slice-l.used, l.demote)
	l.mu.Unlock()
	f()
	l.mu.Lock()
	l.timer.Stop()
	l.used += time.Since(start)
	over := l.used >= l.s.slice
	l.mu.Unlock()
	if over {
		l.demote()
	}
}

// turn runs f under a connection slot, held for f alone; a run in the slow
// lane takes a slow slot first. The time a run waits for its turn does not
// count against its slice: only what it holds does. It returns ctx's
// error, without running f, when ctx ends first.
func (l *lease) turn(ctx context.Context, f func()) error {
	if !l.demoted() {
		select {
		case l.s.conn <- struct{}{}:
			defer func() { <-l.s.conn }()
			l.fastTurn(f)
			return nil
		case <-l.moved:
			// Moved to the slow lane while waiting: wait there.
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case l.s.slow <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.s.slow }()
	select {
	case l.s.conn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.s.conn }()
	f()
	return nil
}
