package virttest_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
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
	inactive, err := c.DomainXML(ctx, d, virt.XMLInactive)
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
	live, _ := c.DomainXML(ctx, d, virt.XMLLive)
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

// TestDomainXMLSecrets checks that the fake leaves secrets out as libvirt
// does: without virt.XMLSecure the passwd of each <graphics> is gone and
// nothing else changes; with it the XML is the stored one.
func TestDomainXMLSecrets(t *testing.T) {
	ctx := context.Background()
	fake := virttest.New()
	doc := virttest.GraphicsPasswdXML()
	d, err := fake.Define(doc)
	if err != nil {
		t.Fatal(err)
	}
	// What libvirt prints without the flag: passwd left out, passwdValidTo
	// and connected kept (virDomainGraphicsAuthDefFormatAttr).
	want := doc
	for _, pw := range virttest.GraphicsPasswords {
		want = bytes.Replace(want, []byte(" "+pw), nil, 1)
	}
	if bytes.Equal(want, doc) {
		t.Fatal("the fixture holds no passwords")
	}
	check := func(state string, flags virt.XMLFlags, want []byte) {
		t.Helper()
		got, err := fake.DomainXML(ctx, d, flags)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s, DomainXML(%#x) =\n%s\nwant\n%s", state, flags, got, want)
		}
	}
	check("shut off", virt.XMLInactive, want)
	check("shut off", virt.XMLLive, want)
	check("shut off", virt.XMLInactive|virt.XMLSecure, doc)
	if stored, _ := fake.InactiveXML("console"); !bytes.Equal(stored, doc) {
		t.Errorf("stored definition changed:\n%s", stored)
	}

	if err := fake.Start("console"); err != nil {
		t.Fatal(err)
	}
	live, _ := fake.LiveXML("console")
	check("running", virt.XMLInactive, want)
	check("running", virt.XMLInactive|virt.XMLSecure, doc)
	check("running", virt.XMLLive|virt.XMLSecure, live)
	got, err := fake.DomainXML(ctx, d, virt.XMLLive)
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range virttest.GraphicsPasswords {
		if bytes.Contains(got, []byte(pw)) {
			t.Errorf("live XML without XMLSecure holds %s", pw)
		}
	}
	if !bytes.Contains(got, []byte("passwdValidTo='2031-06-30T12:00:00'")) || !bytes.Contains(got, []byte("connected='disconnect'")) {
		t.Errorf("live XML lost passwdValidTo or connected:\n%s", got)
	}
	if n, all := fake.Calls(virttest.MethodDomainXMLSecure), fake.Calls(virttest.MethodDomainXML); n != 3 || all != 7 {
		t.Errorf("Calls: %d secure of %d, want 3 of 7", n, all)
	}
}

func TestDomainXMLSecretsForms(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"double quotes", `<graphics type="vnc" passwd="a'b"/>`, `<graphics type="vnc"/>`},
		{"first attribute", `<graphics passwd='x' type='vnc'/>`, `<graphics type='vnc'/>`},
		{"spaces around =", "<graphics type='vnc'\n   passwd = 'x'/>", `<graphics type='vnc'/>`},
		{"> inside a value", `<graphics type='vnc' keymap='a>b' passwd='c>d'></graphics>`, `<graphics type='vnc' keymap='a>b'></graphics>`},
		{"passwdValidTo kept", `<graphics type='vnc' passwd='x' passwdValidTo='2030-01-01T00:00:00'/>`, `<graphics type='vnc' passwdValidTo='2030-01-01T00:00:00'/>`},
		{"other elements untouched", `<graphicsx passwd='x'/><source passwd='y'/>`, `<graphicsx passwd='x'/><source passwd='y'/>`},
		{"no password", `<graphics type='sdl' display=':0'/>`, `<graphics type='sdl' display=':0'/>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := virttest.New()
			d, err := fake.Define([]byte("<domain><name>vm</name><uuid>00000000-0000-4000-8000-000000000001</uuid><devices>" + tt.doc + "</devices></domain>"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := fake.DomainXML(context.Background(), d, virt.XMLInactive)
			if err != nil {
				t.Fatal(err)
			}
			want := "<domain><name>vm</name><uuid>00000000-0000-4000-8000-000000000001</uuid><devices>" + tt.want + "</devices></domain>"
			if string(got) != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
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

// A paused guest's qemu-ga cannot answer: the command times out, as on
// libvirt, while QMP still answers.
func TestAgentCommandPaused(t *testing.T) {
	ctx := context.Background()
	fake := virttest.New()
	fake.SetAgent(func(context.Context, virt.Domain, []byte, time.Duration) ([]byte, error) {
		return []byte(`{"return":{}}`), nil
	})
	d, err := fake.Define([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.Start(d.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.AgentCommand(ctx, d, []byte(`{"execute":"guest-ping"}`), time.Second); err != nil {
		t.Fatalf("running: %v", err)
	}
	if err := fake.SuspendDomain(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.AgentCommand(ctx, d, []byte(`{"execute":"guest-ping"}`), time.Second); !errors.Is(err, virt.ErrTimeout) {
		t.Errorf("paused: %v, want virt.ErrTimeout", err)
	}
	if _, err := fake.MonitorCommand(ctx, d, []byte(`{"execute":"query-status"}`)); err != nil {
		t.Errorf("QMP on a paused domain: %v", err)
	}
}
