package policy

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestParseDefault keeps the shipped policy valid (Default panics
// otherwise) and pins what it decides for the common cases.
func TestParseDefault(t *testing.T) {
	p, err := Parse("policy/default.yaml", defaultPolicy)
	if err != nil {
		t.Fatalf("shipped policy is invalid:\n%v", err)
	}
	d := Default()
	if got, want := d.Sources(), []string{"(embedded default)"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Default().Sources() = %q, want %q", got, want)
	}
	if p.Mode() != ModeApply || p.OnError() != OnErrorAllow {
		t.Errorf("mode, on_error = %s, %s; want apply, allow (the product is zero-touch and never blocks a start)", p.Mode(), p.OnError())
	}
	for _, w := range p.Warnings() {
		if strings.HasPrefix(w.Msg, "warning: ") {
			t.Errorf("shipped policy has a warning: %v", w)
		}
	}
	want := Settings{Queues: QueuesSetting{Kind: QueuesVCPUs}, Min: 1, Max: 8, MinVCPUs: 2, Budget: 64, GuestStep: true, Combined: CombinedSetting{Kind: CombinedQueues}, HandSet: HandSetKeep, ApplyAt: ApplyNextReboot}
	if got := p.Defaults(); got != want {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
	if got := p.Defaults(); got != builtinSettings() {
		t.Errorf("shipped defaults %+v differ from the built-in ones %+v; docs/policy.md documents both as equal", got, builtinSettings())
	}

	linux := &Domain{Name: "web1", MaxVCPUs: 16, CurrentVCPUs: 4, Interfaces: []Interface{
		{Index: 0, Type: "bridge", Model: "virtio", Bridge: "br0", MAC: "52:54:00:00:00:01"},
		{Index: 1, Type: "user", Model: "virtio"},
	}}
	windows := &Domain{Name: "ad1", MaxVCPUs: 8, OSID: "http://microsoft.com/win/2k19", Interfaces: []Interface{
		{Index: 0, Type: "network", Model: "virtio", Network: "default", Queues: 8, Written: 8},
	}}
	small := &Domain{Name: "tiny", MaxVCPUs: 1, Interfaces: []Interface{
		{Index: 0, Type: "network", Model: "virtio"},
	}}
	for _, tt := range []struct {
		d    *Domain
		want []NICPlan
	}{
		{linux, []NICPlan{
			{Index: 0, MAC: "52:54:00:00:00:01", Type: "bridge", Model: "virtio", Current: 1, Wanted: 8, Managed: true, GuestStep: true, Combined: 8, Rule: "defaults", Reason: "queues=vcpus → 16; max 8 → 8"},
			{Index: 1, Type: "user", Model: "virtio", Current: 1, Wanted: 1, Reason: "type user cannot do multiqueue"},
		}},
		{windows, []NICPlan{
			{Index: 0, Type: "network", Model: "virtio", Current: 8, Wanted: 4, Managed: true, Rule: "windows", Reason: "queues=vcpus → 8; max 4 → 4"},
		}},
		{small, []NICPlan{
			{Index: 0, Type: "network", Model: "virtio", Current: 1, Wanted: 1, Rule: "defaults", Reason: "1 vCPUs < min_vcpus 2"},
		}},
	} {
		got := d.Decide(tt.d)
		if got.Mode != ModeApply || got.OnError != OnErrorAllow || got.Domain != tt.d.Name {
			t.Errorf("%s: plan header = %q %s %s", tt.d.Name, got.Domain, got.Mode, got.OnError)
		}
		compareNICs(t, tt.d.Name, got.NICs, tt.want)
	}
}

// TestDocExamples parses the complete policies of docs/policy.md (as
// files in docs/examples/, which go test ./docs keeps equal to the page),
// so the reference cannot drift from the parser, and checks that its
// "without comments" copy of the default says what the shipped file says.
func TestDocExamples(t *testing.T) {
	read := func(name string) string {
		data, err := os.ReadFile("../docs/examples/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	mains := []string{read("default.yaml"), read("enforce.yaml")}
	dropIns := []string{read("lab/policy.d/50-lab.yaml")}
	shipped := Default()
	for i, m := range mains {
		p, err := Parse("example.yaml", []byte(m))
		if err != nil {
			t.Errorf("example %d:\n%v", i, err)
			continue
		}
		if i == 0 {
			if p.Defaults() != shipped.Defaults() || !sameRules(p.Rules(), shipped.Rules()) {
				t.Errorf("the doc's copy of the default policy differs from policy/default.yaml")
			}
		}
	}
	dir := t.TempDir()
	write(t, filepath.Join(dir, "policy.yaml"), mains[1])
	write(t, filepath.Join(dir, "policy.d", "50-lab.yaml"), dropIns[0])
	p, err := Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatalf("drop-in example:\n%v", err)
	}
	if got := ruleNames(p); !reflect.DeepEqual(got, []string{"lab-network", "qemu-macs", "windows", "appliances", "storage-nic", "legacy-guests"}) {
		t.Errorf("rule order = %q", got)
	}
	if got := p.Orchestrators(); got["ovirt"] != OrchestratorObserve || got["nova"] != OrchestratorLeave {
		t.Errorf("merged orchestrators = %v", got)
	}
	if p.Mode() != ModeObserve || p.Defaults().Max != 4 || p.Defaults().Queues.String() != "vcpus/2" || p.Defaults().Budget != 24 {
		t.Errorf("merged mode, defaults = %s, %+v", p.Mode(), p.Defaults())
	}
}

func sameRules(a, b []Rule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		x.Source, y.Source = "", ""
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func ruleNames(p *Policy) []string {
	var names []string
	for _, r := range p.Rules() {
		names = append(names, r.Name)
	}
	return names
}

func write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestParseValues checks that every accepted form of every key parses to
// the value it means.
func TestParseValues(t *testing.T) {
	_, err := Parse("p.yaml", []byte(`
version: 1
mode: enforce
on_error: deny
defaults:
  queues: 50%
  min: 2
  max: 0x10
  min_vcpus: 0
  budget: 12
  allow_above_vcpus: true
  guest_step: false
  combined: 3
x-domains: &doms ["db-*", "pg?"]
rules:
  - name: a.b_c-1
    match:
      domain: *doms
      vcpus: [4, "8-16", "32-", "-2", -3]
      os: "http://microsoft.com/win/*"
      labels: {tier: db, "team name": ["a*", "b"]}
      nic_type: [bridge, vhostuser]
      network: default
      bridge: "br-*"
      mac_prefix: ["52:54:00:AB", "fe"]
    set:
      queues: vcpus/2
      combined: vcpus
  - name: fixed
    set: {queues: "4", combined: queues}
  - name: fixed-int
    set: {queues: 256, combined: "2"}
  - name: off
    match:
    exclude: true
  - name: empty
`))
	if err == nil || err.Error() != `p.yaml:14:1: x-domains: unknown key (known keys: version, mode, on_error, defaults, rules, orchestrators)` {
		t.Fatalf("want only the unknown anchor-holder key reported, got:\n%v", err)
	}
	// Same document with the anchor moved into a place the schema knows.
	p, err := Parse("p.yaml", []byte(`
version: 1
mode: enforce
on_error: deny
defaults:
  queues: 50%
  min: 2
  max: 0x10
  min_vcpus: 0
  budget: 12
  allow_above_vcpus: true
  guest_step: false
  combined: 3
rules:
  - name: a.b_c-1
    match:
      domain: &doms ["db-*", "pg?"]
      vcpus: [4, "8-16", "32-", "-2", -3]
      os: "http://microsoft.com/win/*"
      labels: {tier: db, "team name": ["a*", "b"]}
      nic_type: [bridge, vhostuser]
      network: default
      bridge: "br-*"
      mac_prefix: ["52:54:00:AB", "fe"]
    set:
      queues: vcpus/2
      combined: vcpus
  - name: fixed
    match: {domain: *doms}
    set: {queues: "4", combined: queues}
  - name: fixed-int
    set: {queues: 256, combined: "2"}
  - name: off
    match:
    exclude: true
  - name: empty
`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode() != ModeEnforce || p.OnError() != OnErrorDeny {
		t.Errorf("mode, on_error = %s, %s", p.Mode(), p.OnError())
	}
	def := Settings{Queues: QueuesSetting{QueuesPercent, 50}, Min: 2, Max: 16, MinVCPUs: 0, Budget: 12, AllowAboveVCPUs: true, GuestStep: false, Combined: CombinedSetting{CombinedFixed, 3}, HandSet: HandSetKeep, ApplyAt: ApplyNextReboot}
	if got := p.Defaults(); got != def {
		t.Errorf("defaults = %+v\nwant %+v", got, def)
	}
	with := func(f func(*Settings)) Settings { s := def; f(&s); return s }
	want := []Rule{
		{Name: "a.b_c-1", Source: "p.yaml:15:5", Match: Match{
			Domain:    []string{"db-*", "pg?"},
			VCPUs:     []Range{{4, 4}, {8, 16}, {32, math.MaxInt}, {0, 2}, {0, 3}},
			OS:        []string{"http://microsoft.com/win/*"},
			Labels:    map[string][]string{"tier": {"db"}, "team name": {"a*", "b"}},
			NICType:   []string{"bridge", "vhostuser"},
			Network:   []string{"default"},
			Bridge:    []string{"br-*"},
			MACPrefix: []string{"52:54:00:ab", "fe"},
		}, Settings: with(func(s *Settings) {
			s.Queues = QueuesSetting{QueuesDivided, 2}
			s.Combined = CombinedSetting{Kind: CombinedVCPUs}
		})},
		{Name: "fixed", Source: "p.yaml:28:5", Match: Match{Domain: []string{"db-*", "pg?"}}, Settings: with(func(s *Settings) {
			s.Queues = QueuesSetting{QueuesFixed, 4}
			s.Combined = CombinedSetting{Kind: CombinedQueues}
		})},
		{Name: "fixed-int", Source: "p.yaml:31:5", Settings: with(func(s *Settings) {
			s.Queues = QueuesSetting{QueuesFixed, 256}
			s.Combined = CombinedSetting{CombinedFixed, 2}
		})},
		{Name: "off", Source: "p.yaml:33:5", Exclude: true, Settings: def},
		{Name: "empty", Source: "p.yaml:36:5", Settings: def},
	}
	got := p.Rules()
	if len(got) != len(want) {
		t.Fatalf("got %d rules, want %d", len(got), len(want))
	}
	for i := range want {
		got[i].excludeReason = ""
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("rule %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	for _, s := range []struct {
		got  interface{ String() string }
		want string
	}{
		{QueuesSetting{QueuesPercent, 50}, "50%"},
		{QueuesSetting{QueuesDivided, 2}, "vcpus/2"},
		{QueuesSetting{Kind: QueuesVCPUs}, "vcpus"},
		{QueuesSetting{QueuesFixed, 4}, "4"},
		{CombinedSetting{Kind: CombinedQueues}, "queues"},
		{CombinedSetting{Kind: CombinedVCPUs}, "vcpus"},
		{CombinedSetting{CombinedFixed, 3}, "3"},
		{Range{4, 4}, "4"},
		{Range{4, 16}, "4-16"},
		{Range{4, math.MaxInt}, "4-"},
		{Range{0, 16}, "-16"},
	} {
		if got := s.got.String(); got != s.want {
			t.Errorf("%#v.String() = %q, want %q", s.got, got, s.want)
		}
	}
}

// TestParseErrors checks each class of problem and its exact message.
func TestParseErrors(t *testing.T) {
	const v = "version: 1\n"
	for _, tt := range []struct {
		name string
		in   string
		want string // one error per line
	}{
		{"empty", "", "p.yaml: empty file (a policy needs at least version: 1)"},
		{"comments only", "# nothing\n", "p.yaml: empty file (a policy needs at least version: 1)"},
		{"null document", "~\n", "p.yaml:1:1: empty document (a policy needs at least version: 1)"},
		{"syntax", v + "mode: a: b\n", `p.yaml:2:8: invalid YAML: mapping values are not allowed in this context (is this key indented deeper than the one above it, or is a value with ": " unquoted?)`},
		{"tab", v + "\tmode: off\n", "p.yaml:2:1: invalid YAML: a tab in the indentation (YAML indents with spaces only): found a tab character that violates indentation"},
		{"tab in a list", v + "rules:\n\t- name: a\n", "p.yaml:3:1: invalid YAML: a tab in the indentation (YAML indents with spaces only): found character that cannot start any token"},
		{"tab after spaces", v + "rules:\n  - name: a\n  \tmatch: {}\n", "p.yaml:4:3: invalid YAML: a tab in the indentation (YAML indents with spaces only): found a tab character that violates indentation"},
		{"unknown anchor", v + "mode: *x\n", `p.yaml:2:7: invalid YAML: unknown anchor "x" referenced by *x; a value that starts with * (a glob) must be quoted: "*x"`},
		{"unquoted glob", v + "rules:\n  - name: a # *web\n    match:\n      domain: [db, *web]\n", `p.yaml:5:20: invalid YAML: unknown anchor "web" referenced by *web; a value that starts with * (a glob) must be quoted: "*web"`},
		{"unquoted glob with a star", v + "rules:\n  - name: a\n    match:\n      domain: *-db*\n", `p.yaml:5:15: invalid YAML: an alias (*name) or anchor (&name) with a bad name: did not find expected alphabetic or numeric character; a value that starts with * (a glob) must be quoted: "*..."`},
		{"key indented less", v + "defaults:\n  queues: 4\n max: 8\n", "p.yaml:4:2: invalid YAML: did not find expected key (is this line indented like the keys above it? the block starts at line 3, column 3)"},
		{"key indented deeper", v + "defaults:\n  queues: 4\n   max: 8\n", `p.yaml:4:7: invalid YAML: mapping values are not allowed in this context (is this key indented deeper than the one above it, or is a value with ": " unquoted?)`},
		{"rule key indented less", v + "rules:\n  - name: a\n    match:\n      domain: web\n   set:\n      queues: 4\n", "p.yaml:6:4: invalid YAML: did not find expected '-' indicator (is this line indented like the keys above it? the block starts at line 3, column 5)"},
		{"two documents", v + "---\n" + v, "p.yaml:2:1: a second YAML document; a policy file holds one"},
		{"not a mapping", "- version: 1\n", "p.yaml:1:1: must be a mapping, not a list"},
		{"missing version", "mode: apply\n", "p.yaml:1:1: version: missing (add version: 1)"},
		{"version 2", "version: 2\n", "p.yaml:1:10: version: version 2 is not supported (must be 1)"},
		{"version string", "version: \"1\"\n", "p.yaml:1:10: version: must be an integer, not a string"},
		{"version huge", "version: 99999999999999999999\n", "p.yaml:1:10: version: 99999999999999999999 is out of range: version must be 1"},
		{"max huge", v + "defaults:\n  max: 99999999999999999999999\n", "p.yaml:3:8: defaults.max: 99999999999999999999999 is out of range: max must be from 1 to 256"},
		{"queues huge", v + "defaults: {queues: 99999999999999999999}\n", "p.yaml:2:20: defaults.queues: 99999999999999999999 is out of range: queues must be from 1 to 256"},
		{"budget huge", v + "defaults: {budget: 99999999999999999999}\n", "p.yaml:2:20: defaults.budget: 99999999999999999999 is out of range: budget must be from 0 to 9223372036854775807"},
		{"max a real number", v + "defaults: {max: 4.5}\n", "p.yaml:2:17: defaults.max: must be an integer, not a number"},
		{"key indented less after a comment", "# the fleet's policy\n" + v + "defaults:\n  queues: 4\n max: 8\n",
			"p.yaml:5:2: invalid YAML: did not find expected key (is this line indented like the keys above it? the block starts at line 4, column 3)"},
		{"key indented less in a multi-line flow list", v + "rules:\n  - name: a\n    match: {domain: [a,\n   b]}\n    set:\n      queues: 4\n     max: 3\n",
			"p.yaml:8:6: invalid YAML: did not find expected key (is this line indented like the keys above it? the block starts at line 7, column 7)"},
		{"error in an aliased list", v + "rules:\n  - name: a\n    match: {domain: &d [web1, \"x[\"]}\n  - name: b\n    match:\n      domain: *d\n",
			`p.yaml:4:31: rules[0].match.domain[1]: "x[" is not a valid glob: syntax error in pattern` + "\n" +
				`p.yaml:7:15: rules[1].match.domain[1]: "x[" is not a valid glob: syntax error in pattern (in *d, anchored at line 4)`},
		{"error in an aliased value", v + "defaults: {max: &m 0}\nrules:\n  - name: a\n    set: {max: *m}\n",
			"p.yaml:2:17: defaults.max: max 0 is less than 1\np.yaml:5:16: rules[0].set.max: max 0 is less than 1 (in *m, anchored at line 2)"},
		{"empty labels", v + "rules:\n  - name: a\n    match: {labels: {}}\n",
			"p.yaml:4:21: rules[0].match.labels: no labels (it would match every NIC): name a label and its values, or leave labels out"},
		{"labels left empty", v + "rules:\n  - name: a\n    match:\n      labels:\n    exclude: true\n",
			"p.yaml:5:14: rules[0].match.labels: no labels (it would match every NIC): name a label and its values, or leave labels out"},
		{"unknown key", v + "mdoe: apply\n", "p.yaml:2:1: mdoe: unknown key (known keys: version, mode, on_error, defaults, rules, orchestrators)"},
		{"duplicate key", v + "mode: apply\nmode: observe\n", "p.yaml:3:1: mode: duplicate key (first at line 2)"},
		{"merge key", v + "defaults:\n  <<: {max: 4}\n", "p.yaml:3:3: defaults: merge keys (<<) are not supported"},
		{"non-string key", v + "defaults:\n  [a]: 1\n", "p.yaml:3:3: defaults: keys must be strings, not a list"},
		{"mode enum", v + "mode: strict\n", `p.yaml:2:7: mode: "strict" is not one of observe, apply, enforce`},
		{"mode type", v + "mode: [apply]\n", "p.yaml:2:7: mode: must be a string, not a list"},
		{"mode bool", v + "mode: true\n", "p.yaml:2:7: mode: must be a string, not a boolean"},
		{"on_error enum", v + "on_error: ignore\n", `p.yaml:2:11: on_error: "ignore" is not one of allow, deny`},
		{"defaults type", v + "defaults: 4\n", "p.yaml:2:11: defaults: must be a mapping, not an integer"},
		{"settings unknown", v + "defaults: {maxx: 4}\n", "p.yaml:2:12: defaults.maxx: unknown key (known keys: queues, min, max, min_vcpus, budget, allow_above_vcpus, guest_step, combined, allow_vhostuser, hand_set, apply_at)"},
		{"queues word", v + "defaults: {queues: cpus}\n", `p.yaml:2:20: defaults.queues: "cpus" is not a queue count (an integer, vcpus, vcpus/K or P%)`},
		{"queues zero", v + "defaults: {queues: 0}\n", "p.yaml:2:20: defaults.queues: queues 0 is less than 1"},
		{"queues above tap", v + "defaults: {queues: \"300\"}\n", "p.yaml:2:20: defaults.queues: queues 300 is more than 256, the kernel's limit of queues per tap"},
		{"queues divisor", v + "defaults: {queues: vcpus/0}\n", `p.yaml:2:20: defaults.queues: "vcpus/0": the divisor must be an integer of at least 1`},
		{"queues divisor word", v + "defaults: {queues: vcpus/x}\n", `p.yaml:2:20: defaults.queues: "vcpus/x": the divisor must be an integer of at least 1`},
		{"queues percent", v + "defaults: {queues: 150%}\n", `p.yaml:2:20: defaults.queues: "150%": the percentage must be an integer from 1 to 100`},
		{"queues percent zero", v + "defaults: {queues: 0%}\n", `p.yaml:2:20: defaults.queues: "0%": the percentage must be an integer from 1 to 100`},
		{"queues bool", v + "defaults: {queues: true}\n", "p.yaml:2:20: defaults.queues: must be a string, not a boolean"},
		{"queues null", v + "defaults: {queues: }\n", "p.yaml:2:20: defaults.queues: must be a string, not empty"},
		{"min zero", v + "defaults: {min: 0}\n", "p.yaml:2:17: defaults.min: min 0 is less than 1"},
		{"max above tap", v + "defaults: {max: 300}\n", "p.yaml:2:17: defaults.max: max 300 is more than 256, the kernel's limit of queues per tap"},
		{"max string", v + "defaults: {max: \"8\"}\n", "p.yaml:2:17: defaults.max: must be an integer, not a string"},
		{"min_vcpus negative", v + "defaults: {min_vcpus: -1}\n", "p.yaml:2:23: defaults.min_vcpus: min_vcpus -1 is negative"},
		{"budget float", v + "defaults: {budget: 1.5}\n", "p.yaml:2:20: defaults.budget: must be an integer, not a number"},
		{"bool yes", v + "defaults: {guest_step: yes}\n", "p.yaml:2:24: defaults.guest_step: must be true or false, not a string"},
		{"bool int", v + "defaults: {allow_above_vcpus: 1}\n", "p.yaml:2:31: defaults.allow_above_vcpus: must be true or false, not an integer"},
		{"combined word", v + "defaults: {combined: all}\n", `p.yaml:2:22: defaults.combined: "all" is not a channel count (an integer, queues or vcpus)`},
		{"combined above tap", v + "defaults: {combined: 257}\n", "p.yaml:2:22: defaults.combined: combined 257 is more than 256, the kernel's limit of queues per tap"},
		{"min > max", v + "defaults:\n  min: 6\n  max: 4\n", "p.yaml:4:8: defaults.max: min 6 > max 4 (min is set at p.yaml:3:8)"},
		{"min > built-in max", v + "defaults: {min: 10}\n", "p.yaml:2:17: defaults.min: min 10 > max 8 (max is the built-in default)"},
		{"rule min > default max", v + "defaults: {max: 4}\nrules:\n  - name: r\n    set: {min: 6}\n", "p.yaml:5:16: rules[0].set.min: min 6 > max 4 (max is set at p.yaml:2:17)"},
		{"rule max < default min", v + "defaults: {min: 4}\nrules:\n  - name: r\n    set: {max: 2}\n", "p.yaml:5:16: rules[0].set.max: min 4 > max 2 (min is set at p.yaml:2:17)"},
		{"rules type", v + "rules: {name: x}\n", "p.yaml:2:8: rules: must be a list, not a mapping"},
		{"rule type", v + "rules: [x]\n", "p.yaml:2:9: rules[0]: must be a mapping, not a string"},
		{"missing name", v + "rules:\n  - exclude: true\n", "p.yaml:3:5: rules[0]: missing name"},
		{"bad name", v + "rules:\n  - name: \"a b\"\n", `p.yaml:3:11: rules[0].name: "a b" is not a valid rule name (letters, digits, '.', '_', '-'; at most 63 characters)`},
		{"reserved name", v + "rules:\n  - name: defaults\n", `p.yaml:3:11: rules[0].name: "defaults" is reserved for NICs no rule matches`},
		{"duplicate name", v + "rules:\n  - name: a\n  - name: a\n", `p.yaml:4:11: rules[1].name: duplicate rule name "a" (first at p.yaml:3:11)`},
		{"rule unknown key", v + "rules:\n  - name: a\n    when: {}\n", "p.yaml:4:5: rules[0].when: unknown key (known keys: name, match, exclude, set)"},
		{"exclude type", v + "rules:\n  - name: a\n    exclude: \"true\"\n", "p.yaml:4:14: rules[0].exclude: must be true or false, not a string"},
		{"exclude with set", v + "rules:\n  - name: a\n    exclude: true\n    set: {max: 2}\n", "p.yaml:5:5: rules[0].set: has no effect with exclude: true"},
		{"match unknown", v + "rules:\n  - name: a\n    match: {vcpu: 4}\n", "p.yaml:4:13: rules[0].match.vcpu: unknown key (known keys: domain, vcpus, os, labels, nic_type, network, bridge, mac_prefix)"},
		{"match type", v + "rules:\n  - name: a\n    match: [domain]\n", "p.yaml:4:12: rules[0].match: must be a mapping, not a list"},
		{"range", v + "rules:\n  - name: a\n    match:\n      vcpus: \"4-x\"\n", `p.yaml:5:14: rules[0].match.vcpus: "4-x" is not a range`},
		{"range dash", v + "rules:\n  - name: a\n    match: {vcpus: [\"-\"]}\n", `p.yaml:4:21: rules[0].match.vcpus[0]: "-" is not a range`},
		{"range empty", v + "rules:\n  - name: a\n    match: {vcpus: 16-4}\n", `p.yaml:4:20: rules[0].match.vcpus: "16-4" is an empty range`},
		{"range two dashes", v + "rules:\n  - name: a\n    match: {vcpus: 1-2-3}\n", `p.yaml:4:20: rules[0].match.vcpus: "1-2-3" is not a range`},
		{"bad glob", v + "rules:\n  - name: a\n    match: {domain: \"[a\"}\n", `p.yaml:4:21: rules[0].match.domain: "[a" is not a valid glob: syntax error in pattern`},
		{"bad glob in list", v + "rules:\n  - name: a\n    match: {os: [\"x\", \"a\\\\\"]}\n", `p.yaml:4:23: rules[0].match.os[1]: "a\\" is not a valid glob: syntax error in pattern`},
		{"empty glob", v + "rules:\n  - name: a\n    match: {bridge: \"\"}\n", "p.yaml:4:21: rules[0].match.bridge: empty pattern"},
		{"empty list", v + "rules:\n  - name: a\n    match: {network: []}\n", "p.yaml:4:22: rules[0].match.network: empty list (it would match nothing)"},
		{"glob null", v + "rules:\n  - name: a\n    match: {network: }\n", "p.yaml:4:22: rules[0].match.network: must be a string, not empty"},
		{"nic type", v + "rules:\n  - name: a\n    match: {nic_type: [bridge, bridged]}\n", `p.yaml:4:32: rules[0].match.nic_type[1]: unknown interface type "bridged" (known: bridge, client, direct, ethernet, hostdev, internal, mcast, network, null, server, udp, user, vdpa, vds, vhostuser)`},
		{"mac prefix", v + "rules:\n  - name: a\n    match: {mac_prefix: \"52-54\"}\n", `p.yaml:4:25: rules[0].match.mac_prefix: "52-54" is not a MAC prefix (hex digits and colons, e.g. 52:54:00)`},
		{"labels type", v + "rules:\n  - name: a\n    match: {labels: [tier]}\n", "p.yaml:4:21: rules[0].match.labels: must be a mapping, not a list"},
		{"label glob", v + "rules:\n  - name: a\n    match: {labels: {\"my tier\": \"[\"}}\n", `p.yaml:4:33: rules[0].match.labels["my tier"]: "[" is not a valid glob: syntax error in pattern`},
		{"label empty name", v + "rules:\n  - name: a\n    match: {labels: {\"\": x}}\n", `p.yaml:4:22: rules[0].match.labels[""]: empty label name`},
		{"too large", v + "#" + strings.Repeat("x", MaxFileSize), "p.yaml: file is larger than 1048576 bytes"},
		{"several", "version: 3\nmode: x\nrules:\n  - match: {vcpus: a}\n  - name: b\n    set: {max: 0}\n",
			"p.yaml:1:10: version: version 3 is not supported (must be 1)\n" +
				`p.yaml:2:7: mode: "x" is not one of observe, apply, enforce` + "\n" +
				"p.yaml:4:5: rules[0]: missing name\n" +
				`p.yaml:4:20: rules[0].match.vcpus: "a" is not a range` + "\n" +
				"p.yaml:6:16: rules[1].set.max: max 0 is less than 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte(tt.in))
			if err == nil {
				t.Fatalf("no error, want:\n%s", tt.want)
			}
			if p != nil {
				t.Errorf("got a policy with an error")
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want ErrorList", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
			var one *Error
			if !errors.As(err, &one) || one != list[0] {
				t.Errorf("errors.As(*Error) does not give the first problem")
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{File: "p.yaml", Line: 12, Column: 5, Path: "rules[2].match.vcpus", Msg: `"4-x" is not a range`}, `p.yaml:12:5: rules[2].match.vcpus: "4-x" is not a range`},
		{Error{File: "p.yaml", Line: 3, Msg: "invalid YAML: x"}, "p.yaml:3: invalid YAML: x"},
		{Error{File: "p.yaml", Msg: "empty file"}, "p.yaml: empty file"},
		{Error{File: "p.yaml", Line: 1, Column: 1, Msg: "m"}, "p.yaml:1:1: m"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

// TestLoad checks file discovery and the merge order of drop-ins.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "policy.yaml")
	write(t, main, `version: 1
mode: enforce
defaults:
  max: 16
  min_vcpus: 4
rules:
  - name: main-1
  - name: main-2
`)
	d := filepath.Join(dir, "policy.d")
	write(t, filepath.Join(d, "20-b.yaml"), "defaults: {max: 4}\nrules:\n  - name: b-1\n  - name: b-2\n")
	write(t, filepath.Join(d, "10-a.yaml"), "version: 1\nmode: observe\non_error: deny\ndefaults: {max: 12, budget: 10}\nrules:\n  - name: a-1\n")
	// Byte order, not locale order: '1' < '2' < 'Z' < 'a'.
	write(t, filepath.Join(d, "Z-upper.yaml"), "rules:\n  - name: z\n")
	write(t, filepath.Join(d, "a-lower.yaml"), "rules:\n  - name: lower\n")
	write(t, filepath.Join(d, "README"), "not yaml: [")
	write(t, filepath.Join(d, "30-c.yml"), "not yaml: [")
	write(t, filepath.Join(d, "40-d.yaml.bak"), "not yaml: [")
	write(t, filepath.Join(d, ".50-hidden.yaml"), "not yaml: [")
	if err := os.MkdirAll(filepath.Join(d, "60-dir.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("10-a.yaml", filepath.Join(d, "70-link.yaml")); err != nil {
		t.Fatal(err)
	}
	// A rule of the same name in a later drop-in replaces the earlier one,
	// with a warning: the symlink repeats 10-a.yaml's a-1.
	lp, err := Load(main)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(d, "70-link.yaml") + `:6:11: rules[0].name: warning: rule "a-1" replaces the rule of the same name at ` + filepath.Join(d, "10-a.yaml") + ":6:11"
	found := false
	for _, w := range lp.Warnings() {
		found = found || w.Error() == want
	}
	if !found {
		t.Fatalf("symlinked drop-in not read, or no warning %q in %v", want, lp.Warnings())
	}
	count := 0
	for _, r := range lp.Rules() {
		if r.Name == "a-1" {
			count++
		}
	}
	if count != 1 {
		t.Errorf("rule a-1 is in force %d times, want once", count)
	}
	if err := os.Remove(filepath.Join(d, "70-link.yaml")); err != nil {
		t.Fatal(err)
	}

	p, err := Load(main)
	if err != nil {
		t.Fatal(err)
	}
	wantSources := []string{main, filepath.Join(d, "10-a.yaml"), filepath.Join(d, "20-b.yaml"), filepath.Join(d, "Z-upper.yaml"), filepath.Join(d, "a-lower.yaml")}
	if got := p.Sources(); !reflect.DeepEqual(got, wantSources) {
		t.Errorf("sources = %q\nwant %q", got, wantSources)
	}
	if got, want := ruleNames(p), []string{"a-1", "b-1", "b-2", "z", "lower", "main-1", "main-2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("rules = %q, want %q", got, want)
	}
	if p.Mode() != ModeObserve || p.OnError() != OnErrorDeny {
		t.Errorf("mode, on_error = %s, %s; want the drop-in's observe, deny", p.Mode(), p.OnError())
	}
	// max from the last drop-in that sets it, budget from 10-a, min_vcpus from main.
	if s := p.Defaults(); s.Max != 4 || s.Budget != 10 || s.MinVCPUs != 4 || s.Min != 1 {
		t.Errorf("defaults = %+v", s)
	}
	// A main-file rule's set sits over the defaults merged from all files.
	if s := p.Rules()[5].Settings; s.Max != 4 || s.Budget != 10 {
		t.Errorf("main-1 settings = %+v", s)
	}

	t.Run("no policy.d", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "p.yaml"), "version: 1\n")
		p, err := Load(filepath.Join(dir, "p.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Sources(); len(got) != 1 {
			t.Errorf("sources = %q", got)
		}
	})
	t.Run("missing main", func(t *testing.T) {
		_, err := Load(filepath.Join(t.TempDir(), "p.yaml"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want fs.ErrNotExist wrapped", err)
		}
	})
	t.Run("policy.d is a file", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "p.yaml"), "version: 1\n")
		write(t, filepath.Join(dir, "policy.d"), "")
		if _, err := Load(filepath.Join(dir, "p.yaml")); err == nil {
			t.Error("no error")
		}
	})
	t.Run("errors across files", func(t *testing.T) {
		dir := t.TempDir()
		main := filepath.Join(dir, "p.yaml")
		a := filepath.Join(dir, "policy.d", "a.yaml")
		b := filepath.Join(dir, "policy.d", "b.yaml")
		write(t, main, "version: 1\nrules:\n  - name: x\n    set: {min: 4}\n")
		write(t, a, "version: 2\nrules:\n  - name: y\n")
		write(t, b, "defaults: {max: 2}\n")
		write(t, main, "version: 1\nrules:\n  - name: x\n    set: {min: 4}\n  - name: x\n")
		_, err := Load(main)
		want := a + ":1:10: version: version 2 is not supported (must be 1)\n" +
			main + ":5:11: rules[1].name: duplicate rule name \"x\" (first at " + main + ":3:11)\n" +
			main + ":4:16: rules[0].set.min: min 4 > max 2 (max is set at " + b + ":1:17)"
		if err == nil || err.Error() != want {
			t.Errorf("got:\n%v\nwant:\n%s", err, want)
		}
	})
	t.Run("empty drop-in", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "p.yaml"), "version: 1\n")
		write(t, filepath.Join(dir, "policy.d", "a.yaml"), "# all commented out\n")
		_, err := Load(filepath.Join(dir, "p.yaml"))
		if want := filepath.Join(dir, "policy.d", "a.yaml") + ": empty file (a policy needs at least version: 1)"; err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
	})
}

// TestParseAliasBomb keeps the hook from spending long on a small document
// whose aliases make the walk huge: a list of aliases to one rule whose
// list is itself long.
func TestParseAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\nrules:\n  - &r\n    name: r\n    match:\n      domain: [")
	for i := range 2000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("d")
	}
	b.WriteString("]\n")
	for range 2000 {
		b.WriteString("  - *r\n")
	}
	_, err := Parse("p.yaml", []byte(b.String()))
	var list ErrorList
	if !errors.As(err, &list) || len(list) != maxErrors+1 {
		t.Fatalf("got %.300v", err)
	}
	// The 2000 duplicate rule names come after the size problem and are cut.
	if got := list[0].Error(); got != "p.yaml:6:15: rules[523].match.domain: document too large (more than 1048576 entries after expanding aliases)" {
		t.Errorf("first problem = %s", got)
	}
	if got := list[maxErrors].Error(); !strings.HasPrefix(got, "p.yaml: ") || !strings.HasSuffix(got, " more problems not shown") {
		t.Errorf("last problem = %s", got)
	}
}

// TestParseMode: the three modes, a policy without one, and the earlier
// releases' modes, read as apply with a located warning.
func TestParseMode(t *testing.T) {
	for _, tt := range []struct {
		in       string
		want     Mode
		wantWarn string
	}{
		{"version: 1\n", ModeApply, ""},
		{"version: 1\nmode: observe\n", ModeObserve, ""},
		{"version: 1\nmode: apply\n", ModeApply, ""},
		{"version: 1\nmode: enforce\n", ModeEnforce, ""},
		{"version: 1\nmode: audit\n", ModeApply, `p.yaml:2:7: mode: warning: "audit" is read as "apply", what the agent always did with it: ` +
			"it rewrites definitions and runs ethtool in guests; write mode: apply to keep that, or mode: observe to only report"},
		{"version: 1\nmode: off\n", ModeApply, `p.yaml:2:7: mode: warning: "off" is read as "apply", what the agent always did with it: ` +
			"it rewrites definitions and runs ethtool in guests (and the hook now logs non-compliant starts); " +
			"write mode: apply to keep that, or mode: observe to only report"},
	} {
		p, err := Parse("p.yaml", []byte(tt.in))
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if p.Mode() != tt.want {
			t.Errorf("%q: mode %s, want %s", tt.in, p.Mode(), tt.want)
		}
		var warns []string
		for _, w := range p.Warnings() {
			warns = append(warns, w.Error())
		}
		if got := strings.Join(warns, "\n"); got != tt.wantWarn {
			t.Errorf("%q: warnings\n%s\nwant\n%s", tt.in, got, tt.wantWarn)
		}
		if got, want := p.Mode().Acts(), tt.want != ModeObserve; got != want {
			t.Errorf("%q: Acts() = %v, want %v", tt.in, got, want)
		}
	}
}

// TestScanMistakeValid: the scan that places syntax errors finds nothing
// in valid YAML (it runs only once yaml.v3 failed, but a false find would
// then point at the wrong place), here every shape the docs use.
func TestScanMistakeValid(t *testing.T) {
	files, _ := filepath.Glob("../docs/examples/*.yaml")
	lab, _ := filepath.Glob("../docs/examples/*/policy.d/*.yaml")
	inputs := map[string]string{"default.yaml": string(defaultPolicy)}
	for _, f := range append(files, lab...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[f] = string(data)
	}
	for name, s := range map[string]string{
		"compact list":      "rules:\n- name: a\n  match: {domain: web}\nmode: apply\n",
		"flow over lines":   "rules:\n  - name: a\n    match: {domain: [a,\n        b], vcpus: \"4-\"}\n    set:\n      max: 4\n",
		"anchor then alias": "defaults: {max: &m 4}\nrules:\n  - {name: a, set: {max: *m}}\n",
		"plain with colon":  "rules:\n  - name: a\n    match: {os: http://microsoft.com/win/*}\n",
		"glob in quotes":    "rules:\n  - name: a\n    match:\n      domain: \"*web\"   # *web: quoted\n",
		"block scalar":      "x: |\n  a: b\n    - c\n  \ty\nmode: apply\n",
		"continued plain":   "a: one\n  two three\nb: 1\n",
		"star inside value": "a: b *c\nd: [e, 'f: *g']\n",
	} {
		inputs[name] = s
	}
	valid := 0
	for name, s := range inputs {
		if _, _, err, _ := decodeDocs([]byte(s)); err != nil {
			if strings.HasPrefix(name, "../docs/") {
				continue // one of the error examples
			}
			t.Fatalf("%s is not valid YAML: %v", name, err)
		}
		valid++
		if m, ok := scanMistake([]byte(s)); ok {
			t.Errorf("%s: scanMistake finds %+v in valid YAML:\n%s", name, m, s)
		}
	}
	if valid < 10 {
		t.Fatalf("only %d valid inputs", valid)
	}
}
