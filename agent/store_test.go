package agent

import (
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/status"
)

// TestStoreStateSince: the store stamps StateSince when, and only when, a
// domain's state changes (the metric for "pending a cold boot for N days"
// reads it).
func TestStoreStateSince(t *testing.T) {
	now := time.Unix(1e9, 0)
	s := newStore("test", func() time.Time { return now })
	set := func(state string) {
		s.update("u1", func(r *record) { r.st.State = state })
	}
	since := func() time.Time {
		var at time.Time
		s.updateIfKnown("u1", func(r *record) { at = r.st.StateSince })
		return at
	}
	set(status.StatePendingColdBoot)
	if got := since(); !got.Equal(now) {
		t.Fatalf("StateSince = %v, want %v", got, now)
	}
	t0 := now
	now = now.Add(time.Hour)
	set(status.StatePendingColdBoot)
	if got := since(); !got.Equal(t0) {
		t.Errorf("StateSince moved to %v on an update that kept the state, want %v", got, t0)
	}
	set(status.StateCompliant)
	if got := since(); !got.Equal(now) {
		t.Errorf("StateSince = %v after a state change, want %v", got, now)
	}
}
