package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// excludeDB is a drop-in that keeps virtmq away from db1.
const excludeDB = "rules:\n  - name: no-db\n    match: {domain: [db1]}\n    exclude: true\n"

// newDefaultPathHarness runs the agent the way a host does: no --policy,
// the policy at the default path, optionally with drop-ins.
// mainFile is the main policy file's content; "" means none.
func newDefaultPathHarness(t *testing.T, mainFile string, dropIns map[string]string) *harness {
	t.Helper()
	h := newHarness(t)
	h.cfg.DefaultPolicyPath = filepath.Join(h.dir, "etc", "policy.yaml")
	must(t, os.MkdirAll(filepath.Join(h.dir, "etc", "policy.d"), 0o755))
	if mainFile != "" {
		must(t, os.WriteFile(h.cfg.DefaultPolicyPath, []byte(mainFile), 0o644))
	}
	for name, body := range dropIns {
		must(t, os.WriteFile(filepath.Join(h.dir, "etc", "policy.d", name), []byte(body), 0o644))
	}
	h.cfg.PolicyPath = ""
	return h
}

// reloadFails sends SIGHUP and waits until the status reports a reload
// error; it checks that the policy in force did not change.
func (h *harness) reloadFails(want string) status.Snapshot {
	h.t.Helper()
	old := h.agent.Snapshot().Policy
	h.reload <- syscall.SIGHUP
	s := h.waitFor("reload error", func(s status.Snapshot) bool { return s.Policy.LastReloadError != "" })
	if !strings.Contains(s.Policy.LastReloadError, want) {
		h.t.Errorf("LastReloadError = %q, want %q in it", s.Policy.LastReloadError, want)
	}
	if ok := testutil.ToFloat64(h.agent.metrics.reloadOK); ok != 0 {
		h.t.Errorf("virtmq_policy_last_reload_successful = %v after a failed reload, want 0", ok)
	}
	if at := testutil.ToFloat64(h.agent.metrics.reloadTime); at != float64(old.LoadedAt.UnixNano())/1e9 {
		h.t.Errorf("virtmq_policy_last_reload_success_timestamp_seconds = %v, want the last good load %v", at, old.LoadedAt)
	}
	if strings.Join(s.Policy.Sources, " ") != strings.Join(old.Sources, " ") || s.Policy.Mode != old.Mode || !s.Policy.LoadedAt.Equal(old.LoadedAt) {
		h.t.Errorf("policy after failed reload = %+v, was %+v", s.Policy, old)
	}
	h.settle()
	return s
}

// TestReloadPolicyVanished: when /etc/virtmq/policy.yaml disappears and the
// agent gets SIGHUP, it keeps the last good policy and reports the error;
// it used to switch to the built-in default, drop the drop-ins (db1's
// exclude among them) and redefine every domain.
func TestReloadPolicyVanished(t *testing.T) {
	t.Run("drop-ins left", func(t *testing.T) {
		h := newDefaultPathHarness(t, testPolicy, map[string]string{"50-db.yaml": excludeDB})
		mustDefine(t, h.fake, domainXML("db1", 4, 0, mac(1)))
		h.start()
		defines := h.fake.Calls(virttest.MethodDefineXML)

		must(t, os.Remove(h.cfg.DefaultPolicyPath))
		h.reloadFails("missing")
		if n := h.fake.Calls(virttest.MethodDefineXML); n != defines {
			t.Errorf("DefineXML calls = %d after a failed reload, want %d", n, defines)
		}
		if doc, _ := h.fake.InactiveXML("db1"); bytes.Contains(doc, []byte("queues=")) {
			t.Errorf("excluded db1 redefined after the policy vanished:\n%s", doc)
		}
		if !h.notes.has("policy reload failed") {
			t.Errorf("STATUS= does not say the reload failed: %q", h.notes.list())
		}

		// Restoring the file recovers.
		must(t, os.WriteFile(h.cfg.DefaultPolicyPath, []byte(testPolicy), 0o644))
		h.reload <- syscall.SIGHUP
		h.waitFor("reloaded", func(s status.Snapshot) bool { return s.Policy.LastReloadError == "" })
		if ok := testutil.ToFloat64(h.agent.metrics.reloadOK); ok != 1 {
			t.Errorf("virtmq_policy_last_reload_successful = %v after a good reload, want 1", ok)
		}
	})
	t.Run("no drop-ins", func(t *testing.T) {
		// Loaded from disk once: the built-in default is never taken on a
		// reload.
		// max: 2 here, 8 in the built-in default: web1 would go to 4.
		h := newDefaultPathHarness(t, strings.Replace(testPolicy, "max: 8", "max: 2", 1), nil)
		mustDefine(t, h.fake, domainXML("web1", 4, 2, mac(2)))
		h.start()
		defines := h.fake.Calls(virttest.MethodDefineXML)
		must(t, os.Remove(h.cfg.DefaultPolicyPath))
		h.reloadFails("restart virtmq-agent to use the built-in default")
		if n := h.fake.Calls(virttest.MethodDefineXML); n != defines {
			t.Errorf("DefineXML calls = %d after a failed reload, want %d", n, defines)
		}
		if doc, _ := h.fake.InactiveXML("web1"); !bytes.Contains(doc, []byte("queues='2'")) {
			t.Errorf("web1 redefined after the policy vanished:\n%s", doc)
		}
	})
	t.Run("explicit path", func(t *testing.T) {
		h := newHarness(t).start()
		must(t, os.Remove(h.cfg.PolicyPath))
		h.reloadFails("missing")
	})
	t.Run("never loaded from disk", func(t *testing.T) {
		// A host with no policy runs the built-in default and keeps it on
		// a reload; a policy written later takes over.
		h := newDefaultPathHarness(t, "", nil).start()
		if s := h.agent.Snapshot().Policy; len(s.Sources) != 1 || !strings.Contains(s.Sources[0], "embedded") {
			t.Fatalf("sources = %q, want the built-in default", s.Sources)
		}
		loaded := h.agent.Snapshot().Policy.LoadedAt
		h.reload <- syscall.SIGHUP
		h.waitFor("reloaded", func(s status.Snapshot) bool { return s.Policy.LoadedAt.After(loaded) })
		if e := h.agent.Snapshot().Policy.LastReloadError; e != "" {
			t.Errorf("LastReloadError = %q", e)
		}
		must(t, os.WriteFile(h.cfg.DefaultPolicyPath, []byte(testPolicy), 0o644))
		h.reload <- syscall.SIGHUP
		h.waitFor("policy from disk", func(s status.Snapshot) bool {
			return len(s.Policy.Sources) == 1 && s.Policy.Sources[0] == h.cfg.DefaultPolicyPath
		})
	})
	t.Run("drop-ins without a main file at start", func(t *testing.T) {
		h := newDefaultPathHarness(t, "", map[string]string{"50-db.yaml": excludeDB})
		a, err := New(h.cfg)
		must(t, err)
		// Run returns at once with the error; were it to start, the
		// deadline ends it.
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		if err := a.Run(ctx); err == nil || !strings.Contains(err.Error(), "holds drop-ins") {
			t.Errorf("Run = %v, want a missing-policy error", err)
		}
	})
}
