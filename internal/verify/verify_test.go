package verify_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/facts"
	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/verify"
	"github.com/virtmq/virtmq/internal/verify/verifytest"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
	"github.com/virtmq/virtmq/policy"
)

// twoNICs is a running kvm domain with two managed 4-queue virtio NICs
// (virtmq's record says it wrote both counts).
const twoNICs = `<domain type='kvm'>
  <name>pair</name>
  <uuid>5d0e4b7a-8c2f-4e1b-a6d3-2f9c8b7a6e03</uuid>
  <metadata>
    <virtmq:written xmlns:virtmq='https://virtmq.dev/xmlns/written/1'>
      <virtmq:nic mac='52:54:00:ab:cd:01' queues='4'/>
      <virtmq:nic mac='52:54:00:ab:cd:02' queues='4'/>
    </virtmq:written>
  </metadata>
  <memory unit='KiB'>524288</memory>
  <vcpu placement='static'>4</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices>
    <interface type='network'>
      <mac address='52:54:00:ab:cd:01'/>
      <source network='default'/>
      <model type='virtio'/>
      <driver name='vhost' queues='4'/>
    </interface>
    <interface type='network'>
      <mac address='52:54:00:ab:cd:02'/>
      <source network='default'/>
      <model type='virtio'/>
      <driver name='vhost' queues='4'/>
    </interface>
  </devices>
</domain>`

// start defines and starts twoNICs with a compliant host and QMP, and
// returns a connection to it.
func start(t *testing.T) (*virttest.Conn, virt.Conn, virt.Domain, *verifytest.Host) {
	t.Helper()
	fake := virttest.New()
	d, err := fake.Define([]byte(twoNICs))
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.Start(d.Name); err != nil {
		t.Fatal(err)
	}
	conn, _, err := fake.Dial(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d, err = conn.LookupDomain(context.Background(), d.Name)
	if err != nil {
		t.Fatal(err)
	}
	h := verifytest.NewHost(t, d.Name, true, 8)
	h.SetTap(verifytest.LiveTap(t, fake, d.Name, 0), 4, 0)
	h.SetTap(verifytest.LiveTap(t, fake, d.Name, 1), 1, 3)
	verifytest.SetMonitor(fake, map[string]int{"net0": 9, "net1": 9}, true)
	return fake, conn, d, h
}

// find returns the checks named name, in order.
func find(checks []verify.Check, name string) []verify.Check {
	var out []verify.Check
	for _, c := range checks {
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

// TestRunRawValues: the checks carry the numbers and the NIC they compare,
// and their messages.
func TestRunRawValues(t *testing.T) {
	fake, conn, d, h := start(t)
	verifytest.SetGuest(fake, verifytest.LinuxGuest("52:54:00:ab:cd:01", guest.Channels{Max: 4, Current: 4}))
	checks, err := verify.Run(context.Background(), conn, facts.NewReader(conn), h.Host, d, policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	if checks[0].Name != "host-libvirt" || checks[0].Status != verify.OK || *checks[0].Got != 0 || *checks[0].Want != 1000 {
		t.Errorf("first check %+v, want host-libvirt OK 0 of 1000 ms", checks[0])
	}
	active := find(checks, "tap-active")
	if len(active) != 2 {
		t.Fatalf("tap-active checks: %+v", active)
	}
	for i, want := range []struct {
		status   verify.Status
		mac      string
		got, max int
	}{{verify.OK, "52:54:00:ab:cd:01", 4, 4}, {verify.Fail, "52:54:00:ab:cd:02", 1, 4}} {
		c := active[i]
		if c.Status != want.status || c.MAC != want.mac || c.Got == nil || *c.Got != want.got || c.Want == nil || *c.Want != want.max {
			t.Errorf("tap-active %d: %+v, want %+v", i, c, want)
		}
	}
	tap := verifytest.LiveTap(t, fake, d.Name, 1)
	if got, want := active[1].Message(nil), "52:54:00:ab:cd:02 tap "+tap+" active queues 1 != wanted combined 4 (numqueues 1 numdisabled 3: the guest uses 1)"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	// The second NIC's MAC is not in the guest: a skip for that NIC only.
	g := find(checks, "guest")
	if len(g) != 1 || g[0].Status != verify.Skip || g[0].MAC != "52:54:00:ab:cd:02" || !errors.Is(g[0].Err, guest.ErrNoInterface) {
		t.Errorf("guest checks %+v, want one SKIP of 52:54:00:ab:cd:02 with ErrNoInterface", g)
	}
	if w := find(checks, "vhost-workers"); len(w) != 1 || w[0].Status != verify.OK || *w[0].Got != 8 || *w[0].Want != 8 {
		t.Errorf("vhost-workers: %+v", w)
	}
}

// TestMessageRaw: the caller's sanitizer sees only what came from outside
// (here the guest agent's error text), never virtmq's own text.
func TestMessageRaw(t *testing.T) {
	fake, conn, d, h := start(t)
	fake.SetAgent(func(context.Context, virt.Domain, []byte, time.Duration) ([]byte, error) {
		return nil, errors.New("agent says \x1b[2J")
	})
	checks, err := verify.Run(context.Background(), conn, facts.NewReader(conn), h.Host, d, policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	g := find(checks, "guest")
	if len(g) != 2 || g[0].Status != verify.Fail {
		t.Fatalf("guest checks %+v, want two FAILs", g)
	}
	if m := g[0].Message(nil); !strings.HasPrefix(m, "52:54:00:ab:cd:01 guest: ") || !strings.Contains(m, "\x1b[2J") {
		t.Errorf("raw message %q", m)
	}
	var cleaned []string
	m := g[0].Message(func(s string) string {
		cleaned = append(cleaned, s)
		return strings.ReplaceAll(s, "\x1b", "?")
	})
	if !strings.HasPrefix(m, "52:54:00:ab:cd:01 guest: ") || !strings.HasSuffix(m, "agent says ?[2J") {
		t.Errorf("clean message %q", m)
	}
	if len(cleaned) != 1 || strings.Contains(cleaned[0], "52:54:00:ab:cd:01") {
		t.Errorf("clean saw %q, want only the guest's error", cleaned)
	}
}

// TestGuestDomainWide: a reason that holds for the whole domain is asked
// once and reported for every NIC; a failure is asked per NIC.
func TestGuestDomainWide(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status verify.Status
		asks   int // guest-info commands sent
	}{
		{"agent gone", guest.ErrNoAgent, verify.Skip, 1},
		{"budget", guest.ErrBudget, verify.Fail, 2},
		{"other", errors.New("boom"), verify.Fail, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, conn, d, h := start(t)
			asks := 0
			fake.SetAgent(func(_ context.Context, _ virt.Domain, cmd []byte, _ time.Duration) ([]byte, error) {
				asks++
				return nil, tc.err
			})
			checks, err := verify.Run(context.Background(), conn, facts.NewReader(conn), h.Host, d, policy.Default())
			if err != nil {
				t.Fatal(err)
			}
			g := find(checks, "guest")
			if len(g) != 2 || g[0].Status != tc.status || g[1].Status != tc.status {
				t.Errorf("guest checks %+v, want two %s", g, tc.status)
			}
			if asks != tc.asks {
				t.Errorf("%d agent commands, want %d", asks, tc.asks)
			}
		})
	}
}

// TestDeps keeps the imports flowing one way: the CLI uses the engine,
// never the other way round, and the engine knows nothing of the daemon.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range []string{"github.com/virtmq/virtmq/cli", "github.com/virtmq/virtmq/agent"} {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("internal/verify imports %s", dep)
			}
		}
	}
}
