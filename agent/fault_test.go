package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/guest/guesttest"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// simGuests routes each domain's guest agent commands to its own
// simulated qemu-ga (guesttest.Guest with ethtool), through an optional
// filter that can delay or swallow commands. Safe for concurrent use; it
// never calls t: it runs on the agent's goroutines.
type simGuests struct {
	mu     sync.Mutex
	guests map[string]guest.Agent
	// statusCalls counts guest-exec-status commands per domain.
	statusCalls map[string]int
	// filter, when set, handles a domain's guest-exec-status instead of
	// its guest (return handled=false to pass it on).
	filter func(ctx context.Context, dom string, cmd []byte, timeout time.Duration) (out []byte, err error, handled bool)
}

func newSimGuests() *simGuests {
	return &simGuests{guests: map[string]guest.Agent{}, statusCalls: map[string]int{}}
}

// add gives the domain a Debian guest with eth0 = mac, ethtool reporting
// max 4 combined channels, current 1, running prog as ethtool (nil: the
// simulated ethtool).
func (s *simGuests) add(dom, mac string, prog guesttest.Program) {
	e := &guesttest.Ethtool{NICs: map[string]*guest.Channels{"eth0": {Max: 4, Current: 1}}}
	if prog == nil {
		prog = e.Run
	}
	g := &guesttest.Guest{
		Interfaces: []guesttest.Interface{{Name: "lo"}, {Name: "eth0", MAC: mac}},
		Programs:   map[string]guesttest.Program{"/usr/sbin/ethtool": prog},
	}
	s.mu.Lock()
	s.guests[dom] = g.Agent()
	s.mu.Unlock()
}

func (s *simGuests) polls(dom string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusCalls[dom]
}

// command is the fake libvirt's AgentFunc.
func (s *simGuests) command(ctx context.Context, d virt.Domain, cmd []byte, timeout time.Duration) ([]byte, error) {
	s.mu.Lock()
	g, filter := s.guests[d.Name], s.filter
	isStatus := strings.Contains(string(cmd), `"guest-exec-status"`)
	if isStatus {
		s.statusCalls[d.Name]++
	}
	s.mu.Unlock()
	if g == nil {
		return nil, fmt.Errorf("%w: QEMU guest agent is not connected", virt.ErrAgentUnavailable)
	}
	if isStatus && filter != nil {
		if out, err, ok := filter(ctx, d.Name, cmd, timeout); ok {
			return out, err
		}
	}
	return g.Command(ctx, cmd, timeout)
}

// TestGuestExecStatusStuck: a guest whose guest-exec-status never reports
// the program's exit, never answers, or answers too slowly. The agent
// bounds the step (ExecTimeout, the guest agent command timeout,
// GuestTimeout respectively), records the timeout reason on the NIC,
// serves another domain meanwhile, and gives the concurrency slot back.
func TestGuestExecStatusStuck(t *testing.T) {
	const stuckFor = 600 * time.Millisecond // every bound below fires after about this long
	for _, tc := range []struct {
		name   string
		prog   guesttest.Program // the stuck guest's ethtool
		filter func(ctx context.Context, dom string, cmd []byte, timeout time.Duration) ([]byte, error, bool)
		cfg    func(c *Config)
		// problem is a substring of the NIC's problem.
		problem string
	}{
		{
			name: "program never exits",
			prog: guesttest.Output(guesttest.Exit{Hang: true}), // exited:false forever
			cfg: func(c *Config) {
				c.Guest.ExecTimeout = stuckFor
			},
			problem: "guest command timed out: still running after 600ms",
		},
		{
			name: "guest-exec-status never answered",
			filter: func(ctx context.Context, dom string, _ []byte, _ time.Duration) ([]byte, error, bool) {
				if dom != "stuck" {
					return nil, nil, false
				}
				// libvirt waits for the agent's reply until the command's
				// timeout (the context's deadline), then gives up.
				<-ctx.Done()
				return nil, fmt.Errorf("%w: Guest agent is not responding: Guest agent not available for now", virt.ErrTimeout), true
			},
			cfg: func(c *Config) {
				c.Guest.CommandTimeout = stuckFor
				c.Guest.ExecTimeout = 10 * stuckFor
			},
			problem: "no reply within 600ms",
		},
		{
			name: "guest-exec-status answers slowly",
			filter: func(ctx context.Context, dom string, _ []byte, _ time.Duration) ([]byte, error, bool) {
				if dom != "stuck" {
					return nil, nil, false
				}
				tm := time.NewTimer(stuckFor / 4)
				defer tm.Stop()
				select {
				case <-tm.C:
				case <-ctx.Done():
					return nil, ctx.Err(), true
				}
				return []byte(`{"return":{"exited":false}}`), nil, true
			},
			cfg: func(c *Config) {
				c.GuestTimeout = stuckFor // the whole step's bound fires first
				c.Guest.ExecTimeout = 10 * stuckFor
			},
			problem: "deadline exceeded",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.cfg.GuestStep = nil // guest.Configure
			h.cfg.Concurrency = 2
			h.cfg.GuestAttempts = 1
			h.cfg.Guest = guest.Options{PollInterval: time.Millisecond, CommandTimeout: 10 * stuckFor}
			tc.cfg(&h.cfg)
			sims := newSimGuests()
			sims.filter = tc.filter
			sims.add("stuck", mac(1), tc.prog)
			sims.add("ok", mac(2), nil)
			h.fake.SetAgent(sims.command)
			h.start()
			for i, name := range []string{"stuck", "ok"} {
				mustDefine(t, h.fake, domainXML(name, 4, 4, mac(i+1)))
				must(t, h.fake.Start(name))
			}
			h.settle()

			start := time.Now()
			must(t, h.fake.AgentConnect("stuck"))
			h.waitFor("stuck polling", func(status.Snapshot) bool { return sims.polls("stuck") > 0 })
			must(t, h.fake.AgentConnect("ok"))
			s := h.waitFor("ok done", func(s status.Snapshot) bool {
				d, _ := findDomain(s, "ok")
				return len(d.NICs) == 1 && d.NICs[0].GuestStep == guestDone
			})
			if d, _ := findDomain(s, "stuck"); len(d.NICs) != 1 || d.NICs[0].GuestStep != "" {
				t.Errorf("the stuck guest's step ended before the other domain was served (after %v): %+v", time.Since(start), d.NICs)
			}

			var n status.NIC
			h.waitFor("stuck marked", func(s status.Snapshot) bool {
				d, _ := findDomain(s, "stuck")
				if len(d.NICs) != 1 {
					return false
				}
				n = d.NICs[0]
				return n.GuestStep != ""
			})
			took := time.Since(start)
			h.settle()
			if n.GuestStep != string(guest.ReasonTimeout) || !strings.Contains(n.Problem, tc.problem) {
				js, _ := json.Marshal(n)
				t.Errorf("stuck NIC = %s; want guest step %q, problem containing %q", js, string(guest.ReasonTimeout), tc.problem)
			}
			if took < stuckFor/2 || took > 5*stuckFor {
				t.Errorf("the stuck step ended after %v; its bound is %v", took, stuckFor)
			}
			// The concurrency slot and the domain's worker are released.
			h.waitFor("slots released", func(status.Snapshot) bool {
				h.agent.sched.mu.Lock()
				defer h.agent.sched.mu.Unlock()
				return len(h.agent.sched.conn) == 0 && len(h.agent.sched.slots) == 0
			})
			// And the domain is served again at its next boot.
			sims.mu.Lock()
			sims.filter = nil
			sims.mu.Unlock()
			sims.add("stuck", mac(1), nil)
			must(t, h.fake.AgentConnect("stuck"))
			h.waitFor("stuck done after a reboot", func(s status.Snapshot) bool {
				d, _ := findDomain(s, "stuck")
				return len(d.NICs) == 1 && d.NICs[0].GuestStep == guestDone
			})
		})
	}
}

