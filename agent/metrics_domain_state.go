package agent

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/virtmq/virtmq/internal/status"
)

// domainStateCollector reports each domain's compliance state, read from
// the agent's status snapshot at scrape time:
//
//	virtmq_domain_state{domain,uuid,state}                        1 for the current state, 0 for the others
//	virtmq_domain_state_since_timestamp_seconds{domain,uuid,state} when the domain entered its current state
//	virtmq_domain_orchestrated{domain,uuid,orchestrator,mode}       1 for a domain another stack defines (Nova, oVirt, ...)
//
// The labels domain and uuid are the ones the libvirt exporters use, so that
// queries can join on them. There is one series per domain and state on the
// host, so the cardinality is bounded by the domains the agent knows.
type domainStateCollector struct {
	state        *prometheus.Desc
	since        *prometheus.Desc
	orchestrated *prometheus.Desc
	snapshot     func() status.Snapshot

	// seen tracks, by UUID, the state a scrape last saw and since when,
	// for the domains whose status has no StateSince.
	mu   sync.Mutex
	seen map[string]seenState
}

type seenState struct {
	state string
	since time.Time
}

func newDomainStateCollector(snapshot func() status.Snapshot) *domainStateCollector {
	return &domainStateCollector{
		state: prometheus.NewDesc("virtmq_domain_state",
			"Compliance state of a domain: 1 for the state it is in, 0 for the others.",
			[]string{"domain", "uuid", "state"}, nil),
		since: prometheus.NewDesc("virtmq_domain_state_since_timestamp_seconds",
			"When the domain entered the compliance state it is in, in seconds since the Unix epoch (at most one scrape interval late while the status does not record it).",
			[]string{"domain", "uuid", "state"}, nil),
		orchestrated: prometheus.NewDesc("virtmq_domain_orchestrated",
			"1 for a domain an orchestrator defines (orchestrator: nova, ovirt, opennebula, cloudstack, kubevirt), with what virtmq does to it (mode: leave, observe, apply; see the policy's orchestrators).",
			[]string{"domain", "uuid", "orchestrator", "mode"}, nil),
		snapshot: snapshot,
		seen:     map[string]seenState{},
	}
}

// Describe implements prometheus.Collector.
func (c *domainStateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.since
	ch <- c.orchestrated
}

// Collect implements prometheus.Collector.
func (c *domainStateCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.snapshot()
	since := c.observe(snap)
	for _, d := range snap.Domains {
		for _, s := range states {
			v := 0.0
			if s == d.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, d.Name, d.UUID, s)
		}
		if d.Orchestrator != "" {
			ch <- prometheus.MustNewConstMetric(c.orchestrated, prometheus.GaugeValue, 1, d.Name, d.UUID, d.Orchestrator, d.OrchestratorMode)
		}
		if t, ok := since[d.UUID]; ok {
			ch <- prometheus.MustNewConstMetric(c.since, prometheus.GaugeValue,
				float64(t.UnixNano())/1e9, d.Name, d.UUID, d.State)
		}
	}
}

// observe returns, by UUID, since when each domain of snap is in its state:
// its StateSince when set, else the time of the first snapshot that saw it
// in that state. It forgets the domains snap no longer has.
func (c *domainStateCollector) observe(snap status.Snapshot) map[string]time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]time.Time, len(snap.Domains))
	keep := make(map[string]seenState, len(snap.Domains))
	for _, d := range snap.Domains {
		if d.State == "" {
			continue
		}
		s, ok := c.seen[d.UUID]
		if !ok || s.state != d.State {
			s = seenState{state: d.State, since: snap.Generated}
		}
		if !d.StateSince.IsZero() {
			s.since = d.StateSince
		}
		keep[d.UUID] = s
		out[d.UUID] = s.since
	}
	c.seen = keep
	return out
}
