package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/qmptest"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// recordedDomain is the e2e smoke domain as libvirt stored it (4 vCPUs,
// one bridge NIC with queues='4'), with queues set to q (0: no <driver>)
// by virtmq: the domain carries its record.
func recordedDomain(t testing.TB, q int) []byte {
	doc := readRecorded(t, "dumpxml-inactive.xml")
	switch q {
	case 4:
	case 0:
		doc = bytes.Replace(doc, []byte("      <driver queues='4'/>\n"), nil, 1)
	default:
		doc = bytes.Replace(doc, []byte("queues='4'"), fmt.Appendf(nil, "queues='%d'", q), 1)
	}
	return withRecord(t, doc)
}

// recordedQMP answers x-query-virtio-status with the recorded reply,
// through go-qemu's qmptest monitor, behind the fake libvirt.
func recordedQMP(t testing.TB) (virttest.MonitorFunc, func() int) {
	var reply map[string]any
	must(t, json.Unmarshal(readRecorded(t, "x-query-virtio-status.net0.json"), &reply))
	var mu sync.Mutex
	n := 0
	mon := qmptest.NewMonitor(func(cmd qmp.Command) (any, error) {
		mu.Lock()
		n++
		mu.Unlock()
		if cmd.Execute != "x-query-virtio-status" {
			return map[string]any{"error": map[string]any{"class": "CommandNotFound", "desc": "The command " + cmd.Execute + " has not been found"}}, nil
		}
		args, _ := cmd.Args.(map[string]any)
		if args["path"] != "/machine/peripheral/net0/virtio-backend" {
			return map[string]any{"error": map[string]any{"class": "GenericError", "desc": fmt.Sprintf("Path %v is not a VirtIODevice", args["path"])}}, nil
		}
		return reply, nil
	})
	return func(_ context.Context, _ virt.Domain, cmd []byte) ([]byte, error) {
			return mon.Run(cmd)
		}, func() int {
			mu.Lock()
			defer mu.Unlock()
			return n
		}
}

// realGuestHarness runs the agent with the real guest step (guest.Configure)
// and QMP check (qmpcheck.Query) against recorded guest and QMP replies.
func realGuestHarness(t *testing.T) (*harness, *recordedGuest) {
	h := newHarness(t)
	h.cfg.GuestStep = nil // guest.Configure
	h.cfg.Guest = guest.Options{PollInterval: time.Millisecond, CommandTimeout: time.Second, ExecTimeout: 2 * time.Second}
	g := newRecordedGuest(t)
	h.fake.SetAgent(g.Command)
	mon, _ := recordedQMP(t)
	h.fake.SetMonitor(mon)
	return h, g
}

func nicOf(t testing.TB, d status.Domain) status.NIC {
	t.Helper()
	if len(d.NICs) != 1 {
		t.Fatalf("NICs = %+v", d.NICs)
	}
	return d.NICs[0]
}

func TestGuestStepOnAgentConnected(t *testing.T) {
	h, g := realGuestHarness(t)
	h.start()
	mustDefine(t, h.fake, recordedDomain(t, 4))
	must(t, h.fake.Start("virtmq-e2e-smoke"))

	// After the start: QMP verification only, no guest step yet.
	h.waitFor("QMP after start", func(s status.Snapshot) bool {
		d, ok := findDomain(s, "virtmq-e2e-smoke")
		return ok && len(d.NICs) == 1 && d.NICs[0].QMPVirtqueues == 9
	})
	if n := g.count("guest-info"); n != 0 {
		t.Errorf("guest-info before the agent connected: %d", n)
	}

	must(t, h.fake.AgentConnect("virtmq-e2e-smoke"))
	s := h.waitFor("guest step done", func(s status.Snapshot) bool {
		d, ok := findDomain(s, "virtmq-e2e-smoke")
		return ok && len(d.NICs) == 1 && d.NICs[0].GuestStep == guestDone
	})
	d, _ := findDomain(s, "virtmq-e2e-smoke")
	n := nicOf(t, d)
	want := status.NIC{
		MAC: recordedMAC, Managed: true, Wanted: 4, Defined: 4, Running: 4, QMPVirtqueues: 9, MQ: true,
		Rule: "defaults", Reason: "queues=vcpus → 4", GuestIfName: "eth0", GuestWanted: 4, GuestCurrent: 4, GuestMax: 4, GuestStep: guestDone, GuestAt: n.GuestAt,
		TargetDevice: "vnet1", // the live XML's <target dev>
	}
	if n != want {
		t.Errorf("NIC =\n%+v\nwant\n%+v", n, want)
	}
	if d.StateSince.IsZero() {
		t.Error("StateSince is not set")
	}
	if d.State != status.StateCompliant || !strings.Contains(d.LastAction, "eth0 combined 1→4") {
		t.Errorf("domain = %+v", d)
	}
	g.mu.Lock()
	current := g.current
	g.mu.Unlock()
	if current != 4 {
		t.Errorf("guest combined = %d, want 4", current)
	}
	if v := testutil.ToFloat64(h.agent.metrics.guestSteps); v != 1 {
		t.Errorf("guest steps = %v, want 1", v)
	}
}

