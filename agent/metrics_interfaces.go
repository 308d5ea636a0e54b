package agent

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
)

// Values of the source label of virtmq_interface_queues: where a queue
// count was read.
const (
	sourceWanted  = "wanted"  // what the policy wants
	sourceDefined = "defined" // the persistent definition's <driver queues>
	sourceRunning = "running" // the running QEMU's (live XML)
	sourceGuest   = "guest"   // the channels the guest runs (ethtool -l, Combined current)
)

// interfacesCollector reports each NIC's queue counts and guest step, read
// from the agent's status snapshot at scrape time:
//
//	virtmq_interface_queues{domain,uuid,mac_address,target_device,source}
//	virtmq_interface_managed{domain,uuid,mac_address,target_device}
//	virtmq_interface_guest_step_failing{domain,uuid,mac_address,target_device,reason}
//
// The labels are named as the libvirt exporters name them, so that queries
// can join virtmq's series with the interface statistics. The cardinality
// is bounded by the NICs of the domains on the host: four sources per NIC,
// and at most one failing reason.
type interfacesCollector struct {
	queues   *prometheus.Desc
	managed  *prometheus.Desc
	failing  *prometheus.Desc
	snapshot func() status.Snapshot
}

func newInterfacesCollector(snapshot func() status.Snapshot) *interfacesCollector {
	labels := []string{"domain", "uuid", "mac_address", "target_device"}
	return &interfacesCollector{
		queues: prometheus.NewDesc("virtmq_interface_queues",
			"Queue pairs of a NIC, by where the count was read: wanted (the policy), defined (the persistent definition), running (the running QEMU), guest (the channels the guest runs). A count that is not known is not reported.",
			append(slices.Clone(labels), "source"), nil),
		managed: prometheus.NewDesc("virtmq_interface_managed",
			"Whether the policy manages the NIC's queue count (1) or not (0).",
			labels, nil),
		failing: prometheus.NewDesc("virtmq_interface_guest_step_failing",
			"1 when the last in-guest channel count step of the NIC failed, with the reason; absent when it succeeded, was skipped or did not run.",
			append(slices.Clone(labels), "reason"), nil),
		snapshot: snapshot,
	}
}

// Describe implements prometheus.Collector.
func (c *interfacesCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queues
	ch <- c.managed
	ch <- c.failing
}

// Collect implements prometheus.Collector.
func (c *interfacesCollector) Collect(ch chan<- prometheus.Metric) {
	for _, d := range c.snapshot().Domains {
		seen := make(map[string]bool, len(d.NICs))
		for _, n := range d.NICs {
			// Two NICs with one MAC would make duplicate series and
			// fail the whole scrape: report the first.
			if seen[n.MAC] {
				continue
			}
			seen[n.MAC] = true
			lv := []string{d.Name, d.UUID, n.MAC, n.TargetDevice}
			for _, q := range []struct {
				source string
				n      int
			}{
				{sourceWanted, n.Wanted},
				{sourceDefined, n.Defined},
				{sourceRunning, n.Running},
				{sourceGuest, n.GuestCurrent},
			} {
				// Zero counts mean unknown (status.NIC).
				if q.n > 0 {
					ch <- prometheus.MustNewConstMetric(c.queues, prometheus.GaugeValue, float64(q.n), append(lv, q.source)...)
				}
			}
			managed := 0.0
			if n.Managed {
				managed = 1
			}
			ch <- prometheus.MustNewConstMetric(c.managed, prometheus.GaugeValue, managed, lv...)
			// Only the fixed reasons, so that the label stays bounded.
			if slices.Contains(guest.Reasons, guest.Reason(n.GuestStep)) {
				ch <- prometheus.MustNewConstMetric(c.failing, prometheus.GaugeValue, 1, append(lv, n.GuestStep)...)
			}
		}
	}
}
