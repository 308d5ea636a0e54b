package policy

import (
	"maps"
	"testing"
)

func TestQueuesByMAC(t *testing.T) {
	d := &Domain{Interfaces: []Interface{
		{MAC: "52:54:00:00:00:01", Queues: 4},
		{MAC: "52:54:00:00:00:02"}, // no <driver queues>: one pair
		{Queues: 8},                // no MAC: left out
	}}
	want := map[string]int{"52:54:00:00:00:01": 4, "52:54:00:00:00:02": 1}
	if got := d.QueuesByMAC(); !maps.Equal(got, want) {
		t.Errorf("QueuesByMAC() = %v, want %v", got, want)
	}
}
