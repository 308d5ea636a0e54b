package agent

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/virtmq/virtmq/internal/virt"
)

// transient reports whether a libvirt call that failed with err is worth
// trying again as it is: everything but a refusal of the XML itself and a
// domain that is gone. Timeouts, a busy daemon ("cannot acquire state
// change lock") and errors nobody classified are transient. Lost
// connections and cancellation are the caller's to handle before.
func transient(err error) bool {
	return !errors.Is(err, virt.ErrInvalidDefinition) && !errors.Is(err, virt.ErrNotFound)
}

// retries holds the domains whose last reconcile failed for a transient
// reason, each with its own backoff and timer.
//
// The loop and its reconcile workers (forEachDomain) call its methods, at
// most one at a time per domain; the timers mark their domain due and wake
// the loop (the mu-guarded part): the loop then reconciles the due domains,
// so that only the loop and its workers talk to libvirt for definitions.
type retries struct {
	min, max  time.Duration
	afterFunc func(time.Duration, func()) func() bool

	kmu   sync.Mutex        // guards byKey and its entries
	byKey map[string]*retry // by domainKey

	mu   sync.Mutex
	due  map[string]int // domainKey → the generation of the timer that fired
	wake chan struct{}  // capacity 1: "something is due"
}

// retry is one domain waiting for its next attempt.
type retry struct {
	d       virt.Domain // Name and UUID
	bo      backoff
	attempt int // failed attempts in a row
	gen     int // bumped at each (re)arm: a stale timer's fire is ignored
	stop    func() bool
	// sent is the definition of a redefine that failed for a transient
	// reason, and changes what it changed: it may have landed anyway.
	sent    []byte
	changes string
	// job is a guest job that came while d waited (parked): it is
	// scheduled with the view of d's next reconcile that gets through.
	job    job
	parked bool
}

func newRetries(lo, hi time.Duration, afterFunc func(time.Duration, func()) func() bool) *retries {
	return &retries{
		min: lo, max: hi, afterFunc: afterFunc,
		byKey: map[string]*retry{},
		due:   map[string]int{},
		wake:  make(chan struct{}, 1),
	}
}

// arm arms d's next attempt after a transient failure and returns
// how many attempts in a row failed and the delay before the next one.
// sent, when not nil, is the definition whose redefine just failed (with
// changes describing it); it is kept until d reconciles.
func (r *retries) arm(d virt.Domain, sent []byte, changes string) (attempt int, delay time.Duration) {
	r.kmu.Lock()
	defer r.kmu.Unlock()
	key := domainKey(d)
	e := r.byKey[key]
	if e == nil {
		e = &retry{bo: backoff{min: r.min, max: r.max}}
		r.byKey[key] = e
	}
	e.d = virt.Domain{Name: d.Name, UUID: d.UUID}
	if sent != nil {
		e.sent, e.changes = sent, changes
	}
	e.attempt++
	if e.stop != nil {
		e.stop()
	}
	e.gen++
	gen := e.gen
	delay = e.bo.next()
	e.stop = r.afterFunc(delay, func() { r.fire(key, gen) })
	return e.attempt, delay
}

// fire runs on a timer's goroutine: it marks the domain due and wakes the
// loop without waiting for it.
func (r *retries) fire(key string, gen int) {
	r.mu.Lock()
	r.due[key] = gen
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// takeDue returns the domains whose current timer fired, sorted by key,
// and forgets they were due. A domain stays scheduled (with its backoff)
// until its reconcile clears it (done) or schedules it again.
func (r *retries) takeDue() []virt.Domain {
	r.mu.Lock()
	due := r.due
	r.due = map[string]int{}
	r.mu.Unlock()
	r.kmu.Lock()
	defer r.kmu.Unlock()
	keys := make([]string, 0, len(due))
	for k, gen := range due {
		if e := r.byKey[k]; e != nil && e.gen == gen {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := make([]virt.Domain, 0, len(keys))
	for _, k := range keys {
		out = append(out, r.byKey[k].d)
	}
	return out
}

// pending returns the definition of d's last redefine that failed for a
// transient reason, and what it changed, or nil.
func (r *retries) pending(d virt.Domain) ([]byte, string) {
	r.kmu.Lock()
	defer r.kmu.Unlock()
	if e := r.byKey[domainKey(d)]; e != nil {
		return e.sent, e.changes
	}
	return nil, ""
}

// waiting reports whether d waits for a retry.
func (r *retries) waiting(d virt.Domain) bool {
	r.kmu.Lock()
	defer r.kmu.Unlock()
	return r.byKey[domainKey(d)] != nil
}

// park keeps j for d when d waits for a retry, and reports whether it does.
func (r *retries) park(d virt.Domain, j job) bool {
	r.kmu.Lock()
	defer r.kmu.Unlock()
	e := r.byKey[domainKey(d)]
	if e == nil {
		return false
	}
	e.job, e.parked = e.job.merge(j), true
	return true
}

// done forgets d: it reconciled, failed for good, or is gone. It returns
// the job parked for d, if any.
func (r *retries) done(d virt.Domain) (j job, parked bool) {
	r.kmu.Lock()
	defer r.kmu.Unlock()
	key := domainKey(d)
	if e := r.byKey[key]; e != nil {
		j, parked = e.job, e.parked
	}
	r.drop(key)
	return j, parked
}

// drop forgets key; r.kmu must be held.
func (r *retries) drop(key string) {
	if e := r.byKey[key]; e != nil {
		e.stop()
		delete(r.byKey, key)
	}
}

// retain forgets every domain whose key is not in keep.
func (r *retries) retain(keep map[string]bool) {
	r.kmu.Lock()
	defer r.kmu.Unlock()
	for k := range r.byKey {
		if !keep[k] {
			r.drop(k)
		}
	}
}

// stopAll stops every timer, when the loop ends.
func (r *retries) stopAll() {
	r.kmu.Lock()
	defer r.kmu.Unlock()
	for k := range r.byKey {
		r.drop(k)
	}
}
