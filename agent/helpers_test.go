package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// testPolicy is the policy most tests run with: N = vCPUs up to 8, M = N.
const testPolicy = `version: 1
mode: apply
defaults:
  queues: vcpus
  max: 8
  min_vcpus: 2
  guest_step: true
  combined: queues
`

// harness runs one agent against the fake libvirt.
type harness struct {
	t      testing.TB
	fake   *virttest.Conn
	agent  *Agent
	cfg    Config
	reload chan os.Signal
	notes  *notes
	done   chan error
	cancel context.CancelFunc
	dir    string
}

// notes records the systemd notifications.
type notes struct {
	mu  sync.Mutex
	all []string
}

func (n *notes) notify(s string) error {
	n.mu.Lock()
	n.all = append(n.all, s)
	n.mu.Unlock()
	return nil
}

func (n *notes) list() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.all...)
}

func (n *notes) has(prefix string) bool {
	for _, s := range n.list() {
		if strings.Contains(s, prefix) {
			return true
		}
	}
	return false
}

// shortDir returns a temporary directory with a path short enough for a
// unix socket (108 bytes), removed at the end of the test.
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vmq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// newHarness prepares an agent; edit h.cfg, then call start.
func newHarness(t testing.TB) *harness {
	t.Helper()
	dir := shortDir(t)
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(testPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	fake := virttest.New()
	h := &harness{t: t, fake: fake, reload: make(chan os.Signal, 1), notes: &notes{}, dir: dir}
	h.cfg = Config{
		PolicyPath:        pol,
		DefaultPolicyPath: filepath.Join(dir, "none.yaml"),
		Getenv:            func(string) string { return "" },
		StatusSocket:      filepath.Join(dir, "run", "status.sock"),
		StateDir:          filepath.Join(dir, "state"),
		Concurrency:       4,
		GuestTimeout:      5 * time.Second,
		GuestRetryDelay:   5 * time.Millisecond,
		CallTimeout:       5 * time.Second,
		ReconnectMin:      time.Millisecond,
		ReconnectMax:      20 * time.Millisecond,
		RetryMin:          time.Millisecond,
		RetryMax:          20 * time.Millisecond,
		Reload:            h.reload,
		Logger:            testLogger(t),
		Notify:            h.notes.notify,
		Watchdog:          func() (time.Duration, error) { return 0, nil },
		Registry:          prometheus.NewPedanticRegistry(),
		Dial:              fake.Dial,
		GuestStep: func(context.Context, guest.Agent, string, int, guest.Options) (guest.Result, error) {
			return guest.Result{}, errors.New("no guest step in this test")
		},
	}
	return h
}

// start runs the agent and waits until it reconciled after connecting.
func (h *harness) start() *harness {
	h.t.Helper()
	// The first resync ends with a STATUS= counting the domains: wait for
	// it, so that a domain the test defines next comes as an event, not
	// in the resync's list too (a second reconcile the test does not expect).
	resynced := make(chan struct{})
	var once sync.Once
	notify := h.cfg.Notify
	cfg := h.cfg
	cfg.Notify = func(state string) error {
		if strings.Contains(state, "connected to libvirt at ") && strings.Contains(state, " domains") {
			once.Do(func() { close(resynced) })
		}
		if notify == nil {
			return nil
		}
		return notify(state)
	}
	a, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
	h.t.Cleanup(h.stop)
	h.waitFor("connected", func(s status.Snapshot) bool { return s.Libvirt.Connected })
	select {
	case <-resynced:
	case <-time.After(10 * time.Second):
		h.t.Fatal("the agent's first resync did not end")
	}
	h.settle()
	return h
}

// stop stops the agent and checks that Run returned nil.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Errorf("Run did not return after cancel")
	}
}

