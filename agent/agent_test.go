package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
	"github.com/virtmq/virtmq/policy"
)

func TestDefineRewritesOnce(t *testing.T) {
	h := newHarness(t).start()
	d := mustDefine(t, h.fake, domainXML("web1", 4, 0, mac(1)))
	// What the fake stored (it adds the UUID), before the agent's rewrite.
	before := bytes.Replace(domainXML("web1", 4, 0, mac(1)), []byte("</name>"), []byte("</name><uuid>"+d.UUID+"</uuid>"), 1)

	got := h.waitState("web1", status.StateRewritten)
	h.settle()

	if n := h.fake.Calls(virttest.MethodDefineXML); n != 1 {
		t.Errorf("DefineXML calls = %d, want 1 (the agent's own DEFINED event must not redefine again)", n)
	}
	// The definition is exactly what domxml.Apply (virtmq rewrite) makes.
	pol, err := policy.Load(h.cfg.PolicyPath)
	must(t, err)
	want, _, err := domxml.Apply(pol, before)
	must(t, err)
	after, _ := h.fake.InactiveXML("web1")
	if !bytes.Equal(after, want) {
		t.Errorf("definition after the rewrite:\n%s\nwant:\n%s", after, want)
	}
	if got.UUID != d.UUID || !got.Persistent || got.Active {
		t.Errorf("domain = %+v", got)
	}
	if len(got.NICs) != 1 || got.NICs[0].Wanted != 4 || got.NICs[0].Defined != 4 || got.NICs[0].MAC != mac(1) || !got.NICs[0].Managed {
		t.Errorf("NICs = %+v", got.NICs)
	}
	if !strings.HasPrefix(got.LastAction, "redefined") {
		t.Errorf("LastAction = %q", got.LastAction)
	}
	// The user redefines the same domain: back to compliant bytes, once more.
	mustDefine(t, h.fake, before)
	h.waitFor("second rewrite", func(status.Snapshot) bool { return h.fake.Calls(virttest.MethodDefineXML) == 2 })
	h.settle()
	if n := h.fake.Calls(virttest.MethodDefineXML); n != 2 {
		t.Errorf("DefineXML calls = %d, want 2", n)
	}
}

func TestCompliantNotRedefined(t *testing.T) {
	h := newHarness(t)
	mustDefine(t, h.fake, domainXML("old", 4, 4, mac(1))) // before the agent: found at resync
	mustDefine(t, h.fake, domainXML("one-cpu", 1, 0, mac(2)))
	h.start()
	mustDefine(t, h.fake, domainXML("new", 2, 2, mac(3)))
	h.waitState("old", status.StateCompliant)
	h.waitState("new", status.StateCompliant)
	d := h.waitState("one-cpu", status.StateUnmanaged)
	h.settle()
	if n := h.fake.Calls(virttest.MethodDefineXML); n != 0 {
		t.Errorf("DefineXML calls = %d, want 0", n)
	}
	if d.NICs[0].Managed {
		t.Errorf("one-cpu NIC managed: %+v", d.NICs[0])
	}
}

func TestTransientReported(t *testing.T) {
	h := newHarness(t).start()
	_, err := h.fake.Create(domainXML("scratch", 4, 0, mac(1)))
	must(t, err)
	d := h.waitState("scratch", status.StateTransient)
	h.settle()
	if n := h.fake.Calls(virttest.MethodDefineXML); n != 0 {
		t.Errorf("DefineXML calls = %d, want 0: transient domains are never redefined", n)
	}
	if d.Persistent || !d.Active || !strings.Contains(d.Problem, "transient") || d.NICs[0].Running != 1 || d.NICs[0].Wanted != 4 {
		t.Errorf("domain = %+v", d)
	}
	// A compliant transient domain is just compliant; a stopped one is gone.
	_, err = h.fake.Create(domainXML("fine", 4, 4, mac(2)))
	must(t, err)
	h.waitState("fine", status.StateCompliant)
	must(t, h.fake.Stop("scratch"))
	h.waitFor("scratch gone", func(s status.Snapshot) bool { _, ok := findDomain(s, "scratch"); return !ok })
}

func TestRunningPendingColdBoot(t *testing.T) {
	h := newHarness(t)
	mustDefine(t, h.fake, domainXML("db", 4, 0, mac(1)))
	must(t, h.fake.Start("db"))
	h.start()

	d := h.waitState("db", status.StatePendingColdBoot)
	n := d.NICs[0]
	if n.Running != 1 || n.Defined != 4 || n.Wanted != 4 || !strings.Contains(d.Problem, "cold boot") {
		t.Errorf("pending domain = %+v", d)
	}
	if got := h.fake.Calls(virttest.MethodDefineXML); got != 1 {
		t.Errorf("DefineXML calls = %d, want 1", got)
	}
	must(t, h.fake.Stop("db"))
	h.waitState("db", status.StateRewritten)
	must(t, h.fake.Start("db"))
	d = h.waitState("db", status.StateCompliant)
	if d.NICs[0].Running != 4 || d.Problem != "" {
		t.Errorf("after cold boot = %+v", d)
	}
	h.settle()
	if got := h.fake.Calls(virttest.MethodDefineXML); got != 1 {
		t.Errorf("DefineXML calls = %d, want 1", got)
	}
}

