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

func waitInactive(t *testing.T, c virt.Conn, name string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		d, err := c.LookupDomain(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Active {
			return
		}
	}
	t.Fatalf("%s still running", name)
}

func TestPower(t *testing.T) {
	ctx := context.Background()
	fake := virttest.New()
	v, err := fake.Define([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	evs, err := fake.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.ShutdownDomain(ctx, v); !errors.Is(err, virt.ErrInvalidState) {
		t.Errorf("shutdown of a shut-off domain: got %v, want ErrInvalidState", err)
	}
	if err := fake.StartDomain(ctx, v); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, evs); ev.Kind != virt.EventStarted {
		t.Errorf("got %v, want started", ev.Kind)
	}
	if err := fake.StartDomain(ctx, v); !errors.Is(err, virt.ErrInvalidState) {
		t.Errorf("start of a running domain: got %v, want ErrInvalidState", err)
	}
	// A deaf guest stays up after the ACPI button; destroy stops it.
	fake.SetIgnoreACPI("vm", true)
	if err := fake.ShutdownDomain(ctx, v); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if d, _ := fake.LookupDomain(ctx, "vm"); !d.Active {
		t.Fatal("a guest ignoring ACPI was shut down")
	}
	if err := fake.DestroyDomain(ctx, v); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, evs); ev.Kind != virt.EventStopped {
		t.Errorf("got %v, want stopped", ev.Kind)
	}
	if err := fake.DestroyDomain(ctx, v); !errors.Is(err, virt.ErrInvalidState) {
		t.Errorf("destroy of a shut-off domain: got %v, want ErrInvalidState", err)
	}
	// An obeying guest powers off after the call returned; but a paused
	// one is refused, as libvirt does, and stays paused.
	fake.SetIgnoreACPI("vm", false)
	if err := fake.StartDomain(ctx, v); err != nil {
		t.Fatal(err)
	}
	next(t, evs)
	if err := fake.SuspendDomain(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := fake.ShutdownDomain(ctx, v); !errors.Is(err, virt.ErrInvalidState) {
		t.Errorf("shutdown of a paused domain: got %v, want ErrInvalidState", err)
	}
	time.Sleep(20 * time.Millisecond)
	if !fake.Paused("vm") {
		t.Fatal("a paused domain is not paused after a shutdown")
	}
	if err := fake.ResumeDomain(ctx, v); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if d, _ := fake.LookupDomain(ctx, "vm"); !d.Active {
		t.Fatal("the refused shutdown stopped the domain after its resume")
	}
	if err := fake.ShutdownDomain(ctx, v); err != nil {
		t.Fatal(err)
	}
	waitInactive(t, fake, "vm")
	if ev := next(t, evs); ev.Kind != virt.EventStopped {
		t.Errorf("got %v, want stopped", ev.Kind)
	}
	if err := fake.StartDomain(ctx, virt.Domain{Name: "nope"}); !errors.Is(err, virt.ErrNotFound) {
		t.Errorf("got %v, want ErrNotFound", err)
	}
}

func TestAttachInterfaceAndVCPUs(t *testing.T) {
	ctx := context.Background()
	fake := virttest.New()
	v, err := fake.Define([]byte(`<domain type='qemu'><name>vm</name><vcpu current='2'>4</vcpu><devices>
<interface type='bridge'><mac address='52:54:00:00:00:01'/></interface>
</devices></domain>`))
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.Start("vm"); err != nil {
		t.Fatal(err)
	}
	evs, err := fake.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nic := []byte(`<interface type='bridge'><mac address='52:54:00:00:00:02'/><model type='virtio'/><driver queues='4'/></interface>`)
	if err := fake.AttachInterface("vm", nic, true, false); err != nil {
		t.Fatal(err)
	}
	ev := next(t, evs)
	if ev.Kind != virt.EventDeviceAdded || ev.Alias != "net1" || ev.Domain.UUID != v.UUID {
		t.Errorf("got %+v, want device-added net1", ev)
	}
	live, _ := fake.LiveXML("vm")
	def, _ := fake.InactiveXML("vm")
	if !bytes.Contains(live, []byte("52:54:00:00:00:02")) || !bytes.Contains(live, []byte("<alias name='net1'/>")) {
		t.Errorf("live XML lacks the plugged NIC:\n%s", live)
	}
	if bytes.Contains(def, []byte("52:54:00:00:00:02")) {
		t.Error("a --live attach changed the definition")
	}
	// --config only: the definition changes, silently.
	if err := fake.AttachInterface("vm", bytes.ReplaceAll(nic, []byte(":02"), []byte(":03")), false, true); err != nil {
		t.Fatal(err)
	}
	def, _ = fake.InactiveXML("vm")
	if !bytes.Contains(def, []byte("52:54:00:00:00:03")) {
		t.Error("a --config attach did not change the definition")
	}
	if err := fake.SetLiveVCPUs("vm", 4); err != nil {
		t.Fatal(err)
	}
	live, _ = fake.LiveXML("vm")
	if !bytes.Contains(live, []byte("current='4'>4</vcpu>")) {
		t.Errorf("live vcpu not changed:\n%s", live)
	}
	select {
	case ev := <-evs:
		t.Errorf("unexpected event %+v", ev)
	case <-time.After(20 * time.Millisecond):
	}
}
