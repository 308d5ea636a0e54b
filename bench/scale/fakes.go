package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/guest/guesttest"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// daemon models what a libvirtd over its unix socket costs a client: every
// RPC takes lat, and holds one of libvirtd's worker threads (max_workers,
// 20 by default) and one of its connection's request slots
// (max_client_requests, 5 by default: libvirtd stops reading a client's
// socket while that many of its calls are in execution) for as long as it
// runs. A guest agent command holds both until the guest answers, as
// libvirtd's worker waits for qemu-ga's reply. Calls beyond the bounds
// wait their turn, as they would in the socket and libvirtd's job queue.
// The calls themselves go to the in-memory fake.
type daemon struct {
	lat     time.Duration
	workers chan struct{} // max_workers
	perConn int           // max_client_requests
	rpcs    atomic.Int64
	byProc  sync.Map // RPC name → *atomic.Int64
}

func newDaemon(lat time.Duration, workers, perConn int) *daemon {
	return &daemon{lat: lat, workers: make(chan struct{}, workers), perConn: perConn}
}

// rpc runs one RPC named proc of a connection with request slots reqs:
// it takes a request slot and a worker, waits lat, then runs f (the
// fake's answer, which may take the guest's time) before giving both back.
func (d *daemon) rpc(ctx context.Context, reqs chan struct{}, proc string, f func() error) error {
	d.rpcs.Add(1)
	n, _ := d.byProc.LoadOrStore(proc, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	select {
	case reqs <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-reqs }()
	select {
	case d.workers <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-d.workers }()
	if err := sleepCtx(ctx, d.lat); err != nil {
		return err
	}
	if f == nil {
		return nil
	}
	return f()
}

// byRPC returns how many of each RPC were made.
func (d *daemon) byRPC() map[string]int64 {
	out := map[string]int64{}
	d.byProc.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// slowConn is one client connection to the daemon: each virt.Conn method
// costs the RPCs the go-libvirt implementation (internal/virt/libvirt.go)
// makes for it, one after the other.
type slowConn struct {
	virt.Conn
	d    *daemon
	reqs chan struct{} // this connection's request slots
}

func (c slowConn) rpcs(ctx context.Context, procs ...string) error {
	for _, p := range procs {
		if err := c.d.rpc(ctx, c.reqs, p, nil); err != nil {
			return err
		}
	}
	return nil
}

// ListDomains: three ConnectListAllDomains (all, active, transient).
func (c slowConn) ListDomains(ctx context.Context) ([]virt.Domain, error) {
	if err := c.rpcs(ctx, "ConnectListAllDomains", "ConnectListAllDomains", "ConnectListAllDomains"); err != nil {
		return nil, err
	}
	return c.Conn.ListDomains(ctx)
}

// LookupDomain: DomainLookupByUUID (or ByName: its reply's ID says
// whether the domain runs), DomainIsPersistent.
func (c slowConn) LookupDomain(ctx context.Context, s string) (virt.Domain, error) {
	if err := c.rpcs(ctx, "DomainLookup", "DomainIsPersistent"); err != nil {
		return virt.Domain{}, err
	}
	return c.Conn.LookupDomain(ctx, s)
}

// DomainXML: DomainGetXMLDesc (the domain is referred to by its UUID).
func (c slowConn) DomainXML(ctx context.Context, d virt.Domain, flags virt.XMLFlags) (out []byte, err error) {
	proc := "DomainGetXMLDesc(live)"
	if flags&virt.XMLInactive != 0 {
		proc = "DomainGetXMLDesc(inactive)"
	}
	if rerr := c.d.rpc(ctx, c.reqs, proc, func() error {
		out, err = c.Conn.DomainXML(ctx, d, flags)
		return nil
	}); rerr != nil {
		return nil, rerr
	}
	return out, err
}

// DefineXML: DomainDefineXMLFlags.
func (c slowConn) DefineXML(ctx context.Context, doc []byte) (err error) {
	if rerr := c.d.rpc(ctx, c.reqs, "DomainDefineXMLFlags", func() error {
		err = c.Conn.DefineXML(ctx, doc)
		return nil
	}); rerr != nil {
		return rerr
	}
	return err
}

// NetworkForward: NetworkLookupByName, NetworkGetXMLDesc.
func (c slowConn) NetworkForward(ctx context.Context, name string) (string, error) {
	if err := c.rpcs(ctx, "NetworkLookupByName", "NetworkGetXMLDesc"); err != nil {
		return "", err
	}
	return c.Conn.NetworkForward(ctx, name)
}

// AgentCommand: QEMUDomainAgentCommand, holding its worker and request
// slot until the guest answers.
func (c slowConn) AgentCommand(ctx context.Context, d virt.Domain, cmd []byte, timeout time.Duration) (out []byte, err error) {
	if rerr := c.d.rpc(ctx, c.reqs, "QEMUDomainAgentCommand", func() error {
		out, err = c.Conn.AgentCommand(ctx, d, cmd, timeout)
		return nil
	}); rerr != nil {
		return nil, rerr
	}
	return out, err
}

// MonitorCommand: QEMUDomainMonitorCommand.
func (c slowConn) MonitorCommand(ctx context.Context, d virt.Domain, cmd []byte) (out []byte, err error) {
	if rerr := c.d.rpc(ctx, c.reqs, "QEMUDomainMonitorCommand", func() error {
		out, err = c.Conn.MonitorCommand(ctx, d, cmd)
		return nil
	}); rerr != nil {
		return nil, rerr
	}
	return out, err
}

// host is the fake hypervisor: virttest's libvirt, one simulated qemu-ga
// (guesttest.Guest with ethtool) per domain, and QMP answers that follow
// the guest's boot.
type host struct {
	fake     *virttest.Conn
	libvirtd *daemon
	guestLat time.Duration

	guestCmds atomic.Int64

	mu     sync.Mutex
	guests map[string]*fakeGuest // by domain name
}

type fakeGuest struct {
	agent   guest.Agent
	ethtool *guesttest.Ethtool
	booted  atomic.Bool // the guest driver negotiated multiqueue
}

func newHost(o options) *host {
	h := &host{fake: virttest.New(), libvirtd: newDaemon(o.LibvirtLatency, o.Workers, o.ClientRequests), guestLat: o.GuestLatency, guests: map[string]*fakeGuest{}}
	h.fake.SetAgent(h.agentCommand)
	h.fake.SetMonitor(h.monitorCommand)
	return h
}

// dial is the agent's Dial: a new connection to the daemon.
func (h *host) dial(ctx context.Context, sockets []string) (virt.Conn, string, error) {
	c, sock, err := h.fake.Dial(ctx, sockets)
	if err != nil {
		return nil, "", err
	}
	return slowConn{Conn: c, d: h.libvirtd, reqs: make(chan struct{}, h.libvirtd.perConn)}, sock, nil
}

// addGuest prepares the guest of a domain: Debian 12 with qemu-ga 7.2,
// eth0 with the NIC's MAC, ethtool reporting combined max = queues,
// current 1, and guest-exec-status answering exited:false polls times.
func (h *host) addGuest(name, mac string, queues, polls int) {
	e := &guesttest.Ethtool{NICs: map[string]*guest.Channels{"eth0": {Max: queues, Current: 1}}}
	g := &guesttest.Guest{
		Interfaces: []guesttest.Interface{{Name: "lo"}, {Name: "eth0", MAC: mac}},
		Programs:   map[string]guesttest.Program{"/usr/sbin/ethtool": e.Run},
		Polls:      polls,
	}
	h.mu.Lock()
	h.guests[name] = &fakeGuest{agent: g.Agent(), ethtool: e}
	h.mu.Unlock()
}

func (h *host) guest(name string) *fakeGuest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.guests[name]
}

// agentCommand is qemu-ga behind libvirt: guestLat per command on top of
// the libvirt call's latency.
func (h *host) agentCommand(ctx context.Context, d virt.Domain, cmd []byte, timeout time.Duration) ([]byte, error) {
	h.guestCmds.Add(1)
	g := h.guest(d.Name)
	if g == nil || !g.booted.Load() {
		return nil, fmt.Errorf("%w: QEMU guest agent is not connected", virt.ErrAgentUnavailable)
	}
	if err := sleepCtx(ctx, h.guestLat); err != nil {
		return nil, err
	}
	return g.agent.Command(ctx, cmd, timeout)
}

var queuesAttr = regexp.MustCompile(`queues='(\d+)'`)

// monitorCommand answers x-query-virtio-status as QEMU 7.2 does: num-vqs 3
// and no VIRTIO_NET_F_MQ until the guest driver negotiated multiqueue
// (the guest booted), then 2N+1 with MQ.
func (h *host) monitorCommand(_ context.Context, d virt.Domain, _ []byte) ([]byte, error) {
	g := h.guest(d.Name)
	live, ok := h.fake.LiveXML(d.Name)
	if g == nil || !ok {
		return []byte(`{"error":{"class":"GenericError","desc":"Path /machine/peripheral/net0/virtio-backend is not a VirtIODevice"}}`), nil
	}
	n := 1
	if m := queuesAttr.FindSubmatch(live); m != nil {
		n, _ = strconv.Atoi(string(m[1]))
	}
	mq := ""
	vqs := 3
	if g.booted.Load() && n > 1 {
		mq = `"VIRTIO_NET_F_MQ: Multiqueue with automatic receive steering supported",`
		vqs = 2*n + 1
	}
	return fmt.Appendf(nil, `{"return":{"device-endian":"little","bus-name":"","name":"virtio-net","started":true,`+
		`"device-id":1,"status":{"statuses":["VIRTIO_CONFIG_S_DRIVER_OK: Driver setup and ready"]},"num-vqs":%d,`+
		`"guest-features":{"dev-features":["VIRTIO_NET_F_CTRL_MAC_ADDR: MAC address set through control channel",%s`+
		`"VIRTIO_NET_F_CTRL_VQ: Control channel available","VIRTIO_NET_F_STATUS: Configuration status field available",`+
		`"VIRTIO_NET_F_MRG_RXBUF: Driver can merge receive buffers"],"transports":["VIRTIO_F_VERSION_1: Device compliant for v1 spec (legacy)"]},`+
		`"host-features":{"dev-features":[]},"use-guest-notifier-mask":true,"vm-running":true}}`, vqs, mq), nil
}

// domainXML is a persistent domain as virt-install defines it: 4 vCPUs,
// one virtio NIC on a bridge without <driver queues>, a qemu-ga channel.
func domainXML(name, uuid, mac string) []byte {
	return fmt.Appendf(nil, `<domain type='kvm'>
  <name>%[1]s</name>
  <uuid>%[2]s</uuid>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://debian.org/debian/12"/>
    </libosinfo:libosinfo>
  </metadata>
  <memory unit='KiB'>4194304</memory>
  <currentMemory unit='KiB'>4194304</currentMemory>
  <vcpu placement='static'>4</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
    <vmport state='off'/>
  </features>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <clock offset='utc'>
    <timer name='rtc' tickpolicy='catchup'/>
    <timer name='pit' tickpolicy='delay'/>
    <timer name='hpet' present='no'/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <pm>
    <suspend-to-mem enabled='no'/>
    <suspend-to-disk enabled='no'/>
  </pm>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/var/lib/libvirt/images/%[1]s.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <controller type='usb' index='0' model='qemu-xhci' ports='15'>
      <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>
    </controller>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' index='1' model='pcie-root-port'>
      <model name='pcie-root-port'/>
      <target chassis='1' port='0x10'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0' multifunction='on'/>
    </controller>
    <controller type='pci' index='2' model='pcie-root-port'>
      <model name='pcie-root-port'/>
      <target chassis='2' port='0x11'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x1'/>
    </controller>
    <controller type='virtio-serial' index='0'>
      <address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>
    </controller>
    <interface type='bridge'>
      <mac address='%[3]s'/>
      <source bridge='br0'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>
    <serial type='pty'>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
    <input type='tablet' bus='usb'>
      <address type='usb' bus='0' port='1'/>
    </input>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <video>
      <model type='virtio' heads='1' primary='yes'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/>
    </video>
    <memballoon model='virtio'>
      <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>
    </memballoon>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
      <address type='pci' domain='0x0000' bus='0x06' slot='0x00' function='0x0'/>
    </rng>
  </devices>
</domain>
`, name, uuid, mac)
}

// sleepCtx waits d, or until ctx ends (then it returns ctx's error).
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Events buffers the stream as the go-libvirt adapter does (64 events):
// a burst is there for the agent to take in one batch, as on libvirtd.
func (c slowConn) Events(ctx context.Context) (<-chan virt.Event, error) {
	in, err := c.Conn.Events(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan virt.Event, 64)
	go func() {
		defer close(out)
		for ev := range in {
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