func TestDisconnectMidRewriteConverges(t *testing.T) {
	h := newHarness(t).start()
	h.fake.FailNext(virttest.MethodDefineXML, 1, virt.ErrDisconnected)
	mustDefine(t, h.fake, domainXML("web1", 4, 0, mac(1)))

	s := h.waitFor("reconnected and rewritten", func(s status.Snapshot) bool {
		d, ok := findDomain(s, "web1")
		return ok && d.State == status.StateRewritten && s.Libvirt.Connected && s.Libvirt.Reconnects >= 1
	})
	if s.Libvirt.Reconnects != 1 {
		t.Errorf("reconnects = %d, want 1", s.Libvirt.Reconnects)
	}
	if n := h.fake.Calls(virttest.MethodDefineXML); n != 2 {
		t.Errorf("DefineXML calls = %d, want 2 (failed, then at resync)", n)
	}

	// The daemon goes away for a while; a domain defined meanwhile is
	// rewritten after the reconnect.
	h.fake.FailNext(virttest.MethodDial, 3, errors.New("dial unix /run/libvirt/virtqemud-sock: connect: connection refused"))
	h.fake.Disconnect()
	h.waitFor("disconnected", func(s status.Snapshot) bool { return !s.Libvirt.Connected })
	mustDefine(t, h.fake, domainXML("web2", 2, 0, mac(2)))
	h.waitState("web2", status.StateRewritten)
	s = h.waitFor("connected", func(s status.Snapshot) bool { return s.Libvirt.Connected })
	if s.Libvirt.Reconnects != 2 {
		t.Errorf("reconnects = %d, want 2", s.Libvirt.Reconnects)
	}
	// The old connections were closed.
	if n := h.fake.Connections(); n != 1 {
		t.Errorf("open connections = %d, want 1", n)
	}
	if !h.notes.has("STATUS=libvirt") {
		t.Errorf("no STATUS= about the lost connection in %q", h.notes.list())
	}
}

func TestRedefineValidationFails(t *testing.T) {
	h := newHarness(t).start()
	h.fake.SetValidate(func(doc []byte) error {
		if bytes.Contains(doc, []byte("<name>bad</name>")) && bytes.Contains(doc, []byte("queues=")) {
			return errors.New("Invalid value for attribute queues in element driver")
		}
		return nil
	})
	mustDefine(t, h.fake, domainXML("bad", 4, 0, mac(1)))
	mustDefine(t, h.fake, domainXML("good", 4, 0, mac(2)))
	d := h.waitState("bad", status.StateError)
	h.waitState("good", status.StateRewritten)
	if !strings.Contains(d.Problem, "Invalid value for attribute queues") || d.LastAction != "redefine failed" {
		t.Errorf("bad = %+v", d)
	}
	h.settle()
	if n := h.fake.Calls(virttest.MethodDefineXML); n != 2 {
		t.Errorf("DefineXML calls = %d, want 2", n)
	}
}

func TestRedefineLoopGuard(t *testing.T) {
	h := newHarness(t)
	h.cfg.MaxRedefines = 3
	h.start()
	// A libvirt that drops the queues attribute: the rewrite never sticks.
	drop := regexp.MustCompile(`\s*<driver queues='\d+'/>`)
	h.fake.SetNormalize(func(doc []byte) []byte { return drop.ReplaceAll(doc, nil) })
	mustDefine(t, h.fake, domainXML("loopy", 4, 0, mac(1)))
	d := h.waitState("loopy", status.StateError)
	if !strings.Contains(d.Problem, "did not keep") {
		t.Errorf("loopy = %+v", d)
	}
	h.settle()
	if n := h.fake.Calls(virttest.MethodDefineXML); n != 3 {
		t.Errorf("DefineXML calls = %d, want 3", n)
	}
}

