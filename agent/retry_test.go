package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// manualTimers is a Config.AfterFunc whose timers fire only when the test
// says so: the retry delays are recorded, not waited for.
type manualTimers struct {
	mu     sync.Mutex
	timers []*manualTimer
}

type manualTimer struct {
	d       time.Duration
	f       func()
	stopped bool
	fired   bool
}

func (m *manualTimers) afterFunc(d time.Duration, f func()) func() bool {
	t := &manualTimer{d: d, f: f}
	m.mu.Lock()
	m.timers = append(m.timers, t)
	m.mu.Unlock()
	return func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		was := !t.stopped && !t.fired
		t.stopped = true
		return was
	}
}

// armed returns the delays of the timers neither stopped nor fired.
func (m *manualTimers) armed() []time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []time.Duration
	for _, t := range m.timers {
		if !t.stopped && !t.fired {
			out = append(out, t.d)
		}
	}
	return out
}

// fire runs every armed timer, as if their delays had passed.
func (m *manualTimers) fire() int {
	m.mu.Lock()
	var due []*manualTimer
	for _, t := range m.timers {
		if !t.stopped && !t.fired {
			t.fired = true
			due = append(due, t)
		}
	}
	m.mu.Unlock()
	for _, t := range due {
		t.f()
	}
	return len(due)
}

// fireStale runs every timer that was stopped, as a timer whose Stop came
// too late would: the agent must ignore them.
func (m *manualTimers) fireStale() {
	m.mu.Lock()
	var stale []*manualTimer
	for _, t := range m.timers {
		if t.stopped && !t.fired {
			t.fired = true
			stale = append(stale, t)
		}
	}
	m.mu.Unlock()
	for _, t := range stale {
		t.f()
	}
}

// retryHarness is a harness whose retry timers the test fires.
func retryHarness(t *testing.T) (*harness, *manualTimers) {
	h := newHarness(t)
	timers := &manualTimers{}
	h.cfg.AfterFunc = timers.afterFunc
	h.cfg.RetryMin = time.Second
	h.cfg.RetryMax = 4 * time.Second
	// The periodic checks' timers are the injected clock's too: off here,
	// so that only the retries are armed.
	h.cfg.VCPUCheckInterval, h.cfg.DefinitionCheckInterval = -1, -1
	return h, timers
}

// errLockTimeout is libvirt's reply when another job holds the domain, as the
// libvirt boundary returns it.
var errLockTimeout = fmt.Errorf("failed to define domain: %w: Timed out during operation: cannot acquire state change lock (held by monitor=remoteDispatchDomainCreateWithFlags)", virt.ErrCallTimeout)

