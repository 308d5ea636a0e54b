package facts_test

import (
	"context"
	"errors"
	"testing"

	"github.com/virtmq/virtmq/internal/facts"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

const doc = `<domain type='qemu'>
  <name>vf</name>
  <memory unit='KiB'>524288</memory>
  <vcpu placement='static'>4</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <graphics type='vnc' passwd='s3cret'/>
    <interface type='network'><mac address='52:54:00:00:0f:01'/><source network='vf-pool'/><model type='virtio'/></interface>
    <interface type='network'><mac address='52:54:00:00:0f:02'/><source network='default'/><model type='virtio'/></interface>
    <interface type='network'><mac address='52:54:00:00:0f:03'/><source network='nowhere'/><model type='virtio'/></interface>
  </devices>
</domain>
`

func setup(t *testing.T) (*virttest.Conn, virt.Domain) {
	t.Helper()
	fake := virttest.New()
	fake.DefineNetwork("vf-pool", []byte(`<network><name>vf-pool</name><forward mode='hostdev' managed='yes'/></network>`))
	fake.DefineNetwork("default", []byte(`<network><name>default</name><forward mode='nat'/></network>`))
	d, err := fake.Define([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return fake, d
}

// TestDefinition: the definition is read with its secrets, and each
// network NIC carries its network's forward mode; an unknown network has
// none. Each network is read once until Forget.
func TestDefinition(t *testing.T) {
	fake, d := setup(t)
	r := facts.NewReader(fake)
	ctx := context.Background()
	def, err := r.Definition(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if n := fake.Calls(virttest.MethodDomainXMLSecure); n != 1 {
		t.Errorf("secure reads = %d, want 1: a definition that feeds a redefine keeps the passwords", n)
	}
	var got []string
	for _, ifc := range def.Facts.Interfaces {
		got = append(got, ifc.NetworkForward)
	}
	if want := []string{"hostdev", "nat", ""}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("forward modes = %q, want %q", got, want)
	}
	if _, err := r.Definition(ctx, d); err != nil {
		t.Fatal(err)
	}
	if n := fake.Calls(virttest.MethodNetworkForward); n != 3 {
		t.Errorf("NetworkForward calls = %d, want 3 (cached)", n)
	}
	r.Forget()
	if _, err := r.Definition(ctx, d); err != nil {
		t.Fatal(err)
	}
	if n := fake.Calls(virttest.MethodNetworkForward); n != 6 {
		t.Errorf("NetworkForward calls after Forget = %d, want 6", n)
	}
}

// TestLive: the live XML is read without secrets and its networks
// resolved; a domain that is not running gives ErrNotRunning; a failed
// call is a ReadError saying what was read.
func TestLive(t *testing.T) {
	fake, d := setup(t)
	r := facts.NewReader(fake)
	ctx := context.Background()
	if _, err := r.Live(ctx, d); !errors.Is(err, facts.ErrNotRunning) {
		t.Errorf("Live of a shut-off domain: %v, want ErrNotRunning", err)
	}
	if err := fake.Start("vf"); err != nil {
		t.Fatal(err)
	}
	live, err := r.Live(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if live.Interfaces[0].NetworkForward != "hostdev" || live.Interfaces[0].Alias == "" {
		t.Errorf("live NIC = %+v", live.Interfaces[0])
	}
	if n := fake.Calls(virttest.MethodDomainXMLSecure); n != 0 {
		t.Errorf("secure reads = %d, want 0", n)
	}

	fake.FailNext(virttest.MethodNetworkForward, 1, virt.ErrCallTimeout)
	r.Forget()
	_, err = r.Live(ctx, d)
	var re *facts.ReadError
	if !errors.As(err, &re) || re.What != "networks" || !errors.Is(err, virt.ErrCallTimeout) {
		t.Errorf("Live with a failing network read: %v, want a ReadError of the networks", err)
	}
}