func TestReloadBadPolicyKeepsOld(t *testing.T) {
	h := newHarness(t).start()
	old := h.agent.Snapshot().Policy

	must(t, os.WriteFile(h.cfg.PolicyPath, []byte("version: 1\nmode: sometimes\n"), 0o644))
	h.reload <- syscall.SIGHUP
	s := h.waitFor("reload error", func(s status.Snapshot) bool { return s.Policy.LastReloadError != "" })
	if !strings.Contains(s.Policy.LastReloadError, "mode") || s.Policy.Mode != old.Mode || !s.Policy.LoadedAt.Equal(old.LoadedAt) {
		t.Errorf("policy after bad reload = %+v", s.Policy)
	}
	// The previous policy still rewrites.
	mustDefine(t, h.fake, domainXML("web1", 4, 0, mac(1)))
	h.waitState("web1", status.StateRewritten)
	if !h.notes.has("policy reload failed") {
		t.Errorf("STATUS= does not say the reload failed: %q", h.notes.list())
	}

	// A good policy takes over and every domain is reconciled with it.
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(strings.Replace(testPolicy, "max: 8", "max: 2", 1)), 0o644))
	h.reload <- syscall.SIGHUP
	h.waitFor("reloaded", func(s status.Snapshot) bool { return s.Policy.LastReloadError == "" })
	h.waitFor("web1 at 2 queues", func(s status.Snapshot) bool {
		d, ok := findDomain(s, "web1")
		return ok && len(d.NICs) == 1 && d.NICs[0].Wanted == 2 && d.NICs[0].Defined == 2
	})
	doc, _ := h.fake.InactiveXML("web1")
	if !bytes.Contains(doc, []byte("queues='2'")) {
		t.Errorf("definition after reload:\n%s", doc)
	}
}

func TestStartupAndShutdown(t *testing.T) {
	h := newHarness(t)
	// libvirt hangs: READY=1 must not wait for it.
	release := make(chan struct{})
	h.cfg.Dial = func(ctx context.Context, s []string) (virt.Conn, string, error) {
		select {
		case <-release:
			return h.fake.Dial(ctx, s)
		case <-ctx.Done():
			return nil, "", ctx.Err()
		}
	}
	h.cfg.Watchdog = func() (time.Duration, error) { return 20 * time.Millisecond, nil }
	a, err := New(h.cfg)
	must(t, err)
	h.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	deadline := time.Now().Add(10 * time.Second)
	for !h.notes.has("READY=1") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !h.notes.has("READY=1") {
		t.Fatalf("no READY=1 while libvirt is unavailable: %q", h.notes.list())
	}
	fi, err := os.Stat(h.cfg.StatusSocket)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("status socket: %v, %v", fi, err)
	}
	snap, err := status.Fetch(context.Background(), h.cfg.StatusSocket)
	must(t, err)
	if snap.Libvirt.Connected || snap.Policy.Mode != "apply" || len(snap.Policy.Sources) != 1 {
		t.Errorf("snapshot before libvirt = %+v", snap)
	}
	close(release)
	for !h.agent.Snapshot().Libvirt.Connected && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for !h.notes.has("WATCHDOG=1") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !h.notes.has("WATCHDOG=1") {
		t.Errorf("no WATCHDOG=1: %q", h.notes.list())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
	if _, err := os.Stat(h.cfg.StatusSocket); !os.IsNotExist(err) {
		t.Errorf("status socket left behind: %v", err)
	}
	if n := h.notes.list(); n[len(n)-1] != "STOPPING=1" {
		t.Errorf("last notification = %q, want STOPPING=1", n[len(n)-1])
	}
	if h.fake.Connections() != 1 {
		t.Errorf("connections left open: %d", h.fake.Connections()-1)
	}
}

func TestInvalidPolicyAtStart(t *testing.T) {
	h := newHarness(t)
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte("version: 2\n"), 0o644))
	a, err := New(h.cfg)
	must(t, err)
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "policy") {
		t.Fatalf("Run = %v, want a policy error", err)
	}
	if h.notes.has("READY=1") {
		t.Error("READY=1 sent with an invalid policy")
	}
	if _, err := os.Stat(filepath.Dir(h.cfg.StatusSocket)); !os.IsNotExist(err) {
		t.Error("status socket directory created before the policy was valid")
	}
}

func TestUndefinedAndGone(t *testing.T) {
	h := newHarness(t).start()
	mustDefine(t, h.fake, domainXML("tmp", 4, 4, mac(1)))
	h.waitState("tmp", status.StateCompliant)
	must(t, h.fake.Undefine("tmp"))
	h.waitFor("tmp gone", func(s status.Snapshot) bool { _, ok := findDomain(s, "tmp"); return !ok })

	// A domain removed while disconnected is forgotten at resync.
	mustDefine(t, h.fake, domainXML("tmp2", 4, 4, mac(2)))
	h.waitState("tmp2", status.StateCompliant)
	h.fake.FailNext(virttest.MethodDial, 2, errors.New("refused"))
	h.fake.Disconnect()
	h.waitFor("disconnected", func(s status.Snapshot) bool { return !s.Libvirt.Connected })
	must(t, h.fake.Undefine("tmp2"))
	h.waitFor("tmp2 gone", func(s status.Snapshot) bool {
		_, ok := findDomain(s, "tmp2")
		return !ok && s.Libvirt.Connected
	})
}
