//go:build failpoints

package agent

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// TestFailpointCrashConverges crashes the agent at each step boundary of
// the next-reboot path (its loop goroutine ends there, as in a kill -9:
// nothing after the boundary runs) and starts a new agent on the same
// state folder and libvirt: the domain ends up running with its new
// queues, never left off or paused, and no intent is left.
func TestFailpointCrashConverges(t *testing.T) {
	for _, tt := range []struct {
		at string
		// the domain at the crash
		active, paused bool
		queues         int // running queues at the crash (when active)
		starts         int // StartDomain calls by the new agent
	}{
		{fpIntentWritten, true, false, 1, 1}, // at the reboot after
		{fpPaused, true, true, 1, 1},
		{fpDestroyed, false, false, 0, 1},
		{fpStarted, true, false, 4, 0},
	} {
		t.Run(tt.at, func(t *testing.T) {
			h, _ := pendingHarness(t, nextRebootPolicy, nil)
			crashed := make(chan struct{})
			h.agent.fp.mu.Lock()
			h.agent.fp.at = func(name string) {
				if name == tt.at {
					close(crashed)
					runtime.Goexit()
				}
			}
			h.agent.fp.mu.Unlock()
			must(t, h.fake.GuestReboot("web"))
			<-crashed
			h.cancel() // the dead agent's other goroutines
			h.cancel = nil
			if got := h.fake.Active("web"); got != tt.active {
				t.Errorf("at the crash: active = %v, want %v", got, tt.active)
			}
			if got := h.fake.Paused("web"); got != tt.paused {
				t.Errorf("at the crash: paused = %v, want %v", got, tt.paused)
			}
			if tt.active {
				if got := runningQueues(t, h.fake, "web"); got != tt.queues {
					t.Errorf("at the crash: running queues = %d, want %d", got, tt.queues)
				}
			}
			if f := intentFiles(t, h); len(f) != 1 {
				t.Errorf("at the crash: intents %v, want one", f)
			}
			starts := h.fake.Calls(virttest.MethodStartDomain)

			// The dead agent's deferred clean-up may still remove its
			// socket: the new one listens elsewhere.
			h.cfg.StatusSocket = filepath.Join(h.dir, "run", "status2.sock")
			h.cfg.Registry = prometheus.NewPedanticRegistry()
			h.start()
			if tt.at == fpIntentWritten {
				// Never paused: the new agent forgets the intent, and the
				// domain still waits for its next reboot.
				h.waitState("web", status.StatePendingColdBoot)
				must(t, h.fake.GuestReboot("web"))
			}
			h.waitState("web", status.StateCompliant)
			h.settle()
			if !h.fake.Active("web") || h.fake.Paused("web") {
				t.Error("web is not running")
			}
			if got := runningQueues(t, h.fake, "web"); got != 4 {
				t.Errorf("running queues = %d, want 4", got)
			}
			if n := h.fake.Calls(virttest.MethodStartDomain) - starts; n != tt.starts {
				t.Errorf("start calls by the new agent = %d, want %d", n, tt.starts)
			}
			if f := intentFiles(t, h); len(f) != 0 {
				t.Errorf("intents left: %v", f)
			}
		})
	}
}

// TestFailpointsFromEnv: the environment arms failpoints by name.
func TestFailpointsFromEnv(t *testing.T) {
	fp := newFailpoints(func(k string) string {
		if k == FailpointsEnv {
			return "reboot-paused=crash, reboot-destroyed=sleep:1ms"
		}
		return ""
	}, func(string, ...any) {})
	if fp.armed[fpPaused] != "crash" || fp.armed[fpDestroyed] != "sleep:1ms" || len(fp.armed) != 2 {
		t.Errorf("armed = %v", fp.armed)
	}
}
