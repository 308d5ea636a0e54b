package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/virtmq/virtmq/internal/status"
)

// The monitoring mixin (packaging/monitoring) must only query what the
// agent exports: these tests check its Prometheus rules and its Grafana
// dashboard against the metrics registered here. promtool checks the
// PromQL syntax and the alerts' behaviour (make monitoring-test).

const mixinDir = "../packaging/monitoring"

// exported returns the agent's metric families, with their label names,
// as the golden test registers them (every family has a series there).
func exported(t *testing.T) map[string]map[string]bool {
	t.Helper()
	_, reg := testMetrics(t, map[string]int{status.StateCompliant: 1})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]bool{}
	for _, mf := range mfs {
		labels := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		out[mf.GetName()] = labels
	}
	return out
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record string `yaml:"record"`
			Alert  string `yaml:"alert"`
			Expr   string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mixinDir, "virtmq-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&rf); err != nil {
		t.Fatal(err)
	}
	return rf
}

var (
	reQuoted   = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	reGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	reRange    = regexp.MustCompile(`\[[^\]]*\]`)
	reVariable = regexp.MustCompile(`\$\{?\w+\}?`)
	reSelector = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}`)
	reMatcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	reName     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// references returns the metric names expr selects (names that start with
// virtmq, recording rules with a colon, and up) and, by name, the label
// names its selectors match on. It is not a PromQL parser (promtool checks
// the syntax); it is enough for the expressions of the mixin.
func references(expr string) (names []string, labels map[string][]string) {
	labels = map[string][]string{}
	e := reVariable.ReplaceAllString(expr, "")
	e = reRange.ReplaceAllString(e, "")
	// Label names of selectors, before the strings go.
	for _, m := range reSelector.FindAllStringSubmatch(reQuoted.ReplaceAllString(e, `""`), -1) {
		for _, l := range reMatcher.FindAllStringSubmatch(m[2], -1) {
			labels[m[1]] = append(labels[m[1]], l[1])
		}
	}
	e = reQuoted.ReplaceAllString(e, "")
	e = regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(e, " ")
	e = reGrouping.ReplaceAllString(e, " ")
	for _, n := range reName.FindAllString(e, -1) {
		if strings.HasPrefix(n, "virtmq") || strings.Contains(n, ":") || n == "up" {
			names = append(names, n)
		}
	}
	return names, labels
}

// checkExpr reports a query that selects nothing the agent (or a rule)
// exports, or matches on a label the metric does not have.
func checkExpr(t *testing.T, where, expr string, metrics map[string]map[string]bool, recorded map[string]bool) {
	t.Helper()
	names, labels := references(expr)
	if len(names) == 0 {
		t.Errorf("%s: %q selects no virtmq metric", where, expr)
	}
	for _, n := range names {
		if _, ok := metrics[n]; !ok && !recorded[n] && n != "up" {
			t.Errorf("%s: %q: %s is neither exported by the agent nor recorded by virtmq-rules.yml", where, expr, n)
		}
	}
	for n, ls := range labels {
		have, ok := metrics[n]
		if !ok {
			continue // a recording rule or up: its labels are the target's and the rule's
		}
		for _, l := range ls {
			if !have[l] && l != "job" && l != "instance" {
				t.Errorf("%s: %q: %s has no label %s", where, expr, n, l)
			}
		}
	}
}

func TestReferences(t *testing.T) {
	names, labels := references(`sum by (instance, state) (rate(virtmq_x_total{state=~"a|b",instance=~"$instance"}[$__rate_interval])) / on (job) job:virtmq_y:sum or vector(0) and up{job="virtmq-agent"}`)
	if want := []string{"virtmq_x_total", "job:virtmq_y:sum", "up"}; !slices.Equal(names, want) {
		t.Errorf("names = %q, want %q", names, want)
	}
	if got := labels["virtmq_x_total"]; !slices.Equal(got, []string{"state", "instance"}) {
		t.Errorf("labels = %q", got)
	}
}

func TestMixinRules(t *testing.T) {
	metrics := exported(t)
	rf := readRules(t)
	recorded := map[string]bool{}
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
			if r.Alert != "" {
				if alerts[r.Alert] {
					t.Errorf("alert %s is defined twice", r.Alert)
				}
				alerts[r.Alert] = true
			}
		}
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			checkExpr(t, g.Name+"/"+r.Record+r.Alert, r.Expr, metrics, recorded)
		}
	}
	// The alerts the fleet view needs.
	for _, a := range []string{"VirtmqAgentDown", "VirtmqLibvirtDisconnected", "VirtmqPolicyReloadFailed",
		"VirtmqDomainPendingColdBoot", "VirtmqGuestStepFailing", "VirtmqRedefineFailing", "VirtmqPolicyDiffers"} {
		if !alerts[a] {
			t.Errorf("no alert %s", a)
		}
	}
	// Every alert has a unit test.
	b, err := os.ReadFile(filepath.Join(mixinDir, "tests", "virtmq-rules.test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for a := range alerts {
		if !strings.Contains(string(b), "alertname: "+a+"\n") {
			t.Errorf("alert %s has no test in tests/virtmq-rules.test.yml", a)
		}
	}
	for r := range recorded {
		if !strings.Contains(string(b), "expr: "+r+"\n") {
			t.Errorf("recording rule %s has no test in tests/virtmq-rules.test.yml", r)
		}
	}
}

type dashPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

type dashboard struct {
	UID        string      `json:"uid"`
	Title      string      `json:"title"`
	Panels     []dashPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource json.RawMessage `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

