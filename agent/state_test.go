package agent

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/policy"
)

func TestDeriveState(t *testing.T) {
	const m = "52:54:00:00:00:01"
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	nic := func(current, wanted int, managed bool) policy.NICPlan {
		n := policy.NICPlan{MAC: m, Current: current, Wanted: wanted, Managed: managed, Rule: "defaults"}
		if managed {
			n.GuestStep, n.Combined = true, wanted
		}
		return n
	}
	running := func(q int) *policy.Domain {
		return &policy.Domain{Interfaces: []policy.Interface{{MAC: m, Queues: q, Alias: "net0"}}}
	}
	persistent := virt.Domain{Name: "web", UUID: "u1", Persistent: true}
	active := virt.Domain{Name: "web", UUID: "u1", Persistent: true, Active: true}
	transient := virt.Domain{Name: "web", UUID: "u1", Active: true}
	learned := status.NIC{MAC: m, QMPVirtqueues: 9, MQ: true, GuestIfName: "eth0", GuestCurrent: 4, GuestMax: 4, GuestStep: guestDone, GuestAt: at}

	for _, tc := range []struct {
		name string
		in   stateInput
		want derived
		// problem, when set, is a part of the problem (want.problem is then ignored).
		problem string
	}{{
		name: "unmanaged",
		in:   stateInput{v: &domainView{d: persistent, plan: policy.Plan{NICs: []policy.NICPlan{nic(1, 1, false)}}}},
		want: derived{state: status.StateUnmanaged, nics: []status.NIC{{MAC: m, Wanted: 1, Defined: 1, Rule: "defaults"}}},
	}, {
		name: "no NIC",
		in:   stateInput{v: &domainView{d: persistent}},
		want: derived{state: status.StateUnmanaged, nics: []status.NIC{}},
	}, {
		name: "transient compliant",
		in:   stateInput{v: &domainView{d: transient, plan: policy.Plan{NICs: []policy.NICPlan{nic(4, 4, true)}}, live: running(4)}},
		want: derived{state: status.StateCompliant, nics: []status.NIC{{MAC: m, Managed: true, Wanted: 4, Defined: 4, Running: 4, GuestWanted: 4, Rule: "defaults"}}},
	}, {
		name:    "transient non-compliant",
		in:      stateInput{v: &domainView{d: transient, plan: policy.Plan{NICs: []policy.NICPlan{nic(1, 4, true)}}, live: running(1)}},
		want:    derived{state: status.StateTransient, nics: []status.NIC{{MAC: m, Managed: true, Wanted: 4, Defined: 1, Running: 1, GuestWanted: 4, Rule: "defaults"}}},
		problem: "transient domain with " + m + " 1→4 queues: virtmq never redefines",
	}, {
		name:    "observe: would redefine, stopped",
		in:      stateInput{v: &domainView{d: persistent, plan: policy.Plan{NICs: []policy.NICPlan{nic(1, 4, true)}}, observe: true}, would: m + " 1→4 queues"},
		want:    derived{state: status.StateWouldRedefine, would: []string{"redefine: " + m + " 1→4 queues"}, nics: []status.NIC{{MAC: m, Managed: true, Wanted: 4, Defined: 1, GuestWanted: 4, Rule: "defaults"}}},
		problem: "mode observe: the agent would redefine it with " + m + " 1→4 queues",
	}, {
		name:    "observe: would redefine, running with 2 queues: the guest step it would run gets what runs",
		in:      stateInput{v: &domainView{d: active, plan: policy.Plan{NICs: []policy.NICPlan{nic(2, 4, true)}}, live: running(2), observe: true}, would: m + " 2→4 queues"},
		want:    derived{state: status.StateWouldRedefine, would: []string{"redefine: " + m + " 2→4 queues", "guest step: set combined 2 on " + m}, nics: []status.NIC{{MAC: m, Managed: true, Wanted: 4, Defined: 2, Running: 2, GuestWanted: 4, Rule: "defaults"}}},
		problem: "mode observe",
	}, {
		name: "observe: compliant and running: only the guest step it would run",
		in:   stateInput{v: &domainView{d: active, plan: policy.Plan{NICs: []policy.NICPlan{nic(4, 4, true)}}, live: running(4), observe: true}},
		want: derived{state: status.StateCompliant, would: []string{"guest step: set combined 4 on " + m}, nics: []status.NIC{{MAC: m, Managed: true, Wanted: 4, Defined: 4, Running: 4, GuestWanted: 4, Rule: "defaults"}}},
	}, {
		name:    "redefined while running: pending cold boot",
		in:      stateInput{v: &domainView{d: active, plan: policy.Plan{NICs: []policy.NICPlan{nic(1, 4, true)}}, live: running(1)}, redefined: true, rewritten: true},
		want:    derived{state: status.StatePendingColdBoot, rewritten: true, nics: []status.NIC{{MAC: m, Managed: true, Wanted: 4, Defined: 4, Running: 1, GuestWanted: 4, Rule: "defaults"}}},
		problem: "running with other queue counts than its definition (" + m + " runs 1, wants 4): applies at the next cold boot",
	}, {
		name: "redefined while shut off: rewritten",
		in:   stateInput{v: &domainView{d: persistent, plan: policy.Plan{NICs: []policy.NICPlan{nic(1, 4, true)}}}, redefined: true, rewritten: true},
		want: derived{state: status.StateRewritten, rewritten: true, nics: []status.NIC{{MAC: m, Managed: true, Wanted: 4, Defined: 4, GuestWanted: 4, Rule: "defaults"}}},
	}, {
		name: "rewritten, then started: compliant, the flag cleared",
		in:   stateInput{v: &domainView{d: active, plan: policy.Plan{NICs: []policy.NICPlan{nic(4, 4, true)}}, live: running(4)}, rewritten: true},
		want: derived{state: status.StateCompliant, nics: []status.NIC{{MAC: m, Managed: true, Wanted: 4, Defined: 4, Running: 4, GuestWanted: 4, Rule: "defaults"}}},
	}, {
		name: "rewritten, running but stopped before the live read: still rewritten",
		in:   stateInput{v: &domainView{d: active, plan: policy.Plan{NICs: []policy.NICPlan{nic(4, 4, true)}}}, rewritten: true},
		want: derived{state: status.StateCompliant, rewritten: true, nics: []status.NIC{{MAC: m, Managed: true, Wanted: 4, Defined: 4, GuestWanted: 4, Rule: "defaults"}}},
	}, {
		name: "running: keeps what the guest step and QMP learned",
		in: stateInput{v: &domainView{d: active, plan: policy.Plan{NICs: []policy.NICPlan{nic(4, 4, true)}}, live: running(4)},
			old: []status.NIC{learned}},
		want: derived{state: status.StateCompliant, nics: []status.NIC{{MAC: m, Managed: true, Wanted: 4, Defined: 4, Running: 4, GuestWanted: 4, Rule: "defaults",
			QMPVirtqueues: 9, MQ: true, GuestIfName: "eth0", GuestCurrent: 4, GuestMax: 4, GuestStep: guestDone, GuestAt: at}}},
	}, {
		name: "shut off: forgets what the guest step learned",
		in:   stateInput{v: &domainView{d: persistent, plan: policy.Plan{NICs: []policy.NICPlan{nic(4, 4, true)}}}, old: []status.NIC{learned}},
		want: derived{state: status.StateCompliant, nics: []status.NIC{{MAC: m, Managed: true, Wanted: 4, Defined: 4, GuestWanted: 4, Rule: "defaults"}}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := deriveState(tc.in)
			if tc.problem != "" {
				if !strings.Contains(got.problem, tc.problem) {
					t.Errorf("problem = %q, want it to contain %q", got.problem, tc.problem)
				}
				got.problem = ""
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("deriveState =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}