// waitFor polls the agent's snapshot until cond holds.
func (h *harness) waitFor(what string, cond func(status.Snapshot) bool) status.Snapshot {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := h.agent.Snapshot()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			js, _ := json.MarshalIndent(s, "", "  ")
			h.t.Fatalf("timed out waiting for %s; status:\n%s", what, js)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitState waits until the named domain is in state.
func (h *harness) waitState(name, state string) status.Domain {
	h.t.Helper()
	var d status.Domain
	h.waitFor(name+" "+state, func(s status.Snapshot) bool {
		var ok bool
		d, ok = findDomain(s, name)
		return ok && d.State == state
	})
	return d
}

// settle waits until the agent has been idle for a while: no call to the
// fake for quiet.
func (h *harness) settle() {
	h.t.Helper()
	const quiet = 50 * time.Millisecond
	total := func() int {
		n := 0
		for _, m := range []string{virttest.MethodListDomains, virttest.MethodLookupDomain, virttest.MethodDomainXML,
			virttest.MethodDefineXML, virttest.MethodAgentCommand, virttest.MethodMonitorCommand} {
			n += h.fake.Calls(m)
		}
		return n
	}
	last := total()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(quiet)
		n := total()
		if n == last {
			return
		}
		last = n
	}
	h.t.Fatal("the agent did not settle")
}

func findDomain(s status.Snapshot, name string) (status.Domain, bool) {
	for _, d := range s.Domains {
		if d.Name == name {
			return d, true
		}
	}
	return status.Domain{}, false
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// domainXML returns a minimal domain with one bridge virtio NIC per MAC;
// queues 0 leaves <driver> out. A count is one virtmq wrote: the domain
// carries virtmq's record of it (handSetXML makes a person's).
func domainXML(name string, vcpus, queues int, macs ...string) []byte {
	return makeDomainXML(name, vcpus, queues, true, macs...)
}

// handSetXML is domainXML with queues set by a person: no record, so the
// default policy (hand_set: keep) keeps it.
func handSetXML(name string, vcpus, queues int, macs ...string) []byte {
	return makeDomainXML(name, vcpus, queues, false, macs...)
}

func makeDomainXML(name string, vcpus, queues int, recorded bool, macs ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "<domain type='qemu'>\n  <name>%s</name>\n", name)
	if recorded && queues > 0 && len(macs) > 0 {
		b.WriteString("  <metadata>\n    <virtmq:written xmlns:virtmq='" + domxml.WrittenNamespace + "'>\n")
		for _, m := range macs {
			fmt.Fprintf(&b, "      <virtmq:nic mac='%s' queues='%d'/>\n", m, queues)
		}
		b.WriteString("    </virtmq:written>\n  </metadata>\n")
	}
	fmt.Fprintf(&b, "  <memory unit='KiB'>524288</memory>\n  <vcpu placement='static'>%d</vcpu>\n", vcpus)
	b.WriteString("  <os>\n    <type arch='x86_64'>hvm</type>\n  </os>\n  <devices>\n")
	for _, m := range macs {
		fmt.Fprintf(&b, "    <interface type='bridge'>\n      <mac address='%s'/>\n      <source bridge='br0'/>\n      <model type='virtio'/>\n", m)
		if queues > 0 {
			fmt.Fprintf(&b, "      <driver queues='%d'/>\n", queues)
		}
		b.WriteString("    </interface>\n")
	}
	b.WriteString("  </devices>\n</domain>\n")
	return b.Bytes()
}

// withRecord returns doc with virtmq's record of every NIC's queue count,
// as if virtmq had written them: a <metadata> after </uuid> (doc must have
// none). NICs without queues are left out.
func withRecord(t testing.TB, doc []byte) []byte {
	t.Helper()
	dom, err := domxml.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, ifc := range dom.Interfaces {
		if ifc.Queues > 0 {
			fmt.Fprintf(&b, "      <virtmq:nic mac='%s' queues='%d'/>\n", ifc.MAC, ifc.Queues)
		}
	}
	if b.Len() == 0 {
		return doc
	}
	rec := "</uuid>\n  <metadata>\n    <virtmq:written xmlns:virtmq='" + domxml.WrittenNamespace + "'>\n" + b.String() + "    </virtmq:written>\n  </metadata>"
	if !bytes.Contains(doc, []byte("</uuid>")) || bytes.Contains(doc, []byte("<metadata")) {
		t.Fatal("withRecord: the domain needs a <uuid> and no <metadata>")
	}
	return bytes.Replace(doc, []byte("</uuid>"), []byte(rec), 1)
}

