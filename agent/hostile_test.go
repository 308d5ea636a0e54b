package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
)

// hostileHost serves the recorded guest to every domain, except that the
// domains named hostile* never answer guest-exec-status (libvirt's
// timeout ends it).
type hostileHost struct {
	mu     sync.Mutex
	guests map[string]*recordedGuest
	info   map[string]int // guest-info commands per domain
}

func (hh *hostileHost) command(ctx context.Context, d virt.Domain, cmd []byte, timeout time.Duration) ([]byte, error) {
	var req struct {
		Execute string `json:"execute"`
	}
	_ = json.Unmarshal(cmd, &req)
	hh.mu.Lock()
	g := hh.guests[d.Name]
	if req.Execute == "guest-info" {
		hh.info[d.Name]++
	}
	hh.mu.Unlock()
	if strings.HasPrefix(d.Name, "hostile") && req.Execute == "guest-exec-status" {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-t.C:
			return nil, fmt.Errorf("%w: Guest agent is not responding", virt.ErrTimeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Command(ctx, d, cmd, timeout)
}

func (hh *hostileHost) guestInfos(name string) int {
	hh.mu.Lock()
	defer hh.mu.Unlock()
	return hh.info[name]
}

// Eight guests that stall guest-exec-status hold the agent's four fast
// slots for one slice, not for their command timeouts: a well-behaved guest
// connecting after them is done before any of them has even timed out
// once.
func TestHostileGuestsDoNotStallOthers(t *testing.T) {
	var names []string
	for i := range 8 {
		names = append(names, fmt.Sprintf("hostile%d", i))
	}
	names = append(names, "good")
	h, hh := hostileHarnessWith(t, func(c *Config) {
		c.Concurrency = DefaultConcurrency
		c.GuestSlice = 50 * time.Millisecond
		c.GuestTimeout = time.Minute
		c.Guest = guest.Options{PollInterval: time.Millisecond, CommandTimeout: 20 * time.Second}
	}, names...)
	for _, n := range names[:8] {
		must(t, h.fake.AgentConnect(n))
	}
	h.waitFor("hostile guests polling", func(status.Snapshot) bool {
		n := 0
		for _, name := range names[:8] {
			if hh.guestInfos(name) > 0 {
				n++
			}
		}
		return n == 8 // all in the fast lane; four stall there holding the fast slots
	})
	must(t, h.fake.AgentConnect("good"))
	s := h.waitFor("good done", func(s status.Snapshot) bool {
		d, _ := findDomain(s, "good")
		return len(d.NICs) == 1 && d.NICs[0].GuestStep == guestDone
	})
	for _, n := range names[:8] {
		if d, _ := findDomain(s, n); len(d.NICs) != 1 || d.NICs[0].GuestStep != "" {
			t.Errorf("%s's step ended before the good guest was served: %+v", n, d.NICs)
		}
	}
}

// hostileHarnessWith is hostileHarness with cfg changed before the start.
func hostileHarnessWith(t *testing.T, cfg func(*Config), names ...string) (*harness, *hostileHost) {
	h := newHarness(t)
	h.cfg.GuestStep = nil // guest.Configure
	cfg(&h.cfg)
	hh := &hostileHost{guests: map[string]*recordedGuest{}, info: map[string]int{}}
	for _, n := range names {
		hh.guests[n] = newRecordedGuest(t)
	}
	h.fake.SetAgent(hh.command)
	h.start()
	for i, name := range names {
		doc := bytes.Replace(recordedDomain(t, 4), []byte("virtmq-e2e-smoke"), []byte(name), -1)
		doc = regexp.MustCompile(`<uuid>[^<]*</uuid>`).ReplaceAll(doc, fmt.Appendf(nil, "<uuid>39ac667a-8be7-47c6-94aa-6237136b%04d</uuid>", i))
		mustDefine(t, h.fake, doc)
		must(t, h.fake.Start(name))
	}
	h.settle()
	return h, hh
}

// A guest whose step keeps timing out gets its next attempt after its
// backoff, however often its qemu-ga reconnects; a (re)start of the
// domain starts over.
func TestReconnectStormKeepsBackoff(t *testing.T) {
	h, hh := hostileHarnessWith(t, func(c *Config) {
		c.GuestAttempts = 1 // no retry of its own: only the reconnects bring attempts
		c.GuestRetryDelay = time.Hour
		c.Guest = guest.Options{PollInterval: time.Millisecond, CommandTimeout: 20 * time.Millisecond}
	}, "hostile0")
	must(t, h.fake.AgentConnect("hostile0"))
	var n status.NIC
	h.waitFor("timed out", func(s status.Snapshot) bool {
		d, _ := findDomain(s, "hostile0")
		if len(d.NICs) != 1 {
			return false
		}
		n = d.NICs[0]
		return n.GuestStep == string(guest.ReasonTimeout)
	})
	if !strings.Contains(n.Problem, "(attempt 1; next try when the guest agent reconnects, not before 1h0m0s)") {
		t.Errorf("Problem = %q, want the attempt and the next try", n.Problem)
	}
	for range 30 { // qemu-ga restarting
		must(t, h.fake.AgentConnect("hostile0"))
		time.Sleep(5 * time.Millisecond)
	}
	h.settle()
	if got := hh.guestInfos("hostile0"); got != 1 {
		t.Errorf("guest-info sent %d times during the reconnect storm, want 1 (the first attempt)", got)
	}
	must(t, h.fake.Stop("hostile0"))
	must(t, h.fake.Start("hostile0"))
	must(t, h.fake.AgentConnect("hostile0"))
	h.waitFor("tried again after the boot", func(status.Snapshot) bool { return hh.guestInfos("hostile0") == 2 })
}
