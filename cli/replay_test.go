package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/verify/verifytest"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// recordedDir holds replies recorded on the real stack by e2e/smoke.sh --record
// (libvirt 9.0, QEMU 7.2, TCG, qemu-ga 7.2 in a Debian 6.1 guest); see its README.
const recordedDir = "../internal/testdata/recorded"

// recorded reads one recorded reply. The recordings are checked in: a
// missing one fails the test rather than skipping what it proves.
func recorded(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(recordedDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// replayAgent answers guest agent commands with the recorded replies, as
// libvirt returns them: a program that was not recorded fails the way
// qemu-ga reports a missing file through libvirt.
type replayAgent struct {
	t     *testing.T
	mu    sync.Mutex
	execs map[int]string // pid -> recording name
	calls []string
}

func (a *replayAgent) command(_ context.Context, _ virt.Domain, cmd []byte, _ time.Duration) ([]byte, error) {
	var c struct {
		Execute   string `json:"execute"`
		Arguments struct {
			Path string   `json:"path"`
			Arg  []string `json:"arg"`
			PID  int      `json:"pid"`
		} `json:"arguments"`
	}
	if err := json.Unmarshal(cmd, &c); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, strings.TrimSpace(c.Execute+" "+c.Arguments.Path+" "+strings.Join(c.Arguments.Arg, " ")))
	switch c.Execute {
	case "guest-info", "guest-get-osinfo", "guest-network-get-interfaces":
		return recorded(a.t, c.Execute+".json"), nil
	case "guest-exec":
		argv := c.Arguments.Path + " " + strings.Join(c.Arguments.Arg, " ")
		var name string
		switch argv {
		case "/usr/sbin/ethtool -l eth0":
			name = "ethtool-l"
		case "/bin/cat /proc/interrupts":
			name = "cat-proc-interrupts"
		default:
			return nil, fmt.Errorf("internal error: unable to execute QEMU agent command 'guest-exec': "+
				"Guest agent command failed, error was 'Failed to execute child process “%s” (No such file or directory)'", c.Arguments.Path)
		}
		reply := recorded(a.t, "guest-exec."+name+".json")
		var r struct {
			Return struct {
				PID int `json:"pid"`
			} `json:"return"`
		}
		if err := json.Unmarshal(reply, &r); err != nil {
			return nil, err
		}
		a.execs[r.Return.PID] = name
		return reply, nil
	case "guest-exec-status":
		name, ok := a.execs[c.Arguments.PID]
		if !ok {
			return nil, errors.New("internal error: unable to execute QEMU agent command 'guest-exec-status': Invalid parameter 'pid'")
		}
		delete(a.execs, c.Arguments.PID)
		return recorded(a.t, "guest-exec-status."+name+".json"), nil
	}
	return nil, fmt.Errorf("replay: %s was not recorded", c.Execute)
}

// TestVerifyReplay runs verify on the recorded domain, QMP, tap and guest
// replies. The tap was recorded after "ethtool -L eth0 combined 2" and
// ethtool -l before it, so verify must see the guest using 2 of 4 queues
// on the host side while the policy wants 4.
func TestVerifyReplay(t *testing.T) {
	inactive := recorded(t, "dumpxml-inactive.xml")
	live := recorded(t, "dumpxml-live.xml")
	status := recorded(t, "x-query-virtio-status.net0.json")
	ipOut := recorded(t, "ip-d-link-show-tap.txt")

	fake := virttest.New()
	d, err := fake.Define(inactive)
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.Start(d.Name); err != nil {
		t.Fatal(err)
	}
	if err := fake.SetLiveXML(d.Name, live); err != nil {
		t.Fatal(err)
	}
	fake.SetMonitor(func(_ context.Context, _ virt.Domain, cmd []byte) ([]byte, error) {
		if strings.Contains(string(cmd), `"x-query-virtio-status"`) && strings.Contains(string(cmd), "/machine/peripheral/net0/virtio-backend") {
			return status, nil
		}
		return nil, fmt.Errorf("replay: QMP %s was not recorded", cmd)
	})
	agent := &replayAgent{t: t, execs: map[int]string{}}
	fake.SetAgent(agent.command)

	h := verifytest.NewHost(t, d.Name, false, 0) // recorded without vhost-net
	h.SetIPOutput("vnet0", string(ipOut))

	code, r := runVerifyTest(t, fake, h.Host, d.Name)
	if code != ExitFailure {
		t.Errorf("exit %d, want %d; stderr:\n%s", code, ExitFailure, r.stderr)
	}
	want := []string{
		"verify virtmq-e2e-smoke (policy testdata/policy.yaml)",
		"OK   host: libvirt answers a capabilities call in 0s",
		"OK   52:54:00:b4:f7:07 running queues 4 = wanted 4",
		"OK   52:54:00:b4:f7:07 QMP num-vqs 9: queue pairs 4 = wanted 4",
		"OK   52:54:00:b4:f7:07 QMP guest negotiated VIRTIO_NET_F_MQ",
		"OK   52:54:00:b4:f7:07 tap vnet0 queues 4 = wanted 4",
		"FAIL 52:54:00:b4:f7:07 tap vnet0 active queues 2 != wanted combined 4 (numqueues 2 numdisabled 2: the guest uses 2)",
		"OK   guest eth0 combined 4 = wanted 4",
		"OK   guest eth0 max combined 4 = queues 4",
		"OK   guest eth0 virtio interrupts: 4 input, 4 output = queues 4",
		"SKIP vhost workers: no " + h.Host.DevRoot + "/vhost-net on this host: QEMU uses userspace virtio-net",
		"virtmq-e2e-smoke does NOT comply with the policy: 8 OK, 1 FAIL, 1 SKIP",
	}
	if got := strings.TrimSpace(r.stdout.String()); got != strings.Join(want, "\n") {
		t.Errorf("report:\n%s\nwant:\n%s\nagent calls: %q", got, strings.Join(want, "\n"), agent.calls)
	}
}

// TestVerifyReplayExecBlocked replays a guest whose qemu-ga blocks guest-exec.
func TestVerifyReplayExecBlocked(t *testing.T) {
	info := recorded(t, "guest-info.qga-block-guest-exec.json")
	live := recorded(t, "dumpxml-live.xml")
	fake := virttest.New()
	d, err := fake.Define(recorded(t, "dumpxml-inactive.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.Start(d.Name); err != nil {
		t.Fatal(err)
	}
	if err := fake.SetLiveXML(d.Name, live); err != nil {
		t.Fatal(err)
	}
	blocked := strings.TrimPrefix(strings.TrimSpace(string(recorded(t, "guest-exec.blocked.error.txt"))), "error: ")
	fake.SetAgent(func(_ context.Context, _ virt.Domain, cmd []byte, _ time.Duration) ([]byte, error) {
		switch {
		case strings.Contains(string(cmd), `"guest-info"`):
			return info, nil
		case strings.Contains(string(cmd), `"guest-exec"`):
			return nil, errors.New(blocked)
		case strings.Contains(string(cmd), `"guest-get-osinfo"`):
			return recorded(t, "guest-get-osinfo.json"), nil
		case strings.Contains(string(cmd), `"guest-network-get-interfaces"`):
			return recorded(t, "guest-network-get-interfaces.json"), nil
		}
		return nil, fmt.Errorf("replay: %s was not recorded", cmd)
	})
	h := verifytest.NewHost(t, d.Name, false, 0)
	h.SetTap("vnet0", 4, 0)

	code, r := runVerifyTest(t, fake, h.Host, d.Name)
	wantLines(t, "report", r.stdout.String(),
		"SKIP 52:54:00:b4:f7:07 guest: ", "guest-exec is disabled by the guest's qemu-ga policy")
	wantNot(t, "report", r.stdout.String(), "FAIL 52:54:00:b4:f7:07 guest")
	if code != ExitOK {
		t.Errorf("exit %d, want %d (QMP is unscripted: SKIP); report:\n%s\nstderr:\n%s", code, ExitOK, r.stdout, r.stderr)
	}
}

// TestApplyReplay applies policies to the recorded definition: the
// shipped-like test policy finds it compliant; a policy capping N at 2
// rewrites exactly its <driver> line.
func TestApplyReplay(t *testing.T) {
	inactive := recorded(t, "dumpxml-inactive.xml")
	fake := virttest.New()
	d, err := fake.Define(inactive)
	if err != nil {
		t.Fatal(err)
	}
	line := 1 + strings.Count(string(inactive[:strings.Index(string(inactive), "<driver queues='4'/>")]), "\n")

	r := newTestRun(t, fake, nil)
	if code := Main(context.Background(), r.env, []string{"apply", "--policy", testPolicy, d.Name}); code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, r.stderr)
	}
	wantLines(t, "apply", r.stdout.String(), "queues 4 (complies)", "nothing to redefine")

	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte("version: 1\ndefaults:\n  max: 2\n  hand_set: override # captured before virtmq kept a record\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = newTestRun(t, fake, nil)
	if code := Main(context.Background(), r.env, []string{"apply", "--dry-run", "--policy", pol, d.Name}); code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, r.stderr)
	}
	wantLines(t, "apply", r.stdout.String(), "queues 4 -> 2", "max 2 → 2",
		"+  4    <metadata>", "<virtmq:nic mac='52:54:00:b4:f7:07' nth='1' queues='2'/>",
		fmt.Sprintf("  - %d        <driver queues='4'/>\n  + %d        <driver queues='2'/>\n  dry run: would redefine.", line, line+5))
}