func TestGuestStepAtResync(t *testing.T) {
	h, g := realGuestHarness(t)
	mustDefine(t, h.fake, recordedDomain(t, 4))
	must(t, h.fake.Start("virtmq-e2e-smoke"))
	h.start() // the guest agent is already up: the resync does the step
	d := h.waitFor("guest step done", func(s status.Snapshot) bool {
		d, ok := findDomain(s, "virtmq-e2e-smoke")
		return ok && len(d.NICs) == 1 && d.NICs[0].GuestStep == guestDone && d.NICs[0].MQ
	})
	_ = d
	if g.count("guest-exec") != 3 { // ethtool -l, -L, -l
		t.Errorf("guest-exec calls = %d, want 3", g.count("guest-exec"))
	}
}

func TestGuestExecDisabledNotRetried(t *testing.T) {
	h, g := realGuestHarness(t)
	g.blocked = true // qemu-ga --block-rpcs=guest-exec (RHEL-style allow-list)
	h.start()
	mustDefine(t, h.fake, recordedDomain(t, 4))
	must(t, h.fake.Start("virtmq-e2e-smoke"))
	must(t, h.fake.AgentConnect("virtmq-e2e-smoke"))
	d := h.waitState("virtmq-e2e-smoke", status.StateCompliant)
	h.waitFor("reason recorded", func(s status.Snapshot) bool {
		d, _ = findDomain(s, "virtmq-e2e-smoke")
		return len(d.NICs) == 1 && d.NICs[0].GuestStep != ""
	})
	h.settle()
	n := nicOf(t, d)
	if n.GuestStep != string(guest.ReasonExecDisabled) || !strings.Contains(n.Problem, "guest-exec is disabled") {
		t.Errorf("NIC = %+v", n)
	}
	if c := g.count("guest-info"); c != 1 {
		t.Errorf("guest-info calls = %d, want 1: a reason the guest gives is not retried", c)
	}
	if v := testutil.ToFloat64(h.agent.metrics.guestFailures.WithLabelValues(string(guest.ReasonExecDisabled))); v != 1 {
		t.Errorf("exec_disabled failures = %v, want 1", v)
	}
}

func TestGuestReasons(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(g *recordedGuest)
		queues int
		reason string
	}{
		{"no ethtool", func(g *recordedGuest) { g.noEthtool = true }, 4, string(guest.ReasonNoEthtool)},
		{"above max", func(g *recordedGuest) { g.max = 2 }, 4, string(guest.ReasonAboveMax)},
		{"hostile interface name", func(g *recordedGuest) {
			g.interfaces = bytes.Replace(g.interfaces, []byte(`"name":"eth0"`), []byte(`"name":"eth0;reboot"`), 1)
		}, 4, ""},
		{"16 MiB binary output", func(g *recordedGuest) {
			junk := make([]byte, 16<<20)
			for i := range junk {
				junk[i] = byte(i * 7)
			}
			g.ethtoolTmpl = string(junk)
		}, 4, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, g := realGuestHarness(t)
			h.cfg.GuestAttempts = 1
			tc.setup(g)
			h.start()
			mustDefine(t, h.fake, recordedDomain(t, tc.queues))
			must(t, h.fake.Start("virtmq-e2e-smoke"))
			must(t, h.fake.AgentConnect("virtmq-e2e-smoke"))
			var n status.NIC
			h.waitFor("guest step outcome", func(s status.Snapshot) bool {
				d, ok := findDomain(s, "virtmq-e2e-smoke")
				if !ok || len(d.NICs) != 1 {
					return false
				}
				n = d.NICs[0]
				return n.GuestStep != "" && n.GuestStep != guestDone
			})
			h.settle()
			t.Logf("%s: %s", n.GuestStep, n.Problem)
			if tc.reason != "" && n.GuestStep != tc.reason {
				t.Errorf("GuestStep = %q, want %q (%s)", n.GuestStep, tc.reason, n.Problem)
			}
			if n.Problem == "" || len(n.Problem) > 1000 {
				t.Errorf("Problem = %.200q (%d bytes)", n.Problem, len(n.Problem))
			}
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.current != 1 {
				t.Errorf("the guest's combined count changed to %d", g.current)
			}
			for _, argv := range g.procs {
				if strings.Contains(strings.Join(argv, " "), ";") {
					t.Errorf("guest-exec with argv %q", argv)
				}
			}
		})
	}
}

