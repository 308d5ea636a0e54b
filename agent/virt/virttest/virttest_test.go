package virttest_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/virtmq/virtmq/agent/virt"
	"github.com/virtmq/virtmq/agent/virt/virttest"
)

const doc = `<domain type='qemu'>
  <name>vm</name>
  <devices>
    <interface type='bridge'>
      <mac address='52:54:00:00:00:01'/>
    </interface>
  </devices>
</domain>`

func next(t *testing.T, ch <-chan virt.Event) virt.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event stream closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return virt.Event{}
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	fake := virttest.New()
	c, _, err := fake.Dial(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, err := fake.Define([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, evs); ev.Kind != virt.EventDefined || ev.Domain.UUID != d.UUID || ev.Detail != 0 {
		t.Errorf("event = %+v", ev)
	}
	inactive, err := c.DomainXML(ctx, d, true)
	if err != nil || !bytes.Contains(inactive, []byte("<uuid>"+d.UUID+"</uuid>")) {
		t.Errorf("inactive XML = %s, %v", inactive, err)
	}
	// Redefining through a connection is an update.
	if err := c.DefineXML(ctx, inactive); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, evs); ev.Kind != virt.EventDefined || ev.Detail != 1 {
		t.Errorf("event = %+v", ev)
	}
	if err := fake.Start("vm"); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, evs); ev.Kind != virt.EventStarted {
		t.Errorf("event = %+v", ev)
	}
	live, _ := c.DomainXML(ctx, d, false)
	if !bytes.Contains(live, []byte("<alias name='net0'/>")) || !bytes.Contains(live, []byte("<target dev='vnet")) {
		t.Errorf("live XML = %s", live)
	}
	got, err := c.LookupDomain(ctx, "vm")
	if err != nil || !got.Active || !got.Persistent || got.UUID != d.UUID {
		t.Errorf("LookupDomain = %+v, %v", got, err)
	}
	if err := fake.AgentConnect("vm"); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, evs); ev.Kind != virt.EventAgentConnected {
		t.Errorf("event = %+v", ev)
	}
	if _, err := c.AgentCommand(ctx, d, []byte(`{}`), time.Second); !errors.Is(err, virt.ErrAgentUnavailable) {
		t.Errorf("AgentCommand without agent = %v", err)
	}
	fake.SetAgent(func(_ context.Context, _ virt.Domain, cmd []byte, _ time.Duration) ([]byte, error) { return cmd, nil })
	if out, err := c.AgentCommand(ctx, d, []byte(`{"x":1}`), time.Second); err != nil || string(out) != `{"x":1}` {
		t.Errorf("AgentCommand = %s, %v", out, err)
	}
	if err := fake.Stop("vm"); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, evs); ev.Kind != virt.EventStopped {
		t.Errorf("event = %+v", ev)
	}
	if _, err := c.AgentCommand(ctx, d, []byte(`{}`), time.Second); !errors.Is(err, virt.ErrAgentUnavailable) {
		t.Errorf("AgentCommand on a stopped domain = %v", err)
	}
	// Transient: gone when stopped.
	td, err := fake.Create([]byte(`<domain><name>t</name></domain>`))
	if err != nil || td.Persistent || !td.Active {
		t.Fatalf("Create = %+v, %v", td, err)
	}
	next(t, evs)
	doms, _ := c.ListDomains(ctx)
	if len(doms) != 2 {
		t.Errorf("ListDomains = %+v", doms)
	}
	fake.Stop("t")
	next(t, evs)
	if _, err := c.LookupDomain(ctx, "t"); !errors.Is(err, virt.ErrNotFound) {
		t.Errorf("LookupDomain of a stopped transient domain = %v", err)
	}
}

func TestFaultsAndDisconnect(t *testing.T) {
	ctx := context.Background()
	fake := virttest.New()
	c, _, _ := fake.Dial(ctx, nil)
	evs, _ := c.Events(ctx)
	boom := errors.New("boom")
	fake.FailNext(virttest.MethodListDomains, 2, boom)
	for range 2 {
		if _, err := c.ListDomains(ctx); !errors.Is(err, boom) {
			t.Errorf("ListDomains = %v", err)
		}
	}
	if _, err := c.ListDomains(ctx); err != nil {
		t.Errorf("ListDomains = %v", err)
	}
	if n := fake.Calls(virttest.MethodListDomains); n != 3 {
		t.Errorf("calls = %d", n)
	}
	fake.SetValidate(func([]byte) error { return errors.New("invalid") })
	if err := c.DefineXML(ctx, []byte(doc)); err == nil {
		t.Error("DefineXML passed validation")
	}
	fake.SetValidate(nil)

	// A disconnect fault drops the calling connection only.
	c2, _, _ := fake.Dial(ctx, nil)
	fake.FailNext(virttest.MethodDefineXML, 1, virt.ErrDisconnected)
	if err := c.DefineXML(ctx, []byte(doc)); !errors.Is(err, virt.ErrDisconnected) {
		t.Errorf("DefineXML = %v", err)
	}
	select {
	case <-c.Disconnected():
	default:
		t.Error("connection not dropped")
	}
	if _, ok := <-evs; ok {
		t.Error("event stream open after the drop")
	}
	if _, err := c.ListDomains(ctx); !errors.Is(err, virt.ErrDisconnected) {
		t.Errorf("call after the drop = %v", err)
	}
	if _, err := c2.ListDomains(ctx); err != nil {
		t.Errorf("other connection: %v", err)
	}
	fake.Disconnect()
	if _, err := c2.ListDomains(ctx); !errors.Is(err, virt.ErrDisconnected) {
		t.Errorf("after Disconnect = %v", err)
	}
	fake.FailNext(virttest.MethodDial, 1, boom)
	if _, _, err := fake.Dial(ctx, nil); !errors.Is(err, boom) {
		t.Errorf("Dial = %v", err)
	}
	c3, _, err := fake.Dial(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fake.Connections() != 1 {
		t.Errorf("connections = %d", fake.Connections())
	}
	c3.Close()
}

// A define that stalls past the caller's deadline still lands, with its
// event, once the daemon gets to it.
func TestStallDefineLandsAfterTimeout(t *testing.T) {
	fake := virttest.New()
	evs, err := fake.Events(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	release := fake.StallDefine()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if err := fake.DefineXML(ctx, []byte(doc)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled DefineXML = %v, want the deadline", err)
	}
	if _, ok := fake.InactiveXML("vm"); ok {
		t.Fatal("defined before the release")
	}
	release()
	if ev := next(t, evs); ev.Kind != virt.EventDefined || ev.Domain.Name != "vm" {
		t.Errorf("event = %+v", ev)
	}
	if _, ok := fake.InactiveXML("vm"); !ok {
		t.Error("not defined after the release")
	}
	// The next define does not stall.
	if err := fake.DefineXML(t.Context(), []byte(doc)); err != nil {
		t.Errorf("DefineXML = %v", err)
	}
	if n := fake.Calls(virttest.MethodDefineXML); n != 2 {
		t.Errorf("DefineXML calls = %d, want 2", n)
	}
}

func TestDefineRefusedIsInvalidDefinition(t *testing.T) {
	fake := virttest.New()
	fake.SetValidate(func([]byte) error { return errors.New("Invalid value for attribute queues") })
	for name, in := range map[string]string{"schema": doc, "parse": "<domain>"} {
		if err := fake.DefineXML(t.Context(), []byte(in)); !errors.Is(err, virt.ErrInvalidDefinition) {
			t.Errorf("%s: DefineXML = %v, want ErrInvalidDefinition", name, err)
		}
	}
}
