package agent

import "github.com/prometheus/client_golang/prometheus"

// domainsCollector reports how many domains are in each compliance state,
// read from the agent's state at scrape time. Every state is reported,
// zero included, so that the series do not come and go.
type domainsCollector struct {
	desc   *prometheus.Desc
	counts func() map[string]int
}

func newDomainsCollector(counts func() map[string]int) *domainsCollector {
	return &domainsCollector{
		desc: prometheus.NewDesc("virtmq_domains",
			"Domains known to the agent, by compliance state.",
			[]string{"state"}, nil),
		counts: counts,
	}
}

// Describe implements prometheus.Collector.
func (c *domainsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *domainsCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.counts()
	for _, s := range states {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n[s]), s)
	}
}
