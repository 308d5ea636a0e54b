package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// slowParse is how long one Parse may take in FuzzParse: the hook parses the
// policy on every VM start, so an input that makes the parser slow is a bug
// the fuzzer must report (as a failing input), not a stalled worker. The
// worst inputs known, 1 MiB (MaxFileSize) of YAML, take about 0.5 s.
const slowParse = 2 * time.Second

// FuzzParse checks that no input makes Parse panic, that failures are
// always a non-empty ErrorList naming the file, and that any policy it
// accepts can decide.
func FuzzParse(f *testing.F) {
	f.Add(defaultPolicy)
	if doc, err := os.ReadFile("../docs/policy.md"); err == nil {
		for _, block := range strings.Split(string(doc), "```yaml\n")[1:] {
			block, _, _ = strings.Cut(block, "```")
			f.Add([]byte(block))
		}
	}
	// The page's examples that are files (the error examples among them).
	for _, pattern := range []string{"../docs/examples/*.yaml", "../docs/examples/*/policy.d/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			if data, err := os.ReadFile(name); err == nil {
				f.Add(data)
			}
		}
	}
	for _, s := range []string{
		"version: 1\n",
		"version: 1\ndefaults: {queues: vcpus/2, min: 2, max: 16, budget: 12, combined: vcpus}\n",
		"version: 1\nrules:\n  - {name: a, match: {vcpus: [\"4-\", -2], labels: {t: [\"a*\"]}, mac_prefix: \"52:54\"}, set: {queues: 50%}}\n",
		"version: 1\nrules:\n  - &r {name: a, match: {domain: &d [x, y]}}\n  - *r\n",
		"version: 1\nmode: a: b\n",
		"version: 1\n---\nversion: 1\n",
		"version: 1\n<<: {mode: off}\n",
	} {
		f.Add([]byte(s))
	}
	d := benchDomain()
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		p, err := Parse("f.yaml", data)
		if took := time.Since(start); took > slowParse {
			// Wall time: a loaded machine can stall one run; a slow
			// input is slow again.
			start = time.Now()
			_, _ = Parse("f.yaml", data)
			if d2 := time.Since(start); d2 > slowParse {
				t.Fatalf("Parse took %v, then %v, on a %d-byte input (limit %v)", took, d2, len(data), slowParse)
			}
		}
		if err != nil {
			var list ErrorList
			if p != nil || !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("Parse = %v, %T %v", p, err, err)
			}
			for _, e := range list {
				if e.File != "f.yaml" || e.Msg == "" {
					t.Fatalf("bad error %#v", e)
				}
			}
			return
		}
		checkPlan(t, p, d)
	})
}

// FuzzDecide checks the invariants of a plan over arbitrary facts.
func FuzzDecide(f *testing.F) {
	f.Add(16, 8, "bridge", "virtio", "", "52:54:00:ab:00:01", "http://microsoft.com/win/2k19", "db-1", "br-st")
	f.Add(1, 0, "user", "e1000", "no", "", "", "", "")
	f.Add(300, 300, "ethernet", "virtio", "no", "", "", "lb-1", "")
	f.Add(-1, -1, "", "", "", "", "", "", "")
	p, err := Parse("p.yaml", []byte(`version: 1
defaults: {queues: vcpus, max: 16, budget: 20, combined: vcpus}
rules:
  - {name: windows, match: {os: "http://microsoft.com/win/*"}, set: {max: 4, guest_step: false}}
  - {name: appliances, match: {domain: ["fw-*", "lb-*"]}, exclude: true}
  - {name: huge, match: {vcpus: "200-"}, set: {queues: 256, max: 256, allow_above_vcpus: true}}
  - {name: half, match: {bridge: "br-st*", mac_prefix: "52:54:00:ab"}, set: {queues: 50%, min: 3, combined: 2}}
`))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, vcpus, queues int, typ, model, managed, mac, osid, name, bridge string) {
		d := &Domain{Name: name, MaxVCPUs: vcpus, CurrentVCPUs: vcpus, OSID: osid, Interfaces: []Interface{
			{Index: 0, Type: typ, Model: model, TargetManaged: managed, MAC: mac, Bridge: bridge, Queues: queues},
			{Index: 1, Type: "network", Model: "virtio", Network: "default"},
			{Index: 2, Type: typ, Model: model, Bridge: bridge},
		}}
		checkPlan(t, p, d)
	})
}

func checkPlan(t *testing.T, p *Policy, d *Domain) {
	t.Helper()
	plan := p.Decide(d)
	if len(plan.NICs) != len(d.Interfaces) {
		t.Fatalf("%d NICs for %d interfaces", len(plan.NICs), len(d.Interfaces))
	}
	for i, n := range plan.NICs {
		if n.Reason == "" || n.Current < 1 {
			t.Fatalf("NIC %d: %+v", i, n)
		}
		if !n.Managed {
			if n.Wanted != n.Current || n.GuestStep || n.Combined != 0 || n.Change() {
				t.Fatalf("unmanaged NIC %d: %+v", i, n)
			}
			continue
		}
		if n.Wanted < 1 || n.Wanted > MaxTapQueues || n.Rule == "" {
			t.Fatalf("NIC %d: %+v", i, n)
		}
		if n.GuestStep != (n.Combined > 0) || n.Combined > n.Wanted {
			t.Fatalf("NIC %d guest step: %+v", i, n)
		}
	}
}

func BenchmarkParseDefault(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("policy.yaml", defaultPolicy); err != nil {
			b.Fatal(err)
		}
	}
}