func TestGuestStepCoalesced(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	fs := newFakeGuestStep(func(ctx context.Context, dom, mac string, m int) (guest.Result, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return guest.Result{}, ctx.Err()
		}
		return okResult(m), nil
	})
	h.cfg.GuestStep = fs.step
	h.start()
	mustDefine(t, h.fake, domainXML("vm", 4, 4, mac(1)))
	must(t, h.fake.Start("vm"))
	must(t, h.fake.AgentConnect("vm"))
	<-started
	for range 10 { // reboots while the step runs
		must(t, h.fake.AgentConnect("vm"))
	}
	h.settle()
	close(release)
	h.waitFor("done", func(s status.Snapshot) bool {
		d, _ := findDomain(s, "vm")
		return len(d.NICs) == 1 && d.NICs[0].GuestStep == guestDone && fs.count("vm") == 2
	})
	h.settle()
	if n := fs.count("vm"); n != 2 {
		t.Errorf("guest steps = %d, want 2 (the running one, then one for all the events behind it)", n)
	}
}

// Concurrency bounds the guest agent commands in flight (what holds a
// libvirtd worker), not the guest steps: a step waiting between two
// commands (a guest-exec-status poll) holds no slot, so more steps than
// Concurrency make progress at once.
func TestGuestConcurrencyLimit(t *testing.T) {
	h := newHarness(t)
	h.cfg.Concurrency = 2
	var (
		mu               sync.Mutex
		cmds, peakCmds   int
		steps, peakSteps int
		done             = map[string]bool{}
	)
	h.fake.SetAgent(func(ctx context.Context, d virt.Domain, cmd []byte, timeout time.Duration) ([]byte, error) {
		mu.Lock()
		cmds++
		peakCmds = max(peakCmds, cmds)
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		cmds--
		mu.Unlock()
		return []byte(`{"return":{}}`), nil
	})
	h.cfg.GuestStep = func(ctx context.Context, a guest.Agent, mac string, combined int, _ guest.Options) (guest.Result, error) {
		mu.Lock()
		steps++
		peakSteps = max(peakSteps, steps)
		mu.Unlock()
		defer func() {
			mu.Lock()
			steps--
			mu.Unlock()
		}()
		for range 3 {
			if _, err := a.Command(ctx, []byte(`{"execute":"guest-exec-status"}`), time.Second); err != nil {
				return guest.Result{}, err
			}
			time.Sleep(20 * time.Millisecond) // the wait before the next poll
		}
		return okResult(combined), nil
	}
	h.start()
	const n = 8
	for i := range n {
		name := fmt.Sprintf("vm%d", i)
		mustDefine(t, h.fake, domainXML(name, 4, 4, mac(i)))
		must(t, h.fake.Start(name))
	}
	h.settle()
	for i := range n {
		must(t, h.fake.AgentConnect(fmt.Sprintf("vm%d", i)))
	}
	h.waitFor("all done", func(s status.Snapshot) bool {
		for _, d := range s.Domains {
			if len(d.NICs) == 1 && d.NICs[0].GuestStep == guestDone {
				done[d.Name] = true
			}
		}
		return len(done) == n
	})
	mu.Lock()
	defer mu.Unlock()
	if peakCmds != 2 {
		t.Errorf("most guest agent commands at once = %d, want 2", peakCmds)
	}
	if peakSteps <= 2 {
		t.Errorf("most guest steps at once = %d, want more than 2: a step waiting between commands holds no slot", peakSteps)
	}
}

