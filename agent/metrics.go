package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/virtmq/virtmq/internal/status"
)

// Reasons a guest step fails, the values of the reason label of
// virtmq_guest_step_failures_total and of status.NIC.GuestStep. The set is
// fixed so that the label stays bounded.
const (
	reasonNoAgent      = "no_agent"
	reasonExecDisabled = "exec_disabled"
	reasonCmdDisabled  = "command_disabled"
	reasonNotLinux     = "not_linux"
	reasonNoEthtool    = "no_ethtool"
	reasonNoInterface  = "no_interface"
	reasonDenied       = "denied"
	reasonAboveMax     = "above_max"
	reasonTimeout      = "timeout"
	reasonLibvirt      = "libvirt"
	reasonError        = "error"
)

var guestReasons = []string{
	reasonNoAgent, reasonExecDisabled, reasonCmdDisabled, reasonNotLinux, reasonNoEthtool,
	reasonNoInterface, reasonDenied, reasonAboveMax, reasonTimeout, reasonLibvirt, reasonError,
}

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
}

// newMetrics creates the agent's metrics and registers them, with the
// domains collector (one gauge per state, read from counts at scrape time),
// the per-domain and per-NIC collectors (read from snapshot at scrape time)
// and the build info.
func newMetrics(reg prometheus.Registerer, counts func() map[string]int, snapshot func() status.Snapshot, version, commit, goVersion string) (*metrics, error) {
	m := &metrics{
		libvirtUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "virtmq_libvirt_up",
			Help: "Whether the agent is connected to libvirt (1) or not (0).",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "virtmq_libvirt_reconnects_total",
			Help: "Connections to libvirt made after the first one.",
		}),
		rewrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "virtmq_rewrites_total",
			Help: "Domain redefinitions the agent attempted to apply the policy's queue counts.",
		}),
		rewriteFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "virtmq_rewrite_failures_total",
			Help: "Domain definitions the agent could not rewrite or redefine (a redefine libvirt refused, e.g. failing validation).",
		}),
		guestSteps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "virtmq_guest_steps_total",
			Help: "In-guest channel count steps attempted, one per NIC and attempt.",
		}),
		guestFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "virtmq_guest_step_failures_total",
			Help: "In-guest channel count steps that failed, by reason.",
		}, []string{"reason"}),
	}
	m.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "virtmq_policy_last_reload_successful",
		Help: "Whether the last policy load (at start or SIGHUP) succeeded (1) or failed and the previous policy is still in force (0).",
	})
	m.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "virtmq_policy_last_reload_success_timestamp_seconds",
		Help: "When the policy in force was loaded, in seconds since the Unix epoch.",
	})
	for _, r := range guestReasons {
		m.guestFailures.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{
		m.libvirtUp, m.reconnects, m.rewrites, m.rewriteFailures, m.guestSteps, m.guestFailures,
		m.reloadOK, m.reloadTime,
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
