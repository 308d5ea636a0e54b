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
	"github.com/virtmq/virtmq/internal/virt/virttest"
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
		return n == 8 // all started in the fast lane
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

// requestSlots is a connection with libvirtd's per-client limit
// (max_client_requests, 5 by default): at most that many of its calls are
// in execution at once, the others wait. A guest agent command holds its
// slot until the guest answers or libvirt's timeout ends it.
type requestSlots struct {
	virt.Conn
	slots chan struct{}
}

func (c requestSlots) hold(ctx context.Context, f func()) error {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.slots }()
	f()
	return nil
}

func (c requestSlots) LookupDomain(ctx context.Context, s string) (d virt.Domain, err error) {
	if herr := c.hold(ctx, func() { d, err = c.Conn.LookupDomain(ctx, s) }); herr != nil {
		return d, herr
	}
	return d, err
}

func (c requestSlots) DomainXML(ctx context.Context, d virt.Domain, flags virt.XMLFlags) (out []byte, err error) {
	if herr := c.hold(ctx, func() { out, err = c.Conn.DomainXML(ctx, d, flags) }); herr != nil {
		return nil, herr
	}
	return out, err
}

func (c requestSlots) DefineXML(ctx context.Context, doc []byte) (err error) {
	if herr := c.hold(ctx, func() { err = c.Conn.DefineXML(ctx, doc) }); herr != nil {
		return herr
	}
	return err
}

func (c requestSlots) AgentCommand(ctx context.Context, d virt.Domain, cmd []byte, timeout time.Duration) (out []byte, err error) {
	if herr := c.hold(ctx, func() { out, err = c.Conn.AgentCommand(ctx, d, cmd, timeout) }); herr != nil {
		return nil, herr
	}
	return out, err
}

func (c requestSlots) MonitorCommand(ctx context.Context, d virt.Domain, cmd []byte) (out []byte, err error) {
	if herr := c.hold(ctx, func() { out, err = c.Conn.MonitorCommand(ctx, d, cmd) }); herr != nil {
		return nil, herr
	}
	return out, err
}

// Guests that never answer guest-exec-status, on a connection with
// libvirtd's five request slots, leave reconciles their slots: a domain
// defined while they stall (after their first slice, when the runs moved
// to the slow lane have commands in flight too) is rewritten at once, not
// after the guests' command timeouts.
func TestHostileGuestsLeaveReconcileSlots(t *testing.T) {
	var names []string
	for i := range 8 {
		names = append(names, fmt.Sprintf("hostile%d", i))
	}
	h, hh := hostileHarnessWith(t, func(c *Config) {
		c.Concurrency = DefaultConcurrency
		c.GuestSlice = DefaultGuestSlice
		c.GuestTimeout = time.Minute
		c.Guest = guest.Options{} // the defaults: what libvirt waits for each command
		dial := c.Dial
		c.Dial = func(ctx context.Context, sockets []string) (virt.Conn, string, error) {
			conn, sock, err := dial(ctx, sockets)
			if err != nil {
				return nil, "", err
			}
			return requestSlots{Conn: conn, slots: make(chan struct{}, LibvirtClientRequests)}, sock, nil
		}
	}, names...)
	var mu sync.Mutex
	var defined time.Time
	h.fake.OnCall(func(method string, d virt.Domain, err error) {
		if method == virttest.MethodDefineXML && d.Name == "late" && err == nil {
			mu.Lock()
			defined = time.Now()
			mu.Unlock()
		}
	})
	for _, n := range names {
		must(t, h.fake.AgentConnect(n))
	}
	h.waitFor("hostile guests polling", func(status.Snapshot) bool {
		for _, name := range names {
			if hh.guestInfos(name) == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(DefaultGuestSlice + 500*time.Millisecond) // past the slice: runs in both lanes

	start := time.Now()
	mustDefine(t, h.fake, domainXML("late", 4, 0, mac(99)))
	h.waitFor("late rewritten", func(s status.Snapshot) bool {
		d, _ := findDomain(s, "late")
		return d.State == status.StateRewritten
	})
	mu.Lock()
	took := defined.Sub(start)
	mu.Unlock()
	if bound := time.Second; took > bound {
		t.Errorf("the late domain's redefine returned %v after its definition, beside %d stalling guests; want at most %v", took, len(names), bound)
	}
}
