package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestStormSmall runs the benchmark's scenario with a few domains, so that
// `go test ./...` keeps it working.
func TestStormSmall(t *testing.T) {
	o := options{LibvirtLatency: time.Millisecond, GuestLatency: time.Millisecond, Workers: 20, ClientRequests: 5, Polls: 1, Timeout: 30 * time.Second}
	res, err := runStorm(6, o, 50*time.Millisecond, profiles{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Domains != 6 || res.AllReconciledS <= 0 || res.AllRewrittenS <= 0 || res.AllRewrittenS > res.AllReconciledS ||
		res.CPUS <= 0 || res.PeakRSSMiB <= 0 || res.GuestCommands < 6*12 || res.Idle == nil || res.Idle.Seconds < 0.05 {
		t.Errorf("result = %+v (idle %+v)", res, res.Idle)
	}
	var b bytes.Buffer
	printTable(&b, report{Settings: o, Storms: []storm{res}, Idle: res.Idle})
	if !strings.Contains(b.String(), "idle after converging, 6 domains") {
		t.Errorf("table:\n%s", b.String())
	}
}

// TestHostileSmall runs the hostile scenario briefly: a well-behaved
// domain is served beside stalling, many-interface and reconnecting guests.
func TestHostileSmall(t *testing.T) {
	o := options{LibvirtLatency: time.Millisecond, GuestLatency: time.Millisecond, Workers: 20, ClientRequests: 5}
	res, err := runHostile(o, hostileOptions{Stall: 2, Many: 1, Reconnect: 1, Good: 2, Every: 100 * time.Millisecond, Cap: 20 * time.Second, ManyInterfaces: 500})
	if err != nil {
		t.Fatal(err)
	}
	if res.NotDone != 0 || len(res.WaitsS) != 2 {
		t.Errorf("result = %+v", res)
	}
	var b bytes.Buffer
	printHostile(&b, res)
	if !strings.Contains(b.String(), "hostile_wait_p95_s=") {
		t.Errorf("output:\n%s", b.String())
	}
}
