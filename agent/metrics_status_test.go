package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
)

// testGenerated is when testSnapshot was taken.
var testGenerated = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// testSnapshot is a host with a domain pending a cold boot, a compliant one
// whose guest runs its channels, one in error whose guest step failed, and
// an unmanaged NIC: every per-domain and per-NIC series has an example.
func testSnapshot() status.Snapshot {
	return status.Snapshot{
		Generated: testGenerated,
		Libvirt:   status.Libvirt{Connected: true},
		Domains: []status.Domain{
			{Name: "batch", UUID: "3c7a0b1e-0000-4000-8000-000000000003", Persistent: true, State: status.StateError,
				NICs: []status.NIC{{MAC: "52:54:00:00:00:03", Managed: true, Wanted: 2, Defined: 2, Running: 2,
					GuestStep: string(guest.ReasonExecDisabled), TargetDevice: "vnet5"}}},
			{Name: "db", UUID: "3c7a0b1e-0000-4000-8000-000000000002", Persistent: true, Active: true, State: status.StateCompliant,
				StateSince: testGenerated.Add(-time.Hour),
				NICs: []status.NIC{
					{MAC: "52:54:00:00:00:02", Managed: true, Wanted: 4, Defined: 4, Running: 4,
						GuestWanted: 2, GuestCurrent: 2, GuestMax: 4, GuestStep: guestDone, TargetDevice: "vnet4"},
					{MAC: "52:54:00:00:00:12", Defined: 1, Running: 1, TargetDevice: "vnet6"},
				}},
			{Name: "web", UUID: "3c7a0b1e-0000-4000-8000-000000000001", Persistent: true, Active: true, State: status.StatePendingColdBoot,
				StateSince: testGenerated.Add(-8 * 24 * time.Hour),
				NICs:       []status.NIC{{MAC: "52:54:00:00:00:01", Managed: true, Wanted: 4, Defined: 4, Running: 1, TargetDevice: "vnet3"}}},
			{Name: "instance-0000002a", UUID: "3c7a0b1e-0000-4000-8000-000000000004", Persistent: true, Active: true, State: status.StateUnmanaged,
				Problem: "left to OpenStack Nova", Orchestrator: "nova", OrchestratorMode: "leave",
				NICs: []status.NIC{{MAC: "fa:16:3e:00:00:04", Wanted: 1, Defined: 1, Running: 1, TargetDevice: "tap6a7b8c9d-0e"}}},
		},
	}
}