// templated is the datasource every panel, target and query variable uses:
// the dashboard's variable, so that it imports into any Grafana.
const templated = `{"type":"prometheus","uid":"${datasource}"}`

func sameJSON(a json.RawMessage, b string) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal([]byte(b), &y) == nil &&
		func() bool { bx, _ := json.Marshal(x); by, _ := json.Marshal(y); return string(bx) == string(by) }()
}

func TestMixinDashboard(t *testing.T) {
	metrics := exported(t)
	recorded := map[string]bool{}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(mixinDir, "virtmq-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	var d dashboard
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q: both must be set", d.UID, d.Title)
	}

	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		if vars[v.Name] {
			t.Errorf("variable %s is defined twice", v.Name)
		}
		vars[v.Name] = true
		switch v.Type {
		case "datasource":
			if v.Name != "datasource" || !sameJSON(v.Query, `"prometheus"`) {
				t.Errorf("datasource variable %s: query %s, want a variable named datasource of Prometheus data sources", v.Name, v.Query)
			}
		case "query":
			if !sameJSON(v.Datasource, templated) {
				t.Errorf("variable %s: datasource %s, want %s", v.Name, v.Datasource, templated)
			}
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Errorf("variable %s: query %s: %v", v.Name, v.Query, err)
			}
			checkExpr(t, "variable "+v.Name, q.Query, metrics, recorded)
		}
	}
	if !vars["datasource"] {
		t.Error("no datasource variable: the dashboard would be tied to one data source")
	}

	ids := map[int]string{}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			where := "panel " + p.Title
			if p.ID == 0 {
				t.Errorf("%s has no id", where)
			} else if other, ok := ids[p.ID]; ok {
				t.Errorf("%s has the id %d of panel %s", where, p.ID, other)
			}
			ids[p.ID] = p.Title
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if !sameJSON(p.Datasource, templated) {
				t.Errorf("%s: datasource %s, want %s", where, p.Datasource, templated)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s has no query", where)
			}
			refs := map[string]bool{}
			for _, q := range p.Targets {
				if refs[q.RefID] || q.RefID == "" {
					t.Errorf("%s: refId %q is empty or not unique", where, q.RefID)
				}
				refs[q.RefID] = true
				if !sameJSON(q.Datasource, templated) {
					t.Errorf("%s: query %s: datasource %s, want %s", where, q.RefID, q.Datasource, templated)
				}
				checkExpr(t, where, q.Expr, metrics, recorded)
			}
		}
	}
	walk(d.Panels)
	// What the dashboard must show.
	// A fleet: per host and in total, agents down, failed reloads,
	// failing guest steps, and whether the hosts run one policy.
	for _, want := range []string{"job:virtmq_compliance:ratio", `state="pending-cold-boot"`, "virtmq_guest_step_failures_total", "by (reason)",
		`up{job="virtmq-agent",instance=~"$instance"} == 0`, "virtmq_policy_last_reload_successful", "sum(virtmq_interface_guest_step_failing",
		"sum by (instance) (virtmq_interface_guest_step_failing", "count(count by (digest) (virtmq_policy_info", "virtmq_domain_orchestrated"} {
		if !strings.Contains(string(b), strings.ReplaceAll(want, `"`, `\"`)) {
			t.Errorf("the dashboard has no query with %s", want)
		}
	}
}

// TestMetricsDocumented: agent/README.md names every metric the agent
// exports.
func TestMetricsDocumented(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range exported(t) {
		if !strings.Contains(string(b), "`"+name) {
			t.Errorf("agent/README.md does not document %s", name)
		}
	}
}