// TestTransientFailureRetried: a libvirt call in reconcile fails n times
// for a transient reason. After each failure the domain is retrying, with
// the reason, the attempt and a backoff that doubles from RetryMin and
// stays at RetryMax; once the call works again the domain converges with
// nothing of the failure left, and no call is made twice for nothing.
func TestTransientFailureRetried(t *testing.T) {
	for _, tc := range []struct {
		name    string
		method  string
		n       int
		err     error
		problem string // substring of the retrying problem
		defines int    // DefineXML calls in all
	}{
		{"define lock timeout once", virttest.MethodDefineXML, 1, errLockTimeout,
			`failed to redefine domain "web" with 52:54:00:00:00:01 1→4 queues: failed to define domain: libvirt call timed out: Timed out during operation: cannot acquire state change lock`, 2},
		{"define generic error 5 times", virttest.MethodDefineXML, 5, errors.New("internal error: unexpected QEMU reply"),
			`failed to redefine domain "web" with 52:54:00:00:00:01 1→4 queues: internal error: unexpected QEMU reply`, 6},
		{"definition read times out", virttest.MethodDomainXML, 2, fmt.Errorf("failed to get XML of domain \"web\": %w", virt.ErrCallTimeout),
			`failed to read the definition of domain "web": failed to get XML of domain "web": libvirt call timed out`, 1},
		{"lookup fails", virttest.MethodLookupDomain, 3, errors.New("internal error: client socket is closed"),
			`failed to look up domain "web": internal error: client socket is closed`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, timers := retryHarness(t)
			h.start()
			h.fake.FailNext(tc.method, tc.n, tc.err)
			mustDefine(t, h.fake, domainXML("web", 4, 0, mac(1)))

			for attempt := 1; attempt <= tc.n; attempt++ {
				d := h.waitFor(fmt.Sprintf("attempt %d retrying", attempt), func(s status.Snapshot) bool {
					d, _ := findDomain(s, "web")
					return d.State == status.StateRetrying && d.Attempts == attempt
				})
				dom, _ := findDomain(d, "web")
				want := fmt.Sprintf("attempt %d failed, retrying in ", attempt)
				if !strings.HasPrefix(dom.Problem, want) || !strings.Contains(dom.Problem, tc.problem) {
					t.Errorf("attempt %d: problem %q, want %q... containing %q", attempt, dom.Problem, want, tc.problem)
				}
				if dom.RetryAt.IsZero() {
					t.Errorf("attempt %d: no retry_at", attempt)
				}
				armed := timers.armed()
				if len(armed) != 1 {
					t.Fatalf("attempt %d: armed timers %v, want one", attempt, armed)
				}
				step := min(time.Second<<(attempt-1), 4*time.Second)
				if armed[0] < step/2 || armed[0] > step {
					t.Errorf("attempt %d: retry in %v, want between %v and %v", attempt, armed[0], step/2, step)
				}
				timers.fire()
			}
			d := h.waitState("web", status.StateRewritten)
			h.settle()
			s := h.agent.Snapshot()
			d, _ = findDomain(s, "web")
			if d.State != status.StateRewritten || d.Problem != "" || d.Attempts != 0 || !d.RetryAt.IsZero() ||
				!strings.HasPrefix(d.LastAction, "redefined: ") {
				t.Errorf("after convergence: %+v", d)
			}
			if doc, _ := h.fake.InactiveXML("web"); !strings.Contains(string(doc), "queues='4'") {
				t.Errorf("definition not rewritten:\n%s", doc)
			}
			if n := h.fake.Calls(virttest.MethodDefineXML); n != tc.defines {
				t.Errorf("DefineXML calls = %d, want %d", n, tc.defines)
			}
			if armed := timers.armed(); len(armed) != 0 {
				t.Errorf("timers still armed after convergence: %v", armed)
			}
		})
	}
}

// TestRedefineTimedOutButLanded: libvirtd is slow; the redefine times out
// on the client but lands in libvirt afterwards. The agent reports
// retrying, naming the operation and the timeout; once the define has
// landed it finds its own definition there and reports the domain
// rewritten, without a second define and without "failed".
func TestRedefineTimedOutButLanded(t *testing.T) {
	h, timers := retryHarness(t)
	h.cfg.CallTimeout = 50 * time.Millisecond
	h.start()
	release := h.fake.StallDefine()
	t.Cleanup(release)
	mustDefine(t, h.fake, domainXML("web", 4, 0, mac(1)))

	d := h.waitState("web", status.StateRetrying)
	if !strings.Contains(d.Problem, `failed to redefine domain "web" with 52:54:00:00:00:01 1→4 queues: libvirt call timed out after 50ms`) {
		t.Errorf("problem = %q", d.Problem)
	}
	if doc, _ := h.fake.InactiveXML("web"); strings.Contains(string(doc), "queues=") {
		t.Fatal("the stalled define landed before its release")
	}

	release() // the define lands, with its DEFINED event
	d = h.waitState("web", status.StateRewritten)
	// A late retry (the timer, or a stale one) finds nothing to do.
	timers.fire()
	timers.fireStale()
	h.settle()
	d, _ = findDomain(h.agent.Snapshot(), "web")
	if d.State != status.StateRewritten || d.Problem != "" || d.Attempts != 0 ||
		!strings.HasPrefix(d.LastAction, "redefined: 52:54:00:00:00:01 1→4 queues") {
		t.Errorf("after the define landed: %+v", d)
	}
	if len(d.NICs) != 1 || d.NICs[0].Defined != 4 {
		t.Errorf("NICs = %+v", d.NICs)
	}
	if n := h.fake.Calls(virttest.MethodDefineXML); n != 1 {
		t.Errorf("DefineXML calls = %d, want 1 (the one that timed out and landed)", n)
	}
}

