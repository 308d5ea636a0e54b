package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// A guest step retry that waits out its backoff while the domain stops
// runs on the view of the stop's reconcile: nothing is sent to the guest.
func TestGuestRetryRunsOnNewestView(t *testing.T) {
	h := newHarness(t)
	h.cfg.GuestRetryDelay = 300 * time.Millisecond
	fs := newFakeGuestStep(func(context.Context, string, string, int) (guest.Result, error) {
		return guest.Result{}, errors.New("not yet")
	})
	h.cfg.GuestStep = fs.step
	h.start()
	mustDefine(t, h.fake, domainXML("web", 4, 4, mac(1)))
	must(t, h.fake.Start("web"))
	h.waitState("web", status.StateCompliant)
	must(t, h.fake.AgentConnect("web"))
	h.waitFor("first guest step", func(status.Snapshot) bool { return fs.count("web") == 1 })
	must(t, h.fake.Stop("web"))
	h.waitFor("web stopped", func(s status.Snapshot) bool {
		d, ok := findDomain(s, "web")
		return ok && !d.Active
	})
	time.Sleep(600 * time.Millisecond) // past the retry's backoff
	if n := fs.count("web"); n != 1 {
		t.Errorf("guest steps = %d, want 1 (the retry ran on a stale view)", n)
	}
}

// A guest agent that connects while its domain waits for a reconcile retry
// gets its guest step with the view of the retry that gets through.
func TestGuestJobParkedWhileRetrying(t *testing.T) {
	h := newHarness(t)
	fs := newFakeGuestStep(func(_ context.Context, _, _ string, m int) (guest.Result, error) { return okResult(m), nil })
	h.cfg.GuestStep = fs.step
	h.cfg.RetryMin, h.cfg.RetryMax = 200*time.Millisecond, 200*time.Millisecond
	h.start()
	mustDefine(t, h.fake, domainXML("web", 4, 4, mac(1)))
	h.waitState("web", status.StateCompliant)
	h.fake.FailNext(virttest.MethodLookupDomain, 1, errLockTimeout)
	must(t, h.fake.Start("web"))
	h.waitState("web", status.StateRetrying)
	must(t, h.fake.AgentConnect("web"))
	d := h.waitFor("guest step after the retry", func(s status.Snapshot) bool {
		d, ok := findDomain(s, "web")
		return ok && d.State == status.StateCompliant && len(d.NICs) == 1 && d.NICs[0].GuestStep == guestDone
	})
	if web, _ := findDomain(d, "web"); web.NICs[0].Running != 4 {
		t.Errorf("NIC = %+v", web.NICs[0])
	}
	if n := fs.count("web"); n != 1 {
		t.Errorf("guest steps = %d, want 1", n)
	}
}