func TestGuestTimeoutOthersServed(t *testing.T) {
	h := newHarness(t)
	h.cfg.GuestStep = nil // guest.Configure
	h.cfg.Concurrency = 1
	h.cfg.GuestAttempts = 3
	h.cfg.GuestTimeout = 2 * time.Second
	h.cfg.Guest = guest.Options{PollInterval: time.Millisecond, CommandTimeout: 50 * time.Millisecond}
	// The slow guest's hanging command holds the one fast slot for a
	// slice at most, shorter than a command's timeout (as with the
	// defaults): the fast guest's commands wait less than theirs.
	h.cfg.GuestSlice = 20 * time.Millisecond
	slow, fast := newRecordedGuest(t), newRecordedGuest(t)
	slow.hang = true
	h.fake.SetAgent(func(ctx context.Context, d virt.Domain, cmd []byte, timeout time.Duration) ([]byte, error) {
		if d.Name == "slow" {
			return slow.Command(ctx, d, cmd, timeout)
		}
		return fast.Command(ctx, d, cmd, timeout)
	})
	h.start()
	for i, name := range []string{"slow", "fast"} {
		doc := bytes.Replace(recordedDomain(t, 4), []byte("virtmq-e2e-smoke"), []byte(name), -1)
		doc = regexp.MustCompile(`<uuid>[^<]*</uuid>`).ReplaceAll(doc, fmt.Appendf(nil, "<uuid>39ac667a-8be7-47c6-94aa-6237136bddf%d</uuid>", i))
		mustDefine(t, h.fake, doc)
		must(t, h.fake.Start(name))
	}
	h.settle()
	must(t, h.fake.AgentConnect("slow"))
	must(t, h.fake.AgentConnect("fast"))
	timeouts := func() float64 {
		return testutil.ToFloat64(h.agent.metrics.guestFailures.WithLabelValues(string(guest.ReasonTimeout)))
	}
	// Wait for the end state itself, not for a quiet spell: the slow
	// guest's attempts are 50 ms hangs apart, so an idle-based wait
	// (settle) could end between two attempts on a loaded machine. The
	// last attempt says it is the last ("next try when the guest agent
	// reconnects"); its failure is counted right after it is recorded.
	h.waitFor("fast served, slow given up after its last attempt", func(s status.Snapshot) bool {
		f, _ := findDomain(s, "fast")
		sl, _ := findDomain(s, "slow")
		return len(f.NICs) == 1 && f.NICs[0].GuestStep == guestDone &&
			len(sl.NICs) == 1 && sl.NICs[0].GuestStep == string(guest.ReasonTimeout) &&
			strings.Contains(sl.NICs[0].Problem, fmt.Sprintf("(attempt %d; next try when the guest agent reconnects", h.cfg.GuestAttempts)) &&
			timeouts() == float64(h.cfg.GuestAttempts)
	})
	// Bounded: no attempt after the last one. A 4th would come after one
	// retry delay (tens of ms); settle waits for a longer quiet spell.
	h.settle()
	if n := slow.count("guest-info"); n != 3 {
		t.Errorf("slow guest-info calls = %d, want 3 (bounded retries)", n)
	}
	if v := timeouts(); v != 3 {
		t.Errorf("timeout failures = %v, want 3", v)
	}
}

func TestGuestSkippedWhenSingleQueue(t *testing.T) {
	h := newHarness(t)
	fs := newFakeGuestStep(func(ctx context.Context, dom, mac string, m int) (guest.Result, error) {
		return okResult(m), nil
	})
	h.cfg.GuestStep = fs.step
	mustDefine(t, h.fake, domainXML("old", 4, 0, mac(1)))
	must(t, h.fake.Start("old")) // runs with 1 queue; the agent redefines it to 4
	h.start()
	must(t, h.fake.AgentConnect("old"))
	h.waitFor("skipped", func(s status.Snapshot) bool {
		d, _ := findDomain(s, "old")
		return d.State == status.StatePendingColdBoot && len(d.NICs) == 1 && d.NICs[0].GuestStep == guestSkipped
	})
	h.settle()
	if n := fs.count("old"); n != 0 {
		t.Errorf("guest steps = %d, want 0", n)
	}
}