// TestRedefineTimedOutRetriedFromFreshRead: the retry after a redefine
// that timed out and did not land reads the definition again and
// redefines once.
func TestRedefineTimedOutRetriedFromFreshRead(t *testing.T) {
	h, timers := retryHarness(t)
	h.cfg.CallTimeout = 50 * time.Millisecond
	h.start()
	h.fake.FailNext(virttest.MethodDefineXML, 1, fmt.Errorf("failed to define domain: %w", virt.ErrCallTimeout))
	mustDefine(t, h.fake, domainXML("web", 4, 0, mac(1)))
	h.waitState("web", status.StateRetrying)
	reads := h.fake.Calls(virttest.MethodDomainXML)
	timers.fire()
	h.waitState("web", status.StateRewritten)
	h.settle()
	if n := h.fake.Calls(virttest.MethodDefineXML); n != 2 {
		t.Errorf("DefineXML calls = %d, want 2", n)
	}
	if n := h.fake.Calls(virttest.MethodDomainXML); n <= reads {
		t.Errorf("the retry did not read the definition again (%d reads before, %d after)", reads, n)
	}
}

// TestRedefineRefusedNotRetried: XML libvirt refuses fails the same way
// every time: error, no retry timer, one define.
func TestRedefineRefusedNotRetried(t *testing.T) {
	h, timers := retryHarness(t)
	h.start()
	h.fake.SetValidate(func(doc []byte) error {
		if strings.Contains(string(doc), "queues=") {
			return errors.New("Invalid value for attribute queues in element driver")
		}
		return nil
	})
	mustDefine(t, h.fake, domainXML("bad", 4, 0, mac(1)))
	d := h.waitState("bad", status.StateError)
	h.settle()
	if !strings.Contains(d.Problem, "Invalid value for attribute queues") || d.LastAction != "redefine failed" || d.Attempts != 0 {
		t.Errorf("bad = %+v", d)
	}
	if armed := timers.armed(); len(armed) != 0 {
		t.Errorf("armed timers %v for a refused definition", armed)
	}
	if n := h.fake.Calls(virttest.MethodDefineXML); n != 1 {
		t.Errorf("DefineXML calls = %d, want 1", n)
	}
}

// TestRetryForgetsUndefinedDomain: a domain retrying that is undefined
// meanwhile is forgotten, its timer stopped.
func TestRetryForgetsUndefinedDomain(t *testing.T) {
	h, timers := retryHarness(t)
	h.start()
	h.fake.FailNext(virttest.MethodDefineXML, 1, errLockTimeout)
	mustDefine(t, h.fake, domainXML("web", 4, 0, mac(1)))
	h.waitState("web", status.StateRetrying)
	must(t, h.fake.Undefine("web"))
	h.waitFor("web forgotten", func(s status.Snapshot) bool { _, ok := findDomain(s, "web"); return !ok })
	if armed := timers.armed(); len(armed) != 0 {
		t.Errorf("armed timers %v for a domain that is gone", armed)
	}
	timers.fireStale()
	h.settle()
	if n := h.fake.Calls(virttest.MethodDefineXML); n != 1 {
		t.Errorf("DefineXML calls = %d, want 1", n)
	}
}

func TestCallTimedOut(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	err := callTimedOut(ctx, 10*time.Second, fmt.Errorf("failed to define domain: %w", context.DeadlineExceeded))
	if err.Error() != "libvirt call timed out after 10s" || !errors.Is(err, virt.ErrCallTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("callTimedOut = %v", err)
	}
	other := errors.New("other")
	if got := callTimedOut(ctx, time.Second, other); got != other {
		t.Errorf("callTimedOut(other) = %v", got)
	}
	cancel() // the parent ended: not a call timeout
	if got := callTimedOut(ctx, time.Second, context.DeadlineExceeded); errors.Is(got, virt.ErrCallTimeout) {
		t.Errorf("callTimedOut after the parent ended = %v", got)
	}
}
