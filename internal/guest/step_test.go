package guest_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/guest/guesttest"
	"github.com/virtmq/virtmq/policy"
)

func TestTargets(t *testing.T) {
	plan := policy.Plan{NICs: []policy.NICPlan{
		{MAC: "a", Managed: true, GuestStep: true, Combined: 4},  // runs 2: M clamped to 2
		{MAC: "b", Managed: true, GuestStep: true, Combined: 4},  // runs 1: nothing to set
		{MAC: "c", Managed: true, GuestStep: true, Combined: 4},  // hot-unplugged: not running
		{MAC: "d", Managed: false, GuestStep: true, Combined: 4}, // left alone
		{MAC: "e", Managed: true, GuestStep: false},              // guest step off
		{MAC: "f", Managed: true, GuestStep: true, Combined: 3},  // runs 8
	}}
	got := guest.Targets(plan, map[string]int{"a": 2, "b": 1, "d": 4, "e": 4, "f": 8})
	want := []guest.Target{{MAC: "a", Combined: 2}, {MAC: "b", Combined: 1, OneQueue: true}, {MAC: "f", Combined: 3}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Targets = %+v, want %+v", got, want)
	}
}

// stepWith runs Step with a configure answering errs by MAC and returns
// the MACs configure was called for, the outcomes reported and retry.
func stepWith(ctx context.Context, targets []guest.Target, errs map[string]error) (called []string, outcomes []guest.Outcome, retry bool) {
	configure := func(_ context.Context, _ guest.Agent, mac string, combined int, _ guest.Options) (guest.Result, error) {
		called = append(called, fmt.Sprintf("%s=%d", mac, combined))
		return guest.Result{}, errs[mac]
	}
	retry = guest.Step(ctx, nil, targets, guest.Options{}, configure, nil, func(o guest.Outcome) { outcomes = append(outcomes, o) })
	return called, outcomes, retry
}

func TestStep(t *testing.T) {
	ts := []guest.Target{{MAC: "a", Combined: 2}, {MAC: "b", Combined: 1, OneQueue: true}, {MAC: "c", Combined: 4}, {MAC: "d", Combined: 4}}
	ctx := context.Background()

	called, outs, retry := stepWith(ctx, ts, map[string]error{"c": guest.ErrNoEthtool})
	if want := []string{"a=2", "c=4", "d=4"}; !reflect.DeepEqual(called, want) || len(outs) != 4 || retry {
		t.Errorf("no_ethtool on c: called %v (want %v), %d outcomes, retry %v", called, want, len(outs), retry)
	}
	if outs[2].Class.Reason != guest.ReasonNoEthtool {
		t.Errorf("c's outcome = %+v", outs[2])
	}

	// A reason that holds for the whole domain stops the step.
	called, outs, retry = stepWith(ctx, ts, map[string]error{"a": fmt.Errorf("guest-info: %w", guest.ErrTimeout)})
	if want := []string{"a=2"}; !reflect.DeepEqual(called, want) || len(outs) != 1 || !retry {
		t.Errorf("timeout on a: called %v (want %v), %d outcomes, retry %v", called, want, len(outs), retry)
	}

	// An unclassified error is retried, the other NICs still tried.
	_, outs, retry = stepWith(ctx, ts, map[string]error{"c": errors.New("boom")})
	if len(outs) != 4 || !retry {
		t.Errorf("error on c: %d outcomes, retry %v", len(outs), retry)
	}

	// Cancelled: no outcome for the NIC whose command it cut, no retry.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, outs, retry = stepWith(cctx, ts, map[string]error{"a": context.Canceled})
	if len(outs) != 0 || retry {
		t.Errorf("cancelled: %d outcomes, retry %v", len(outs), retry)
	}
}

// A domain's NICs share one qemu-ga: its facts (guest-info,
// guest-get-osinfo) are asked once per step, not once per NIC.
func TestStepAsksAgentFactsOnce(t *testing.T) {
	const mac2 = "52:54:00:12:34:57"
	g, et := debian(1)
	g.Interfaces = append(g.Interfaces, guesttest.Interface{Name: "eth1", MAC: mac2})
	et.NICs["eth1"] = &guest.Channels{Max: 4, Current: 1}
	var outs []guest.Outcome
	guest.Step(context.Background(), g.Agent(), []guest.Target{{MAC: mac, Combined: 4}, {MAC: mac2, Combined: 2}}, fast, guest.Configure, nil,
		func(o guest.Outcome) { outs = append(outs, o) })
	if len(outs) != 2 || outs[0].Err != nil || outs[1].Err != nil || et.NICs["eth0"].Current != 4 || et.NICs["eth1"].Current != 2 {
		t.Fatalf("outcomes %+v; guest %+v %+v", outs, et.NICs["eth0"], et.NICs["eth1"])
	}
	count := map[string]int{}
	for _, c := range g.Calls() {
		count[strings.Fields(c)[0]]++
	}
	if count["guest-info"] != 1 || count["guest-get-osinfo"] != 1 || count["guest-network-get-interfaces"] != 2 {
		t.Errorf("commands sent: %v; want guest-info and guest-get-osinfo once, the interfaces per NIC", count)
	}
}
