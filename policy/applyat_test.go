package policy

import (
	"strings"
	"testing"
)

func TestApplyAt(t *testing.T) {
	for _, tt := range []struct {
		name, policy string
		d            Domain
		want         ApplyAt
	}{
		{"built-in default", "", Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0)}}, ApplyNextReboot},
		{"cold-boot", "defaults: {apply_at: cold-boot}\n", Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0)}}, ApplyColdBoot},
		// The built-in default is next-reboot: the cases below start from
		// cold-boot so that they fail when the setting is not read.
		{"a rule's set over cold-boot defaults",
			"defaults: {apply_at: cold-boot}\nrules:\n  - {name: web, match: {domain: \"web*\"}, set: {apply_at: next-reboot}}\n",
			Domain{Name: "web1", MaxVCPUs: 4, Interfaces: []Interface{nic(0)}}, ApplyNextReboot},
		{
			"a rule sets cold-boot over the defaults",
			"defaults: {apply_at: next-reboot}\nrules:\n  - {name: db, match: {domain: \"db*\"}, set: {apply_at: cold-boot}}\n",
			Domain{Name: "db1", MaxVCPUs: 4, Interfaces: []Interface{nic(0)}}, ApplyColdBoot,
		},
		{
			"any managed NIC asking for it wins",
			"defaults: {apply_at: cold-boot}\nrules:\n  - {name: one, match: {bridge: br1}, set: {apply_at: next-reboot}}\n",
			Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0), {Index: 1, Type: "bridge", Model: "virtio", Bridge: "br1"}}}, ApplyNextReboot,
		},
		{
			"no managed NIC asking for it",
			"defaults: {apply_at: cold-boot}\nrules:\n  - {name: one, match: {bridge: br1}, set: {apply_at: next-reboot}}\n",
			Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0)}}, ApplyColdBoot,
		},
		{"nothing managed", "defaults: {apply_at: next-reboot}\n", Domain{MaxVCPUs: 1, Interfaces: []Interface{nic(0)}}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParse(t, tt.policy).Decide(&tt.d).ApplyAt; got != tt.want {
				t.Errorf("ApplyAt = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestApplyAtInvalid(t *testing.T) {
	_, err := Parse("p.yaml", []byte("version: 1\ndefaults:\n  apply_at: reboot\n"))
	if err == nil || !strings.Contains(err.Error(), `p.yaml:3:13: defaults.apply_at: "reboot" is not one of cold-boot, next-reboot`) {
		t.Fatalf("err = %v", err)
	}
}
