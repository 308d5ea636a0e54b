package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
)

// metrics are the agent's counters and gauges. They are always kept; the
// HTTP endpoint that serves them is optional.
type metrics struct {
	libvirtUp       prometheus.Gauge
	reconnects      prometheus.Counter
	rewrites        prometheus.Counter
	rewriteFailures prometheus.Counter
	guestSteps      prometheus.Counter
	guestFailures   *prometheus.CounterVec
	// As Prometheus exports its own: prometheus_config_last_reload_successful
	// and prometheus_config_last_reload_success_timestamp_seconds.
	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge
	// policyInfo is 1 for the policy in force, by its digest and mode:
	// across a fleet, hosts with different digests decide differently.
	policyInfo *prometheus.GaugeVec
}

// newMetrics creates the agent's metrics and registers them, with the
// domains collector (one gauge per state, read from counts at scrape time),
// the per-domain and per-NIC collectors (read from snapshot at scrape time)
// and the build info.
func newMetrics(reg prometheus.Registerer, counts func() map[string]int, snapshot func() status.Snapshot, version, commit, goVersion string) (*metrics, error) {
	m := &metrics{
		libvirtUp: gauge("virtmq_libvirt_up",
			"Whether the agent is connected to libvirt (1) or not (0)."),
		reloadOK: gauge("virtmq_policy_last_reload_successful",
			"Whether the last policy load (at start or SIGHUP) succeeded (1) or failed and the previous policy is still in force (0)."),
		reloadTime: gauge("virtmq_policy_last_reload_success_timestamp_seconds",
			"When the policy in force was loaded, in seconds since the Unix epoch."),
		policyInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "virtmq_policy_info",
			Help: "1 for the policy in force, labelled with its digest (of the merged policy: hosts with the same digest decide the same) and its mode.",
		}, []string{"digest", "mode"}),
		reconnects: counter("virtmq_libvirt_reconnects_total",
			"Connections to libvirt made after the first one."),
		rewrites: counter("virtmq_rewrites_total",
			"Domain redefinitions the agent attempted to apply the policy's queue counts."),
		rewriteFailures: counter("virtmq_rewrite_failures_total",
			"Domain definitions the agent could not rewrite or redefine (a redefine libvirt refused, e.g. failing validation)."),
		guestSteps: counter("virtmq_guest_steps_total",
			"In-guest channel count steps attempted, one per NIC and attempt."),
		guestFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "virtmq_guest_step_failures_total",
			Help: "In-guest channel count steps that failed, by reason.",
		}, []string{"reason"}),
	}
	// The reason label's values are guest.Reasons, a fixed set.
	for _, r := range guest.Reasons {
		m.guestFailures.WithLabelValues(string(r))
	}
	for _, c := range []prometheus.Collector{
		m.libvirtUp, m.reconnects, m.rewrites, m.rewriteFailures, m.guestSteps, m.guestFailures,
		m.reloadOK, m.reloadTime, m.policyInfo,
		newDomainsCollector(counts),
		newDomainStateCollector(snapshot), newInterfacesCollector(snapshot),
		newBuildInfoCollector(version, commit, goVersion),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}
