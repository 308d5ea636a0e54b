package policy

import (
	"testing"
)

func compareNICs(t *testing.T, name string, got, want []NICPlan) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d NICs, want %d:\n%+v", name, len(got), len(want), got)
		return
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s: NIC %d:\n got %+v\nwant %+v", name, i, got[i], want[i])
		}
	}
}

// nic is a managed-capable NIC: virtio on a bridge.
func nic(i int) Interface {
	return Interface{Index: i, Type: "bridge", Model: "virtio", Bridge: "br0"}
}

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse("p.yaml", []byte("version: 1\n"+src))
	if err != nil {
		t.Fatalf("policy:\n%v", err)
	}
	return p
}

func TestDecide(t *testing.T) {
	// managed builds the expected plan of a managed bridge NIC.
	managed := func(i, current, wanted, combined int, rule, reason string) NICPlan {
		return NICPlan{Index: i, Type: "bridge", Model: "virtio", Current: current, Wanted: wanted, Managed: true,
			GuestStep: combined > 0, Combined: combined, Rule: rule, Reason: reason}
	}
	skipped := func(n Interface, rule, reason string) NICPlan {
		return NICPlan{Index: n.Index, MAC: n.MAC, Type: n.Type, Model: n.Model, Current: max(n.Queues, 1), Wanted: max(n.Queues, 1), Rule: rule, Reason: reason}
	}
	with := func(n Interface, f func(*Interface)) Interface { f(&n); return n }

	for _, tt := range []struct {
		name   string
		policy string
		d      Domain
		want   []NICPlan
	}{
		{
			name: "vcpus capped by max",
			d:    Domain{MaxVCPUs: 16, Interfaces: []Interface{nic(0)}},
			want: []NICPlan{managed(0, 1, 8, 8, "defaults", "queues=vcpus → 16; max 8 → 8")},
		},
		{
			name: "maximum vcpus, not current",
			d:    Domain{MaxVCPUs: 4, CurrentVCPUs: 2, Interfaces: []Interface{nic(0)}},
			want: []NICPlan{managed(0, 1, 4, 4, "defaults", "queues=vcpus → 4")},
		},
		{
			name: "already compliant",
			d:    Domain{MaxVCPUs: 4, Interfaces: []Interface{with(nic(0), func(n *Interface) { n.Queues, n.Written = 4, 4 })}},
			want: []NICPlan{managed(0, 4, 4, 4, "defaults", "queues=vcpus → 4")},
		},
		{
			name: "lowered from too many",
			d:    Domain{MaxVCPUs: 4, Interfaces: []Interface{with(nic(0), func(n *Interface) { n.Queues, n.Written = 16, 16 })}},
			want: []NICPlan{managed(0, 16, 4, 4, "defaults", "queues=vcpus → 4")},
		},
		{
			name: "too few vcpus",
			d:    Domain{MaxVCPUs: 1, Interfaces: []Interface{nic(0)}},
			want: []NICPlan{skipped(nic(0), "defaults", "1 vCPUs < min_vcpus 2")},
		},
		{
			name: "no vcpu element",
			d:    Domain{Interfaces: []Interface{nic(0)}},
			want: []NICPlan{skipped(nic(0), "defaults", "1 vCPUs < min_vcpus 2")},
		},
		{
			name:   "min_vcpus from a rule",
			policy: "rules:\n  - {name: big-only, match: {domain: \"b*\"}, set: {min_vcpus: 8}}\n",
			d:      Domain{Name: "b1", MaxVCPUs: 4, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{skipped(nic(0), "big-only", "4 vCPUs < min_vcpus 8")},
		},
		{
			name: "hardware skips",
			d: Domain{MaxVCPUs: 8, Interfaces: []Interface{
				with(nic(0), func(n *Interface) { n.Model = "e1000" }),
				with(nic(1), func(n *Interface) { n.Model = "" }),
				with(nic(2), func(n *Interface) { n.Type = "user" }),
				with(nic(3), func(n *Interface) { n.Type = "hostdev"; n.Queues = 2 }),
				with(nic(4), func(n *Interface) { n.Type = "ethernet"; n.TargetManaged = "no" }),
				with(nic(5), func(n *Interface) { n.Type = "" }),
			}},
			want: []NICPlan{
				skipped(with(nic(0), func(n *Interface) { n.Model = "e1000" }), "", "model e1000 is not virtio"),
				skipped(with(nic(1), func(n *Interface) { n.Model = "" }), "", "no <model>: libvirt picks a non-virtio default"),
				skipped(with(nic(2), func(n *Interface) { n.Type = "user" }), "", "type user cannot do multiqueue"),
				skipped(with(nic(3), func(n *Interface) { n.Type = "hostdev"; n.Queues = 2 }), "", "type hostdev cannot do multiqueue"),
				skipped(with(nic(4), func(n *Interface) { n.Type = "ethernet" }), "", "pre-created tap (managed='no'): multiqueue needs a tap created with multi_queue; set queues by hand"),
				skipped(with(nic(5), func(n *Interface) { n.Type = "" }), "", "no interface type: cannot do multiqueue"),
			},
		},
		{
			name: "every multiqueue type and virtio model",
			d: Domain{MaxVCPUs: 2, Interfaces: []Interface{
				{Index: 0, Type: "network", Model: "virtio"},
				{Index: 1, Type: "direct", Model: "virtio-transitional"},
				{Index: 2, Type: "ethernet", Model: "virtio-non-transitional"},
				{Index: 3, Type: "ethernet", Model: "virtio", TargetManaged: "yes"},
				{Index: 4, Type: "vhostuser", Model: "virtio"},
			}},
			want: []NICPlan{
				{Index: 0, Type: "network", Model: "virtio", Current: 1, Wanted: 2, Managed: true, GuestStep: true, Combined: 2, Rule: "defaults", Reason: "queues=vcpus → 2"},
				{Index: 1, Type: "direct", Model: "virtio-transitional", Current: 1, Wanted: 2, Managed: true, GuestStep: true, Combined: 2, Rule: "defaults", Reason: "queues=vcpus → 2"},
				{Index: 2, Type: "ethernet", Model: "virtio-non-transitional", Current: 1, Wanted: 2, Managed: true, GuestStep: true, Combined: 2, Rule: "defaults", Reason: "queues=vcpus → 2"},
				{Index: 3, Type: "ethernet", Model: "virtio", Current: 1, Wanted: 2, Managed: true, GuestStep: true, Combined: 2, Rule: "defaults", Reason: "queues=vcpus → 2"},
				{Index: 4, Type: "vhostuser", Model: "virtio", Current: 1, Wanted: 1, Rule: "defaults", Reason: vhostUserReason},
			},
		},
		{
			name:   "fixed count capped at vcpus",
			policy: "defaults: {queues: 4}\n",
			d:      Domain{MaxVCPUs: 2, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 2, 2, "defaults", "queues=4 → 4; vcpus 2 → 2")},
		},
		{
			name:   "allow above vcpus",
			policy: "defaults: {queues: 4, allow_above_vcpus: true}\n",
			d:      Domain{MaxVCPUs: 2, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 4, 4, "defaults", "queues=4 → 4")},
		},
		{
			name:   "vcpu cap beats min",
			policy: "defaults: {min: 4}\n",
			d:      Domain{MaxVCPUs: 2, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 2, 2, "defaults", "queues=vcpus → 2; min 4 → 4; vcpus 2 → 2")},
		},
		{
			name:   "divided and floored by min",
			policy: "defaults: {queues: vcpus/4, min: 2}\n",
			d:      Domain{MaxVCPUs: 3, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 2, 2, "defaults", "queues=vcpus/4 → 1; min 2 → 2")},
		},
		{
			name:   "divided",
			policy: "defaults: {queues: vcpus/2, max: 16}\n",
			d:      Domain{MaxVCPUs: 15, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 7, 7, "defaults", "queues=vcpus/2 → 7")},
		},
		{
			name:   "percent",
			policy: "defaults: {queues: 30%, max: 64}\n",
			d:      Domain{MaxVCPUs: 64, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 19, 19, "defaults", "queues=30% → 19")},
		},
		{
			name:   "percent at least one",
			policy: "defaults: {queues: 10%, min_vcpus: 0}\n",
			d:      Domain{MaxVCPUs: 2, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 1, 1, "defaults", "queues=10% → 1")},
		},
		{
			name:   "combined vcpus capped at N",
			policy: "defaults: {combined: vcpus}\n",
			d:      Domain{MaxVCPUs: 16, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 8, 8, "defaults", "queues=vcpus → 16; max 8 → 8")},
		},
		{
			// N from the maximum, M from the vCPUs online (hot-plug raises it).
			name:   "combined vcpus follows the vCPUs online",
			policy: "defaults: {combined: vcpus}\n",
			d:      Domain{MaxVCPUs: 4, CurrentVCPUs: 2, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 4, 2, "defaults", "queues=vcpus → 4")},
		},
		{
			name:   "combined fixed",
			policy: "defaults: {combined: 2}\n",
			d:      Domain{MaxVCPUs: 16, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 8, 2, "defaults", "queues=vcpus → 16; max 8 → 8")},
		},
		{
			name:   "combined fixed capped at N",
			policy: "defaults: {combined: 6}\n",
			d:      Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 4, 4, "defaults", "queues=vcpus → 4")},
		},
		{
			name:   "no guest step",
			policy: "defaults: {guest_step: false, combined: 2}\n",
			d:      Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 4, 0, "defaults", "queues=vcpus → 4")},
		},
		{
			name:   "budget shared evenly",
			policy: "defaults: {budget: 12}\n",
			d: Domain{MaxVCPUs: 16, Interfaces: []Interface{
				nic(0), with(nic(1), func(n *Interface) { n.Type = "user" }), nic(2), nic(3),
			}},
			want: []NICPlan{
				managed(0, 1, 4, 4, "defaults", "queues=vcpus → 16; max 8 → 8; budget 12 shared by 3 NICs → 4"),
				skipped(with(nic(1), func(n *Interface) { n.Type = "user" }), "", "type user cannot do multiqueue"),
				managed(2, 1, 4, 4, "defaults", "queues=vcpus → 16; max 8 → 8; budget 12 shared by 3 NICs → 4"),
				managed(3, 1, 4, 4, "defaults", "queues=vcpus → 16; max 8 → 8; budget 12 shared by 3 NICs → 4"),
			},
		},
		{
			name:   "budget below NIC count gives each one",
			policy: "defaults: {budget: 2}\n",
			d:      Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0), nic(1), nic(2)}},
			want: []NICPlan{
				managed(0, 1, 1, 1, "defaults", "queues=vcpus → 4; budget 2 shared by 3 NICs → 1"),
				managed(1, 1, 1, 1, "defaults", "queues=vcpus → 4; budget 2 shared by 3 NICs → 1"),
				managed(2, 1, 1, 1, "defaults", "queues=vcpus → 4; budget 2 shared by 3 NICs → 1"),
			},
		},
		{
			name:   "budget beats min; smallest nonzero budget of managed NICs wins",
			policy: "defaults: {min: 4, budget: 0}\nrules:\n  - {name: storage, match: {bridge: br-st}, set: {budget: 6}}\n  - {name: off, match: {bridge: br-off}, exclude: true}\n",
			d: Domain{MaxVCPUs: 8, Interfaces: []Interface{
				nic(0),
				with(nic(1), func(n *Interface) { n.Bridge = "br-st" }),
				with(nic(2), func(n *Interface) { n.Bridge = "br-off" }),
			}},
			want: []NICPlan{
				managed(0, 1, 3, 3, "defaults", "queues=vcpus → 8; budget 6 shared by 2 NICs → 3"),
				managed(1, 1, 3, 3, "storage", "queues=vcpus → 8; budget 6 shared by 2 NICs → 3"),
				skipped(with(nic(2), func(n *Interface) { n.Bridge = "br-off" }), "off", "excluded by rule off"),
			},
		},
		{
			name:   "budget not reached",
			policy: "defaults: {budget: 100}\n",
			d:      Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0), nic(1)}},
			want: []NICPlan{
				managed(0, 1, 4, 4, "defaults", "queues=vcpus → 4"),
				managed(1, 1, 4, 4, "defaults", "queues=vcpus → 4"),
			},
		},
		{
			name:   "first matching rule decides",
			policy: "rules:\n  - {name: first, match: {vcpus: 4-}, set: {max: 2}}\n  - {name: second, match: {vcpus: 4-}, set: {max: 3}}\n",
			d:      Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 2, 2, "first", "queues=vcpus → 4; max 2 → 2")},
		},
		{
			name:   "rule without set shields from later rules",
			policy: "rules:\n  - {name: plain, match: {domain: web*}}\n  - {name: small, set: {max: 2}}\n",
			d:      Domain{Name: "web1", MaxVCPUs: 4, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 4, 4, "plain", "queues=vcpus → 4")},
		},
		{
			name:   "exclude",
			policy: "rules:\n  - {name: appliances, match: {domain: [\"fw-*\", \"lb-*\"]}, exclude: true}\n",
			d:      Domain{Name: "lb-3", MaxVCPUs: 4, Interfaces: []Interface{with(nic(0), func(n *Interface) { n.Queues = 2 })}},
			want:   []NICPlan{skipped(with(nic(0), func(n *Interface) { n.Queues = 2 }), "appliances", "excluded by rule appliances")},
		},
		{
			name:   "exclude does not hide hardware skips",
			policy: "rules:\n  - {name: all, exclude: true}\n",
			d:      Domain{MaxVCPUs: 4, Interfaces: []Interface{with(nic(0), func(n *Interface) { n.Model = "rtl8139" })}},
			want:   []NICPlan{skipped(with(nic(0), func(n *Interface) { n.Model = "rtl8139" }), "", "model rtl8139 is not virtio")},
		},
		{
			name: "NIC-level conditions pick NICs within a domain",
			policy: `rules:
  - {name: by-type, match: {nic_type: network}, set: {max: 1}}
  - {name: by-bridge, match: {bridge: "br-s*"}, set: {max: 2}}
  - {name: by-mac, match: {mac_prefix: "52:54:00:AB"}, set: {max: 3}}
  - {name: any-network, match: {network: "*"}, set: {max: 4}}
`,
			d: Domain{MaxVCPUs: 8, Interfaces: []Interface{
				{Index: 0, Type: "network", Model: "virtio", Network: "default"},
				{Index: 1, Type: "bridge", Model: "virtio", Bridge: "br-storage"},
				{Index: 2, Type: "bridge", Model: "virtio", Bridge: "br0", MAC: "52:54:00:ab:00:01"},
				{Index: 3, Type: "bridge", Model: "virtio", Bridge: "br0", MAC: "52:54:00:cd:00:01"},
			}},
			want: []NICPlan{
				{Index: 0, Type: "network", Model: "virtio", Current: 1, Wanted: 1, Managed: true, GuestStep: true, Combined: 1, Rule: "by-type", Reason: "queues=vcpus → 8; max 1 → 1"},
				{Index: 1, Type: "bridge", Model: "virtio", Current: 1, Wanted: 2, Managed: true, GuestStep: true, Combined: 2, Rule: "by-bridge", Reason: "queues=vcpus → 8; max 2 → 2"},
				{Index: 2, MAC: "52:54:00:ab:00:01", Type: "bridge", Model: "virtio", Current: 1, Wanted: 3, Managed: true, GuestStep: true, Combined: 3, Rule: "by-mac", Reason: "queues=vcpus → 8; max 3 → 3"},
				// A bridge NIC has no source network: network "*" does not match it.
				{Index: 3, MAC: "52:54:00:cd:00:01", Type: "bridge", Model: "virtio", Current: 1, Wanted: 8, Managed: true, GuestStep: true, Combined: 8, Rule: "defaults", Reason: "queues=vcpus → 8"},
			},
		},
		{
			name:   "domain-level conditions all hold",
			policy: "rules:\n  - {name: db, match: {domain: \"db-*\", vcpus: [\"2\", \"8-16\"], os: \"http://debian.org/debian/*\", labels: {tier: \"prod*\", team: \"*\"}}, set: {max: 3}}\n",
			d:      Domain{Name: "db-1", MaxVCPUs: 8, OSID: "http://debian.org/debian/12", Labels: map[string]string{"tier": "production", "team": ""}, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 3, 3, "db", "queues=vcpus → 8; max 3 → 3")},
		},
		{
			name:   "a missing label fails the rule",
			policy: "rules:\n  - {name: db, match: {labels: {tier: \"*\", team: \"*\"}}, set: {max: 3}}\n",
			d:      Domain{MaxVCPUs: 4, Labels: map[string]string{"tier": "x"}, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 4, 4, "defaults", "queues=vcpus → 4")},
		},
		{
			name:   "vcpus range misses",
			policy: "rules:\n  - {name: big, match: {vcpus: \"17-\"}, set: {max: 3}}\n",
			d:      Domain{MaxVCPUs: 16, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 8, 8, "defaults", "queues=vcpus → 16; max 8 → 8")},
		},
		{
			name:   "os glob misses without os metadata",
			policy: "rules:\n  - {name: any-os, match: {os: \"*\"}, set: {max: 3}}\n",
			d:      Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0)}},
			want:   []NICPlan{managed(0, 1, 4, 4, "defaults", "queues=vcpus → 4")},
		},
		{
			name: "no interfaces",
			d:    Domain{Name: "empty", MaxVCPUs: 4},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.policy)
			plan := p.Decide(&tt.d)
			if plan.Domain != tt.d.Name || plan.Mode != ModeApply || plan.OnError != OnErrorAllow {
				t.Errorf("plan header = %q %s %s", plan.Domain, plan.Mode, plan.OnError)
			}
			compareNICs(t, tt.name, plan.NICs, tt.want)
		})
	}
}