func mac(i int) string { return fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8&0xff, i&0xff) }

func mustDefine(t testing.TB, fake *virttest.Conn, doc []byte) virt.Domain {
	t.Helper()
	d, err := fake.Define(doc)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readRecorded(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "internal", "testdata", "recorded", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

// recordedGuest is a qemu-guest-agent replaying replies recorded from the
// real stack (internal/testdata/recorded): a Debian guest with eth0 =
// 52:54:00:b4:f7:07, ethtool at /usr/sbin/ethtool, max 4 combined channels.
// guest-exec runs against a tiny model of ethtool keeping the current
// count. Every fixture is read up front: Command runs on agent goroutines,
// where t.Fatal is not allowed.
type recordedGuest struct {
	info, infoBlocked, interfaces, osinfo []byte
	setOK, setAboveMax                    []byte
	blockedErr, noEthtoolErr              string
	ethtoolTmpl                           string

	mu        sync.Mutex
	blocked   bool // guest-exec disabled (qemu-ga --block-rpcs)
	hang      bool // never answer: libvirt times out
	current   int
	max       int
	nextPID   int
	procs     map[int][]string
	commands  []string
	noEthtool bool
}

const recordedMAC = "52:54:00:b4:f7:07"

func newRecordedGuest(t testing.TB) *recordedGuest {
	out := readRecorded(t, "guest-exec-status.ethtool-l.json")
	var st struct {
		Return struct {
			OutData string `json:"out-data"`
		} `json:"return"`
	}
	must(t, json.Unmarshal(out, &st))
	tmpl, err := base64.StdEncoding.DecodeString(st.Return.OutData)
	must(t, err)
	if strings.Count(string(tmpl), "Combined:\t4") != 2 {
		t.Fatalf("unexpected recorded ethtool -l output %q", tmpl)
	}
	return &recordedGuest{
		info:         readRecorded(t, "guest-info.json"),
		infoBlocked:  readRecorded(t, "guest-info.qga-block-guest-exec.json"),
		interfaces:   readRecorded(t, "guest-network-get-interfaces.json"),
		osinfo:       readRecorded(t, "guest-get-osinfo.json"),
		setOK:        readRecorded(t, "guest-exec-status.ethtool-L-combined-2.json"),
		setAboveMax:  readRecorded(t, "guest-exec-status.ethtool-L-combined-5.json"),
		blockedErr:   strings.TrimPrefix(string(readRecorded(t, "guest-exec.blocked.error.txt")), "error: "),
		noEthtoolErr: strings.TrimPrefix(string(readRecorded(t, "guest-exec.no-ethtool.error.txt")), "error: "),
		ethtoolTmpl:  string(tmpl),
		current:      1,
		max:          4,
		nextPID:      141,
		procs:        map[int][]string{},
	}
}

// libvirtAgentError builds the error the libvirt boundary returns for an
// agent's error reply, from libvirt's message ("internal error: unable to
// execute QEMU agent command 'NAME': DESC").
func libvirtAgentError(msg string) error {
	_, rest, _ := strings.Cut(msg, "unable to execute QEMU agent command '")
	name, desc, _ := strings.Cut(rest, "': ")
	return &virt.AgentError{Command: name, Desc: desc, Err: errors.New(msg)}
}

func (g *recordedGuest) Command(ctx context.Context, d virt.Domain, cmd []byte, timeout time.Duration) ([]byte, error) {
	var req struct {
		Execute   string          `json:"execute"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal(cmd, &req); err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.commands = append(g.commands, req.Execute)
	hang := g.hang
	g.mu.Unlock()
	if hang {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-t.C:
			return nil, fmt.Errorf("%w: Guest agent is not responding: Guest agent disappeared while executing command", virt.ErrTimeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch req.Execute {
	case "guest-info":
		if g.blocked {
			return g.infoBlocked, nil
		}
		return g.info, nil
	case "guest-get-osinfo":
		return g.osinfo, nil
	case "guest-network-get-interfaces":
		return g.interfaces, nil
	case "guest-exec":
		var a struct {
			Path string   `json:"path"`
			Arg  []string `json:"arg"`
		}
		if err := json.Unmarshal(req.Arguments, &a); err != nil {
			return nil, err
		}
		if g.blocked {
			return nil, libvirtAgentError(g.blockedErr)
		}
		if a.Path != "/usr/sbin/ethtool" || g.noEthtool {
			return nil, libvirtAgentError(strings.ReplaceAll(g.noEthtoolErr, "/usr/sbin/ethtool", a.Path))
		}
		g.nextPID++
		g.procs[g.nextPID] = a.Arg
		return fmt.Appendf(nil, `{"return":{"pid":%d}}`, g.nextPID), nil
	case "guest-exec-status":
		var a struct {
			PID int `json:"pid"`
		}
		if err := json.Unmarshal(req.Arguments, &a); err != nil {
			return nil, err
		}
		argv, ok := g.procs[a.PID]
		if !ok {
			return nil, libvirtAgentError(fmt.Sprintf("internal error: unable to execute QEMU agent command 'guest-exec-status': PID %d does not exist", a.PID))
		}
		delete(g.procs, a.PID)
		return g.ethtool(argv), nil
	}
	return nil, libvirtAgentError("internal error: unable to execute QEMU agent command '" + req.Execute + "': The command " + req.Execute + " has not been found")
}

// ethtool answers guest-exec-status for one ethtool run; g.mu is held.
func (g *recordedGuest) ethtool(argv []string) []byte {
	switch {
	case len(argv) == 2 && argv[0] == "-l":
		// The template has "Combined:\t4" twice: maximum, then current.
		out := g.ethtoolTmpl // a test may replace it with garbage
		i := strings.Index(out, "Combined:\t4")
		j := strings.LastIndex(out, "Combined:\t4")
		if i >= 0 && j > i {
			out = out[:i] + fmt.Sprintf("Combined:\t%d", g.max) +
				out[i+len("Combined:\t4"):j] + fmt.Sprintf("Combined:\t%d", g.current) +
				out[j+len("Combined:\t4"):]
		}
		return fmt.Appendf(nil, `{"return":{"exitcode":0,"out-data":%q,"out-truncated":false,"exited":true}}`,
			base64.StdEncoding.EncodeToString([]byte(out)))
	case len(argv) == 4 && argv[0] == "-L" && argv[2] == "combined":
		var n int
		_, _ = fmt.Sscan(argv[3], &n)
		if n > g.max || n < 1 {
			return g.setAboveMax
		}
		g.current = n
		return g.setOK
	}
	return []byte(`{"return":{"exitcode":1,"err-data":"` + base64.StdEncoding.EncodeToString([]byte("bad argv")) + `","exited":true}}`)
}

func (g *recordedGuest) count(execute string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, c := range g.commands {
		if c == execute {
			n++
		}
	}
	return n
}

// fakeGuestStep is a GuestFunc the test steers, counting calls per domain.
type fakeGuestStep struct {
	mu    sync.Mutex
	calls map[string]int
	fn    func(ctx context.Context, dom, mac string, combined int) (guest.Result, error)
}

func newFakeGuestStep(fn func(ctx context.Context, dom, mac string, combined int) (guest.Result, error)) *fakeGuestStep {
	return &fakeGuestStep{calls: map[string]int{}, fn: fn}
}

func (f *fakeGuestStep) step(ctx context.Context, a guest.Agent, mac string, combined int, _ guest.Options) (guest.Result, error) {
	if w, ok := a.(interface{ Unwrap() guest.Agent }); ok {
		a = w.Unwrap() // guest.Step's
	}
	dom := a.(turnAgent).Agent.(virt.GuestAgent).Domain.Name
	f.mu.Lock()
	f.calls[dom]++
	f.mu.Unlock()
	return f.fn(ctx, dom, mac, combined)
}

func (f *fakeGuestStep) count(dom string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[dom]
}

func okResult(combined int) guest.Result {
	return guest.Result{IfName: "eth0", OS: "debian", Before: guest.Channels{Max: 8, Current: 1}, After: guest.Channels{Max: 8, Current: combined}, Changed: true}
}
