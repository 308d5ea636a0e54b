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
	o := options{LibvirtLatency: time.Millisecond, GuestLatency: time.Millisecond, Polls: 1, Timeout: 30 * time.Second}
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
