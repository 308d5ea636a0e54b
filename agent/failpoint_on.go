//go:build failpoints

package agent

import (
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FailpointsEnv names the failpoints a failpoints build honours, as a
// comma-separated list of NAME=ACTION: ACTION "crash" kills the process
// with SIGKILL at that boundary (a crash: no deferred function runs, no
// state is flushed), "sleep:DURATION" stalls the agent there (while a
// test restarts libvirtd under it, say). Each fires once per process.
// Example: VIRTMQ_FAILPOINTS=reboot-paused=crash
const FailpointsEnv = "VIRTMQ_FAILPOINTS"

// failpoints holds the armed failpoints of this process.
type failpoints struct {
	mu    sync.Mutex
	armed map[string]string // name → action
	// at, when set (tests), is called instead of the action.
	at func(name string)
}

func newFailpoints(getenv func(string) string, warn func(msg string, args ...any)) *failpoints {
	fp := &failpoints{armed: map[string]string{}}
	for _, kv := range strings.Split(getenv(FailpointsEnv), ",") {
		name, action, _ := strings.Cut(strings.TrimSpace(kv), "=")
		switch {
		case name == "":
		case !knownFailpoint(name):
			warn("unknown failpoint ignored", "name", name)
		default:
			fp.armed[name] = action
			warn("failpoint armed", "name", name, "action", action)
		}
	}
	return fp
}

// failpoint fires the named failpoint if it is armed (once).
func (a *Agent) failpoint(name string) {
	fp := a.fp
	fp.mu.Lock()
	at := fp.at
	action, ok := fp.armed[name]
	delete(fp.armed, name)
	fp.mu.Unlock()
	if at != nil {
		at(name)
		return
	}
	if !ok {
		return
	}
	a.log.Warn("failpoint", "name", name, "action", action)
	switch {
	case action == "crash":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	case strings.HasPrefix(action, "sleep:"):
		if d, err := time.ParseDuration(strings.TrimPrefix(action, "sleep:")); err == nil {
			time.Sleep(d)
		}
	}
}

// knownFailpoint reports whether name is one of the boundaries above.
func knownFailpoint(name string) bool {
	switch name {
	case fpIntentWritten, fpPaused, fpDestroyed, fpStarted:
		return true
	}
	return false
}