func TestDecideModeAndQueues(t *testing.T) {
	p := mustParse(t, "mode: enforce\non_error: deny\n")
	d := &Domain{Name: "x", MaxVCPUs: 4, Interfaces: []Interface{
		nic(0),
		with4(nic(1)),
		{Index: 2, Type: "user", Model: "virtio"},
	}}
	plan := p.Decide(d)
	if plan.Mode != ModeEnforce || plan.OnError != OnErrorDeny {
		t.Errorf("mode, on_error = %s, %s", plan.Mode, plan.OnError)
	}
	if plan.Compliant() {
		t.Error("Compliant() = true with NIC 0 at 1 queue")
	}
	if got := plan.Queues(); len(got) != 1 || got[0] != 4 {
		t.Errorf("Queues() = %v, want map[0:4]", got)
	}
	if plan := p.Decide(nil); plan.Mode != ModeEnforce || plan.NICs != nil {
		t.Errorf("Decide(nil) = %+v", plan)
	}
}

const vhostUserReason = "vhost-user: QEMU refuses to start when the backend supports fewer queues than asked; " +
	"a rule with allow_vhostuser: true opts in"

func with4(n Interface) Interface { n.Queues = 4; return n }

// TestDecideHandBuilt checks that settings no parsed policy can hold (the
// fields are exported through Rules and Defaults) still give sane numbers.
func TestDecideHandBuilt(t *testing.T) {
	p := &Policy{defaults: Settings{Queues: QueuesSetting{QueuesFixed, 1000}, AllowAboveVCPUs: true}}
	plan := p.Decide(&Domain{MaxVCPUs: 2, Interfaces: []Interface{nic(0)}})
	want := []NICPlan{{Index: 0, Type: "bridge", Model: "virtio", Current: 1, Wanted: 256, Managed: true, Rule: "defaults", Reason: "queues=1000 → 1000; tap limit 256 → 256"}}
	compareNICs(t, "tap limit", plan.NICs, want)

	p = &Policy{}
	plan = p.Decide(&Domain{MaxVCPUs: -3, Interfaces: []Interface{with(nic(0), -5)}})
	want = []NICPlan{{Index: 0, Type: "bridge", Model: "virtio", Current: 1, Wanted: 1, Managed: true, Rule: "defaults", Reason: "queues=0 → 1"}}
	compareNICs(t, "zero policy", plan.NICs, want)
}

func with(n Interface, queues int) Interface { n.Queues = queues; return n }

func benchDomain() *Domain {
	return &Domain{
		Name: "web-17", MaxVCPUs: 16, CurrentVCPUs: 8, OSID: "http://debian.org/debian/12",
		Labels: map[string]string{"tier": "web"},
		Interfaces: []Interface{
			{Index: 0, Type: "network", Model: "virtio", Network: "default", MAC: "52:54:00:12:34:56"},
			{Index: 1, Type: "bridge", Model: "virtio", Bridge: "br-storage", MAC: "52:54:00:12:34:57", Queues: 8},
		},
	}
}

func BenchmarkDecide(b *testing.B) {
	p := mustParse(b, `defaults: {budget: 12}
rules:
  - {name: windows, match: {os: "http://microsoft.com/win/*"}, set: {max: 4, guest_step: false}}
  - {name: appliances, match: {domain: ["fw-*", "lb-*"]}, exclude: true}
  - {name: db, match: {labels: {tier: "db*"}, vcpus: "8-"}, set: {max: 16}}
  - {name: storage, match: {bridge: "br-st*"}, set: {queues: vcpus/2}}
`)
	d := benchDomain()
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(d)
	}
}