func TestStatusCollectorsLint(t *testing.T) {
	for _, c := range []prometheus.Collector{
		newDomainStateCollector(testSnapshot),
		newInterfacesCollector(testSnapshot),
		newDomainStateCollector(func() status.Snapshot { return status.Snapshot{} }),
		newInterfacesCollector(func() status.Snapshot { return status.Snapshot{} }),
	} {
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

func TestInterfacesCollector(t *testing.T) {
	snap := testSnapshot()
	snap.Domains = snap.Domains[:3] // the NICs below
	// A second NIC with the MAC of the first must not fail the scrape.
	snap.Domains[2].NICs = append(snap.Domains[2].NICs, snap.Domains[2].NICs[0])
	// An outcome that is not a failure reason is not reported as one.
	snap.Domains[1].NICs[1].GuestStep = "something new"
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newInterfacesCollector(func() status.Snapshot { return snap }))
	want := `
# HELP virtmq_interface_guest_step_failing 1 when the last in-guest channel count step of the NIC failed, with the reason; absent when it succeeded, was skipped or did not run.
# TYPE virtmq_interface_guest_step_failing gauge
virtmq_interface_guest_step_failing{domain="batch",mac_address="52:54:00:00:00:03",reason="exec_disabled",target_device="vnet5",uuid="3c7a0b1e-0000-4000-8000-000000000003"} 1
# HELP virtmq_interface_managed Whether the policy manages the NIC's queue count (1) or not (0).
# TYPE virtmq_interface_managed gauge
virtmq_interface_managed{domain="batch",mac_address="52:54:00:00:00:03",target_device="vnet5",uuid="3c7a0b1e-0000-4000-8000-000000000003"} 1
virtmq_interface_managed{domain="db",mac_address="52:54:00:00:00:02",target_device="vnet4",uuid="3c7a0b1e-0000-4000-8000-000000000002"} 1
virtmq_interface_managed{domain="db",mac_address="52:54:00:00:00:12",target_device="vnet6",uuid="3c7a0b1e-0000-4000-8000-000000000002"} 0
virtmq_interface_managed{domain="web",mac_address="52:54:00:00:00:01",target_device="vnet3",uuid="3c7a0b1e-0000-4000-8000-000000000001"} 1
# HELP virtmq_interface_queues Queue pairs of a NIC, by where the count was read: wanted (the policy), defined (the persistent definition), running (the running QEMU), guest (the channels the guest runs). A count that is not known is not reported.
# TYPE virtmq_interface_queues gauge
virtmq_interface_queues{domain="batch",mac_address="52:54:00:00:00:03",source="defined",target_device="vnet5",uuid="3c7a0b1e-0000-4000-8000-000000000003"} 2
virtmq_interface_queues{domain="batch",mac_address="52:54:00:00:00:03",source="running",target_device="vnet5",uuid="3c7a0b1e-0000-4000-8000-000000000003"} 2
virtmq_interface_queues{domain="batch",mac_address="52:54:00:00:00:03",source="wanted",target_device="vnet5",uuid="3c7a0b1e-0000-4000-8000-000000000003"} 2
virtmq_interface_queues{domain="db",mac_address="52:54:00:00:00:02",source="defined",target_device="vnet4",uuid="3c7a0b1e-0000-4000-8000-000000000002"} 4
virtmq_interface_queues{domain="db",mac_address="52:54:00:00:00:02",source="guest",target_device="vnet4",uuid="3c7a0b1e-0000-4000-8000-000000000002"} 2
virtmq_interface_queues{domain="db",mac_address="52:54:00:00:00:02",source="running",target_device="vnet4",uuid="3c7a0b1e-0000-4000-8000-000000000002"} 4
virtmq_interface_queues{domain="db",mac_address="52:54:00:00:00:02",source="wanted",target_device="vnet4",uuid="3c7a0b1e-0000-4000-8000-000000000002"} 4
virtmq_interface_queues{domain="db",mac_address="52:54:00:00:00:12",source="defined",target_device="vnet6",uuid="3c7a0b1e-0000-4000-8000-000000000002"} 1
virtmq_interface_queues{domain="db",mac_address="52:54:00:00:00:12",source="running",target_device="vnet6",uuid="3c7a0b1e-0000-4000-8000-000000000002"} 1
virtmq_interface_queues{domain="web",mac_address="52:54:00:00:00:01",source="defined",target_device="vnet3",uuid="3c7a0b1e-0000-4000-8000-000000000001"} 4
virtmq_interface_queues{domain="web",mac_address="52:54:00:00:00:01",source="running",target_device="vnet3",uuid="3c7a0b1e-0000-4000-8000-000000000001"} 1
virtmq_interface_queues{domain="web",mac_address="52:54:00:00:00:01",source="wanted",target_device="vnet3",uuid="3c7a0b1e-0000-4000-8000-000000000001"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// The since-time comes from the status when it has one, else from the
// first scrape that saw the domain in its state; a change of state starts
// it again, and a domain that is gone is forgotten.
func TestDomainStateSince(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	snap := status.Snapshot{Generated: t0, Domains: []status.Domain{
		{Name: "a", UUID: "u-a", State: status.StatePendingColdBoot},
		{Name: "b", UUID: "u-b", State: status.StateCompliant, StateSince: t0.Add(-time.Minute)},
	}}
	c := newDomainStateCollector(func() status.Snapshot { return snap })
	since := func() map[string]time.Time { return c.observe(snap) }

	for _, step := range []struct {
		desc   string
		change func()
		want   map[string]time.Time
	}{
		{"first scrape", func() {}, map[string]time.Time{"u-a": t0, "u-b": t0.Add(-time.Minute)}},
		{"same state later", func() { snap.Generated = t0.Add(time.Hour) }, map[string]time.Time{"u-a": t0, "u-b": t0.Add(-time.Minute)}},
		{"a changes state", func() {
			snap.Generated = t0.Add(2 * time.Hour)
			snap.Domains[0].State = status.StateCompliant
		}, map[string]time.Time{"u-a": t0.Add(2 * time.Hour), "u-b": t0.Add(-time.Minute)}},
		{"b is gone", func() {
			snap.Generated = t0.Add(3 * time.Hour)
			snap.Domains = snap.Domains[:1]
		}, map[string]time.Time{"u-a": t0.Add(2 * time.Hour)}},
	} {
		step.change()
		got := since()
		if len(got) != len(step.want) {
			t.Errorf("%s: since = %v, want %v", step.desc, got, step.want)
			continue
		}
		for u, w := range step.want {
			if !got[u].Equal(w) {
				t.Errorf("%s: since[%s] = %v, want %v", step.desc, u, got[u], w)
			}
		}
		if len(c.seen) != len(step.want) {
			t.Errorf("%s: the collector remembers %d domains, want %d", step.desc, len(c.seen), len(step.want))
		}
	}
}

// TestMetricsStatusFromAgent: a domain pending a cold boot, as the agent
// reports it, shows in the per-domain and per-NIC series.
func TestMetricsStatusFromAgent(t *testing.T) {
	h := newHarness(t).start()
	mustDefine(t, h.fake, domainXML("web", 4, 0, mac(1)))
	h.waitState("web", status.StateRewritten)
	h.settle()
	snap := h.agent.Snapshot()
	var uuid string
	for _, d := range snap.Domains {
		if d.Name == "web" {
			uuid = d.UUID
		}
	}
	if uuid == "" {
		t.Fatalf("no domain web in %+v", snap.Domains)
	}
	want := `
# HELP virtmq_domain_state Compliance state of a domain: 1 for the state it is in, 0 for the others.
# TYPE virtmq_domain_state gauge
virtmq_domain_state{domain="web",state="compliant",uuid="UUID"} 0
virtmq_domain_state{domain="web",state="error",uuid="UUID"} 0
virtmq_domain_state{domain="web",state="pending-cold-boot",uuid="UUID"} 0
virtmq_domain_state{domain="web",state="retrying",uuid="UUID"} 0
virtmq_domain_state{domain="web",state="rewritten",uuid="UUID"} 1
virtmq_domain_state{domain="web",state="transient",uuid="UUID"} 0
virtmq_domain_state{domain="web",state="unmanaged",uuid="UUID"} 0
virtmq_domain_state{domain="web",state="would-redefine",uuid="UUID"} 0
# HELP virtmq_interface_queues Queue pairs of a NIC, by where the count was read: wanted (the policy), defined (the persistent definition), running (the running QEMU), guest (the channels the guest runs). A count that is not known is not reported.
# TYPE virtmq_interface_queues gauge
virtmq_interface_queues{domain="web",mac_address="MAC",source="defined",target_device="",uuid="UUID"} 4
virtmq_interface_queues{domain="web",mac_address="MAC",source="wanted",target_device="",uuid="UUID"} 4
`
	want = strings.NewReplacer("UUID", uuid, "MAC", mac(1)).Replace(want)
	if err := testutil.GatherAndCompare(h.cfg.Registry, strings.NewReader(want), "virtmq_domain_state", "virtmq_interface_queues"); err != nil {
		t.Error(err)
	}
}
