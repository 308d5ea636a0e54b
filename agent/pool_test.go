package agent

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
)

// forEachDomain runs different domains at once, at most n of them, never
// one domain twice at once, and one domain's entries in the order given.
func TestForEachDomainBoundedExclusiveOrdered(t *testing.T) {
	var doms []virt.Domain
	for range 4 {
		for i := range 12 {
			doms = append(doms, virt.Domain{Name: fmt.Sprintf("vm%d", i), UUID: fmt.Sprintf("u%d", i)})
		}
	}
	var (
		mu      sync.Mutex
		running = map[string]int{}
		now     int
		peak    int
		order   = map[string][]int{}
	)
	err := forEachDomain(5, doms, func(i int, d virt.Domain) error {
		mu.Lock()
		running[d.UUID]++
		if running[d.UUID] > 1 {
			t.Errorf("%s reconciled twice at once", d.Name)
		}
		now++
		peak = max(peak, now)
		order[d.UUID] = append(order[d.UUID], i)
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		running[d.UUID]--
		now--
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if peak != 5 {
		t.Errorf("most at once = %d, want 5 (the bound, with 12 domains to do)", peak)
	}
	for k, is := range order {
		if len(is) != 4 {
			t.Errorf("%s ran %d times, want 4", k, len(is))
		}
		for j := 1; j < len(is); j++ {
			if is[j] < is[j-1] {
				t.Errorf("%s ran out of order: %v", k, is)
			}
		}
	}
}

// A domain without a UUID is keyed by its name, as domainKey does.
func TestForEachDomainKeyedByName(t *testing.T) {
	doms := []virt.Domain{{Name: "a"}, {Name: "a"}, {Name: "b"}}
	var mu sync.Mutex
	running := map[string]bool{}
	err := forEachDomain(3, doms, func(_ int, d virt.Domain) error {
		mu.Lock()
		if running[d.Name] {
			t.Errorf("%s twice at once", d.Name)
		}
		running[d.Name] = true
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		running[d.Name] = false
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// An error (the connection is lost) stops what has not started, and is
// returned once every running call returned.
func TestForEachDomainStopsAtError(t *testing.T) {
	var doms []virt.Domain
	for i := range 50 {
		doms = append(doms, virt.Domain{UUID: fmt.Sprintf("u%d", i)})
	}
	lost := errors.New("lost")
	var mu sync.Mutex
	calls, inflight := 0, 0
	err := forEachDomain(4, doms, func(i int, _ virt.Domain) error {
		mu.Lock()
		calls++
		inflight++
		mu.Unlock()
		defer func() {
			mu.Lock()
			inflight--
			mu.Unlock()
		}()
		time.Sleep(time.Millisecond)
		if i == 3 {
			return lost
		}
		return nil
	})
	if !errors.Is(err, lost) {
		t.Fatalf("err = %v, want %v", err, lost)
	}
	mu.Lock()
	defer mu.Unlock()
	if inflight != 0 {
		t.Errorf("%d calls still running after forEachDomain returned", inflight)
	}
	if calls > 10 {
		t.Errorf("%d calls made after the error, want the rest skipped", calls)
	}
}

// With one worker the domains run one by one in the order given.
func TestForEachDomainSerial(t *testing.T) {
	doms := []virt.Domain{{UUID: "c"}, {UUID: "a"}, {UUID: "c"}, {UUID: "b"}}
	var got []string
	if err := forEachDomain(1, doms, func(_ int, d virt.Domain) error {
		got = append(got, d.UUID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[c c a b]" {
		t.Errorf("order = %v, want [c c a b] (a domain's entries together, in first-seen order)", got)
	}
}

// The resync after a reload reconciles the domains at once: while one
// domain's redefine is stuck in libvirt, the others are rewritten.
func TestResyncReconcilesConcurrently(t *testing.T) {
	h := newHarness(t)
	h.cfg.CallTimeout = time.Minute // the stuck redefine outlasts the wait below
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(strings.Replace(testPolicy, "mode: apply", "mode: observe", 1)), 0o644))
	for i := range 4 {
		mustDefine(t, h.fake, domainXML(fmt.Sprintf("vm%d", i), 4, 0, mac(i)))
	}
	h.start()
	for i := range 4 {
		h.waitState(fmt.Sprintf("vm%d", i), status.StateWouldRedefine)
	}
	release := h.fake.StallDefine() // the first redefine hangs in libvirt
	t.Cleanup(release)
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(testPolicy), 0o644))
	h.reload <- syscall.SIGHUP
	h.waitFor("three rewritten while one redefine is stuck", func(s status.Snapshot) bool {
		n := 0
		for _, d := range s.Domains {
			if d.State == status.StateRewritten {
				n++
			}
		}
		return n == 3
	})
	release()
	for i := range 4 {
		h.waitState(fmt.Sprintf("vm%d", i), status.StateRewritten)
	}
}
