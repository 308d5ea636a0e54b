package agent

import "github.com/prometheus/client_golang/prometheus"

// newBuildInfoCollector reports virtmq_build_info: always 1, with the
// version, commit and Go version as labels.
func newBuildInfoCollector(version, commit, goVersion string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "virtmq_build_info",
		Help: "A metric with a constant '1' value labeled by the version, commit and Go version virtmq-agent was built with.",
		ConstLabels: prometheus.Labels{
			"version":   version,
			"commit":    commit,
			"goversion": goVersion,
		},
	})
	g.Set(1)
	return g
}