// TestOutageCatchUp: libvirt goes away for a while (the agent's dials fail
// again and again); meanwhile domains are defined, started, and a guest
// agent connects. When libvirt is back, one resync catches up with all of
// it: each new definition redefined once, a domain started before its
// rewrite reported pending a cold boot, and the guest step run for the
// running domain whose agent connected while nobody listened.
func TestOutageCatchUp(t *testing.T) {
	h := newHarness(t)
	sims := newSimGuests()
	h.fake.SetAgent(sims.command)
	h.cfg.GuestStep = nil // guest.Configure
	h.cfg.Guest = guest.Options{PollInterval: time.Millisecond, CommandTimeout: time.Second, ExecTimeout: time.Second}
	h.start()

	const failedDials = 8
	h.fake.FailNext(virttest.MethodDial, failedDials, errors.New("dial unix /run/libvirt/virtqemud-sock: connect: connection refused"))
	h.fake.Disconnect()
	h.waitFor("disconnected", func(s status.Snapshot) bool { return !s.Libvirt.Connected })

	for i := range 4 {
		mustDefine(t, h.fake, domainXML(fmt.Sprintf("new%d", i), 4, 0, mac(i)))
	}
	must(t, h.fake.Start("new0")) // before any rewrite: runs with one queue
	mustDefine(t, h.fake, domainXML("ready", 4, 4, mac(9)))
	sims.add("ready", mac(9), nil)
	must(t, h.fake.Start("ready"))
	must(t, h.fake.AgentConnect("ready")) // an event nobody receives

	s := h.waitFor("caught up", func(s status.Snapshot) bool {
		if !s.Libvirt.Connected || len(s.Domains) != 5 {
			return false
		}
		r, _ := findDomain(s, "ready")
		return len(r.NICs) == 1 && r.NICs[0].GuestStep == guestDone
	})
	h.settle()
	s = h.agent.Snapshot()
	if s.Libvirt.Reconnects != 1 {
		t.Errorf("reconnects = %d, want 1", s.Libvirt.Reconnects)
	}
	if n := h.fake.Calls(virttest.MethodDial); n < failedDials+1 {
		t.Errorf("dials = %d, want at least %d", n, failedDials+1)
	}
	want := map[string]string{"new0": status.StatePendingColdBoot, "new1": status.StateRewritten, "new2": status.StateRewritten,
		"new3": status.StateRewritten, "ready": status.StateCompliant}
	for name, st := range want {
		d, _ := findDomain(s, name)
		if d.State != st {
			t.Errorf("%s: state %q, want %q (%s)", name, d.State, st, d.Problem)
		}
		if doc, _ := h.fake.InactiveXML(name); !strings.Contains(string(doc), "queues='4'") {
			t.Errorf("%s: definition not rewritten", name)
		}
	}
	if n := h.fake.Calls(virttest.MethodDefineXML); n != 4 {
		t.Errorf("DefineXML calls = %d, want 4 (one per new definition)", n)
	}
}
