package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// testMetrics returns metrics on a fresh pedantic registry with fixed
// build labels, the given domain counts and the domains of testSnapshot.
func testMetrics(t *testing.T, counts map[string]int) (*metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := newMetrics(reg, func() map[string]int { return counts }, testSnapshot, "1.2.3", "abc1234", "go1.26.0")
	if err != nil {
		t.Fatal(err)
	}
	m.policyInfo.WithLabelValues("0123456789abcdef", "apply").Set(1)
	return m, reg
}

func TestMetricsLint(t *testing.T) {
	m, reg := testMetrics(t, map[string]int{status.StateCompliant: 2})
	for _, c := range []prometheus.Collector{
		m.libvirtUp, m.reconnects, m.rewrites, m.rewriteFailures, m.guestSteps, m.guestFailures,
		newDomainsCollector(func() map[string]int { return nil }),
		newBuildInfoCollector("1.2.3", "abc1234", "go1.26.0"),
	} {
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestMetricsGolden(t *testing.T) {
	m, reg := testMetrics(t, map[string]int{
		status.StateCompliant:       3,
		status.StatePendingColdBoot: 1,
		status.StateRetrying:        2,
		status.StateError:           1,
	})
	m.libvirtUp.Set(1)
	m.reconnects.Add(2)
	m.rewrites.Add(5)
	m.rewriteFailures.Inc()
	m.guestSteps.Add(4)
	m.guestFailures.WithLabelValues(string(guest.ReasonExecDisabled)).Inc()
	m.guestFailures.WithLabelValues(string(guest.ReasonTimeout)).Add(2)

	golden := filepath.Join("testdata", "metrics.golden")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, mf := range mfs {
			if _, err := writeText(&b, mf); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(golden)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := testutil.GatherAndCompare(reg, f); err != nil {
		t.Error(err)
	}
}

func TestMetricsFromAgent(t *testing.T) {
	h := newHarness(t).start()
	h.fake.SetValidate(func(doc []byte) error {
		if strings.Contains(string(doc), "<name>bad</name>") && strings.Contains(string(doc), "queues=") {
			return errors.New("invalid")
		}
		return nil
	})
	mustDefine(t, h.fake, domainXML("good", 4, 0, mac(1)))
	mustDefine(t, h.fake, domainXML("bad", 4, 0, mac(2)))
	h.waitState("good", status.StateRewritten)
	h.waitState("bad", status.StateError)
	h.settle()
	m := h.agent.metrics
	// Whether the first resync or the DEFINED event (or both) saw bad
	// first depends on timing: count what happened before the reconnect.
	failuresBefore := testutil.ToFloat64(m.rewriteFailures)
	h.fake.FailNext(virttest.MethodDial, 1, errors.New("refused"))
	h.fake.Disconnect()
	h.waitFor("reconnected", func(s status.Snapshot) bool { return s.Libvirt.Connected && s.Libvirt.Reconnects == 1 })
	// The resync after the reconnect tries bad again.
	h.waitFor("bad redefined again", func(status.Snapshot) bool { return testutil.ToFloat64(m.rewriteFailures) > failuresBefore })
	h.settle()

	for name, c := range map[string]struct {
		got  float64
		want float64
	}{
		"up":                                    {testutil.ToFloat64(m.libvirtUp), 1},
		"reconnects":                            {testutil.ToFloat64(m.reconnects), 1},
		"redefines that landed (good, once)":    {testutil.ToFloat64(m.rewrites) - testutil.ToFloat64(m.rewriteFailures), 1},
		"failed redefines before the reconnect": {min(failuresBefore, 1), 1},
		"failed redefines at the resync":        {testutil.ToFloat64(m.rewriteFailures) - failuresBefore, 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", name, c.got, c.want)
		}
	}
	want := `
# HELP virtmq_domains Domains known to the agent, by compliance state.
# TYPE virtmq_domains gauge
virtmq_domains{state="compliant"} 0
virtmq_domains{state="error"} 1
virtmq_domains{state="pending-cold-boot"} 0
virtmq_domains{state="retrying"} 0
virtmq_domains{state="rewritten"} 1
virtmq_domains{state="transient"} 0
virtmq_domains{state="unmanaged"} 0
virtmq_domains{state="would-redefine"} 0
`
	if err := testutil.GatherAndCompare(h.cfg.Registry, strings.NewReader(want), "virtmq_domains"); err != nil {
		t.Error(err)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	h := newHarness(t)
	a, err := New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.metricsServer().Handler)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "virtmq_build_info{") || !strings.Contains(string(body), "virtmq_libvirt_up 0") {
		t.Errorf("GET /metrics: %d\n%s", resp.StatusCode, body)
	}
	resp, err = http.Get(srv.URL + "/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /nothing: %d", resp.StatusCode)
	}

	// With MetricsListen the agent serves them and stops cleanly.
	h.cfg.MetricsListen = "127.0.0.1:0"
	h.cfg.Registry = nil // the default: Go and process collectors too
	h.start()
}

func TestMetricsListenFails(t *testing.T) {
	h := newHarness(t)
	h.cfg.MetricsListen = "256.0.0.1:1"
	a, err := New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "metrics") {
		t.Errorf("Run = %v, want a metrics listen error", err)
	}
}