func TestGuestAgentAdapter(t *testing.T) {
	fake := virttest.New()
	mustDefine(t, fake, domainXML("vm", 4, 4, mac(1)))
	must(t, fake.Start("vm"))
	d, err := fake.LookupDomain(context.Background(), "vm")
	must(t, err)
	blocked := "internal error: unable to execute QEMU agent command 'guest-exec': Command guest-exec has been disabled"
	for _, tc := range []struct {
		err  error
		want func(error) bool
	}{
		{libvirtAgentError(blocked), func(err error) bool {
			var ce *guest.CommandError
			return errors.As(err, &ce) && ce.Command == "guest-exec" && ce.Desc == "Command guest-exec has been disabled"
		}},
		{fmt.Errorf("%w: QEMU guest agent is not connected", virt.ErrAgentUnavailable), func(err error) bool { return errors.Is(err, guest.ErrNoAgent) }},
		{fmt.Errorf("%w: Guest agent disappeared", virt.ErrTimeout), func(err error) bool { return errors.Is(err, guest.ErrTimeout) }},
		{virt.ErrDisconnected, func(err error) bool { return errors.Is(err, virt.ErrDisconnected) }},
	} {
		fake.SetAgent(func(context.Context, virt.Domain, []byte, time.Duration) ([]byte, error) { return nil, tc.err })
		_, err := virt.GuestAgent{Conn: fake, Domain: d}.Command(context.Background(), []byte(`{"execute":"guest-ping"}`), time.Second)
		if !tc.want(err) {
			t.Errorf("%v → %v (%T)", tc.err, err, err)
		}
	}
	fake.SetAgent(func(_ context.Context, _ virt.Domain, cmd []byte, _ time.Duration) ([]byte, error) {
		return []byte(`{"return":{}}`), nil
	})
	out, err := virt.GuestAgent{Conn: fake, Domain: d}.Command(context.Background(), []byte(`{"execute":"guest-ping"}`), time.Second)
	if err != nil || string(out) != `{"return":{}}` {
		t.Errorf("Command = %s, %v", out, err)
	}
	// QMP: Run goes to libvirt's monitor passthrough; no events.
	fake.SetMonitor(func(_ context.Context, _ virt.Domain, cmd []byte) ([]byte, error) { return cmd, nil })
	m := virt.Monitor{Ctx: context.Background(), Conn: fake, Domain: d}
	must(t, m.Connect())
	if out, err := m.Run([]byte(`{"execute":"query-status"}`)); err != nil || string(out) != `{"execute":"query-status"}` {
		t.Errorf("Run = %s, %v", out, err)
	}
	if _, err := m.Events(context.Background()); !errors.Is(err, qmp.ErrEventsNotSupported) {
		t.Errorf("Events = %v", err)
	}
	must(t, m.Disconnect())
}

// The agent's classifier is guest.Classify plus libvirt's own failures.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err        error
		reason     guest.Reason
		transient  bool
		domainWide bool
	}{
		{fmt.Errorf("x: %w", guest.ErrExecDisabled), guest.ReasonExecDisabled, false, true},
		{fmt.Errorf("x: %w", guest.ErrCommandDisabled), guest.ReasonCmdDisabled, false, true},
		{fmt.Errorf("x: %w", guest.ErrNotLinux), guest.ReasonNotLinux, false, true},
		{fmt.Errorf("x: %w", guest.ErrNoEthtool), guest.ReasonNoEthtool, false, false},
		{fmt.Errorf("x: %w", guest.ErrDenied), guest.ReasonDenied, false, false},
		{fmt.Errorf("x: %w", guest.ErrAboveMax), guest.ReasonAboveMax, false, false},
		{fmt.Errorf("x: %w", guest.ErrNoAgent), guest.ReasonNoAgent, false, true},
		{fmt.Errorf("x: %w", virt.ErrDisconnected), guest.ReasonLibvirt, false, true},
		{fmt.Errorf("x: %w", virt.ErrNotFound), guest.ReasonLibvirt, false, true},
		{fmt.Errorf("x: %w", guest.ErrNoInterface), guest.ReasonNoInterface, true, false},
		{fmt.Errorf("x: %w", guest.ErrTimeout), guest.ReasonTimeout, true, true},
		{context.DeadlineExceeded, guest.ReasonTimeout, true, true},
		{fmt.Errorf("x: %w", guest.ErrBudget), guest.ReasonBudget, true, true},
		{errors.New("ethtool -L succeeded but reads 1"), guest.ReasonError, true, false},
	} {
		c := classify(tc.err)
		if c.Reason != tc.reason || c.Transient != tc.transient || c.DomainWide != tc.domainWide {
			t.Errorf("classify(%v) = %+v; want reason %q, transient %v, domain-wide %v", tc.err, c, tc.reason, tc.transient, tc.domainWide)
		}
		found := false
		for _, g := range guest.Reasons {
			found = found || g == c.Reason
		}
		if !found {
			t.Errorf("reason %q is not in guest.Reasons", c.Reason)
		}
	}
}

func TestUnmanagedUntouched(t *testing.T) {
	h, _ := realGuestHarness(t)
	mustDefine(t, h.fake, domainXML("tiny", 1, 0, mac(1))) // 1 vCPU < min_vcpus
	must(t, h.fake.Start("tiny"))
	h.start()
	must(t, h.fake.AgentConnect("tiny"))
	h.waitState("tiny", status.StateUnmanaged)
	h.settle()
	for _, m := range []string{virttest.MethodAgentCommand, virttest.MethodMonitorCommand, virttest.MethodDefineXML} {
		if n := h.fake.Calls(m); n != 0 {
			t.Errorf("%s calls = %d, want 0", m, n)
		}
	}
}
