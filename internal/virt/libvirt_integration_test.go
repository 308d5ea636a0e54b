package virt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestRealLibvirt exercises the go-libvirt implementation against a real
// libvirtd or virtqemud. It runs only when VIRTMQ_TEST_LIBVIRT_SOCKET names
// the daemon's socket (e.g. /run/libvirt/libvirt-sock, as root). It defines
// and undefines one scratch domain, never starts it, and sends no guest
// agent or QMP command to any other domain.
func TestRealLibvirt(t *testing.T) {
	sock := os.Getenv("VIRTMQ_TEST_LIBVIRT_SOCKET")
	if sock == "" {
		t.Skip("set VIRTMQ_TEST_LIBVIRT_SOCKET to a libvirt socket to run")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	conn, used, err := Dial(ctx, []string{"/nonexistent/virtqemud-sock", sock})
	if err != nil {
		t.Fatal(err)
	}
	if used != sock {
		t.Errorf("socket used = %q, want %q", used, sock)
	}
	lc := conn.(*libvirtConn)
	defer conn.Close()

	if _, err := conn.ListDomains(ctx); err != nil {
		t.Fatalf("ListDomains: %v", err)
	}
	events, err := conn.Events(ctx)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}

	name := fmt.Sprintf("virtmq-virt-test-%d", os.Getpid())
	doc := fmt.Appendf(nil, `<domain type='qemu'>
  <name>%s</name>
  <memory unit='KiB'>65536</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <interface type='bridge'>
      <mac address='52:54:00:fe:00:01'/>
      <source bridge='virtmqbr0'/>
      <model type='virtio'/>
      <driver queues='2'/>
    </interface>
    <graphics type='vnc' autoport='yes' passwd='t3stpw'/>
  </devices>
</domain>
`, name)
	if err := conn.DefineXML(ctx, doc); err != nil {
		t.Fatalf("DefineXML: %v", err)
	}
	defer func() {
		if ld, err := lc.l.DomainLookupByName(name); err == nil {
			_ = lc.l.DomainUndefineFlags(ld, 0)
		}
	}()
	d, err := conn.LookupDomain(ctx, name)
	if err != nil {
		t.Fatalf("LookupDomain: %v", err)
	}
	if d.Name != name || !d.Persistent || d.Active || len(d.UUID) != 36 {
		t.Errorf("LookupDomain = %+v", d)
	}
	if byUUID, err := conn.LookupDomain(ctx, d.UUID); err != nil || byUUID != d {
		t.Errorf("LookupDomain(uuid) = %+v, %v", byUUID, err)
	}
	waitEvent(t, events, name, EventDefined)

	// What the fake (virttest) mirrors: without XMLSecure libvirt leaves
	// the console password out; with it the password is there.
	plain, err := conn.DomainXML(ctx, d, XMLInactive)
	if err != nil || !bytes.Contains(plain, []byte("queues='2'")) || bytes.Contains(plain, []byte("t3stpw")) {
		t.Errorf("DomainXML(XMLInactive) = %s, %v: want queues='2' and no password", plain, err)
	}
	x, err := conn.DomainXML(ctx, d, XMLInactive|XMLSecure)
	if err != nil || !bytes.Contains(x, []byte("passwd='t3stpw'")) {
		t.Errorf("DomainXML(XMLInactive|XMLSecure) = %s, %v: want the password", x, err)
	}
	if caps, err := conn.Capabilities(ctx); err != nil || !bytes.Contains(caps, []byte("<capabilities>")) {
		t.Errorf("Capabilities = %.80s, %v", caps, err)
	}
	if _, err := conn.NetworkForward(ctx, name+"-no-such-net"); !errors.Is(err, ErrNoNetwork) {
		t.Errorf("NetworkForward(missing) = %v, want ErrNoNetwork", err)
	}
	// The exclude label through the metadata API: a METADATA_CHANGE event
	// with the namespace, and the element in the definition.
	const ns = "https://virtmq.dev/xmlns/exclude/1"
	if err := conn.SetMetadata(ctx, d, ns, "virtmq", "<exclude/>"); err != nil {
		t.Fatalf("SetMetadata: %v", err)
	}
	waitEventNS(t, events, name, EventMetadataChanged, ns)
	if md, err := conn.DomainXML(ctx, d, XMLInactive); err != nil || !bytes.Contains(md, []byte(ns)) {
		t.Errorf("definition after SetMetadata = %s, %v", md, err)
	}
	if err := conn.SetMetadata(ctx, d, ns, "virtmq", ""); err != nil {
		t.Errorf("SetMetadata(remove): %v", err)
	}
	waitEventNS(t, events, name, EventMetadataChanged, ns)
	if x, err = conn.DomainXML(ctx, d, XMLInactive|XMLSecure); err != nil || bytes.Contains(x, []byte(ns)) {
		t.Errorf("definition after removing the label = %s, %v", x, err)
	}
	doms, err := conn.ListDomains(ctx)
	found := false
	for _, ld := range doms {
		found = found || ld == d
	}
	if err != nil || !found {
		t.Errorf("ListDomains lacks %+v: %+v, %v", d, doms, err)
	}

	// Redefining with the same XML is an update; an invalid one fails validation.
	if err := conn.DefineXML(ctx, x); err != nil {
		t.Errorf("redefine: %v", err)
	}
	waitEvent(t, events, name, EventDefined)
	bad := bytes.Replace(x, []byte("queues='2'"), []byte("queues='two'"), 1)
	if err := conn.DefineXML(ctx, bad); !errors.Is(err, ErrInvalidDefinition) {
		t.Errorf("DefineXML(invalid) = %v, want ErrInvalidDefinition", err)
	} else {
		t.Logf("invalid definition refused: %v", err)
	}

	// The power calls apply_at: next-reboot and apply --cold-boot make: a
	// disk-less guest runs its firmware, enough to pause and destroy.
	step := func(what string, err error, want DomainState) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if st, err := lc.DomainState(ctx, d); err != nil || st != want {
			t.Fatalf("after %s: state %v, %v; want %v", what, st, err, want)
		}
		// LookupDomain tells a running (or paused) domain by its ID.
		if got, err := conn.LookupDomain(ctx, d.UUID); err != nil || got.Active != (want != StateShutoff) || !got.Persistent {
			t.Errorf("after %s: LookupDomain = %+v, %v; want active %v", what, got, err, want != StateShutoff)
		}
	}
	step("StartDomain", conn.StartDomain(ctx, d), StateRunning)
	waitEvent(t, events, name, EventStarted)
	if err := conn.StartDomain(ctx, d); !errors.Is(err, ErrInvalidState) {
		t.Errorf("StartDomain(running) = %v, want ErrInvalidState", err)
	}
	step("SuspendDomain", lc.SuspendDomain(ctx, d), StatePaused)
	// libvirt refuses to shut down a paused domain (what the fake does).
	if err := conn.ShutdownDomain(ctx, d); !errors.Is(err, ErrInvalidState) {
		t.Errorf("ShutdownDomain(paused) = %v, want ErrInvalidState", err)
	}
	step("ShutdownDomain(paused)", nil, StatePaused)
	step("ResumeDomain", lc.ResumeDomain(ctx, d), StateRunning)
	step("DestroyDomain", conn.DestroyDomain(ctx, d), StateShutoff)
	waitEvent(t, events, name, EventStopped)
	if err := conn.DestroyDomain(ctx, d); !errors.Is(err, ErrInvalidState) {
		t.Errorf("DestroyDomain(shut off) = %v, want ErrInvalidState", err)
	}

	if _, err := conn.AgentCommand(ctx, d, []byte(`{"execute":"guest-ping"}`), time.Second); !errors.Is(err, ErrAgentUnavailable) {
		t.Errorf("AgentCommand on an inactive domain = %v, want ErrAgentUnavailable", err)
	}
	if _, err := conn.MonitorCommand(ctx, d, []byte(`{"execute":"query-status"}`)); err == nil {
		t.Error("MonitorCommand on an inactive domain succeeded")
	}
	if _, err := conn.LookupDomain(ctx, name+"-missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookupDomain(missing) = %v, want ErrNotFound", err)
	}
	if _, err := conn.DomainXML(ctx, Domain{Name: "x", UUID: "00000000-0000-0000-0000-0000000000ff"}, XMLInactive); !errors.Is(err, ErrNotFound) {
		t.Errorf("DomainXML(missing) = %v, want ErrNotFound", err)
	}

	ld, err := lc.l.DomainLookupByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := lc.l.DomainUndefineFlags(ld, 0); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, name, EventUndefined)

	if err := conn.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case <-conn.Disconnected():
	case <-time.After(10 * time.Second):
		t.Error("Disconnected not closed after Close")
	}
	if _, err := conn.ListDomains(ctx); !errors.Is(err, ErrDisconnected) {
		t.Errorf("call after Close = %v, want ErrDisconnected", err)
	}
	select {
	case _, ok := <-events:
		for ok {
			_, ok = <-events
		}
	case <-time.After(10 * time.Second):
		t.Error("event channel not closed after Close")
	}
}

func waitEvent(t *testing.T, events <-chan Event, name string, kind EventKind) {
	t.Helper()
	waitEventNS(t, events, name, kind, "")
}

// waitEventNS waits for kind on name, with the namespace ns when not "".
func waitEventNS(t *testing.T, events <-chan Event, name string, kind EventKind, ns string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("event stream closed waiting for %v of %s", kind, name)
			}
			if ev.Domain.Name == name && ev.Kind == kind && (ns == "" || ev.Namespace == ns) {
				return
			}
		case <-timeout:
			t.Fatalf("no %v event for %s", kind, name)
		}
	}
}
