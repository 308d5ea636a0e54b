package status

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestZeroTimesOmitted: a time not known yet (never connected, no action,
// no guest step) is left out of the JSON, not written as year 1.
func TestZeroTimesOmitted(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	out, err := json.Marshal(Snapshot{Generated: now, Policy: Policy{LoadedAt: now}, Domains: []Domain{{Name: "vm", NICs: []NIC{{MAC: "52:54:00:00:00:01"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"since"`, `"last_action_at"`, `"guest_at"`, `"state_since"`, "0001-01-01"} {
		if strings.Contains(string(out), key) {
			t.Errorf("zero-valued snapshot has %s: %s", key, out)
		}
	}
}
