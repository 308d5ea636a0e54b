package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
	"github.com/virtmq/virtmq/policy"
)

func TestApplyDryRunAndReal(t *testing.T) {
	fake := virttest.New()
	define(t, fake, "web.xml")
	before, _ := fake.InactiveXML("web")

	// Dry run: the plan and the diff, nothing defined.
	r := newTestRun(t, fake, nil)
	if code := Main(context.Background(), r.env, []string{"apply", "--dry-run", "--policy", testPolicy, "web"}); code != ExitOK {
		t.Fatalf("dry run: exit %d, stderr:\n%s", code, r.stderr)
	}
	out := r.stdout.String()
	wantLines(t, "dry-run output", out,
		"web (shut off):",
		"52:54:00:12:34:56", "queues 1 -> 4", "rule defaults", "queues=vcpus → 4",
		"52:54:00:12:34:57", "queues 2 -> 4",
		"52:54:00:12:34:58", "queues 1 (left alone)", "rule mgmt",
		"52:54:00:12:34:59", "model e1000 is not virtio",
		"--- web defined", "+++ web rewritten",
		"  +  4    <metadata>\n  +  5      <virtmq:written xmlns:virtmq='https://virtmq.dev/xmlns/written/1'>\n"+
			"  +  6        <virtmq:nic mac='52:54:00:12:34:56' nth='1' queues='4'/>\n  +  7        <virtmq:nic mac='52:54:00:12:34:57' nth='1' queues='4'/>\n"+
			"  +  8      </virtmq:written>\n  +  9    </metadata>\n",
		"  + 21        <driver queues='4'/>\n  - 20        <driver name='vhost' queues='2'/>\n  + 27        <driver name='vhost' queues='4'/>\n",
		"dry run: would redefine.",
		"apply: 1 to redefine (dry run), 0 already compliant, 0 transient, 0 failed",
	)
	wantNot(t, "dry-run output", out, "redefined.", "cold boot")
	if n := fake.Calls(virttest.MethodDefineXML); n != 0 {
		t.Errorf("dry run called DefineXML %d times", n)
	}
	if got, _ := fake.InactiveXML("web"); !bytes.Equal(got, before) {
		t.Error("dry run changed the definition")
	}

	// Real run: redefined once, with the bytes the dry run showed.
	r = newTestRun(t, fake, nil)
	if code := Main(context.Background(), r.env, []string{"apply", "--policy", testPolicy, "web"}); code != ExitOK {
		t.Fatalf("apply: exit %d, stderr:\n%s", code, r.stderr)
	}
	wantLines(t, "apply output", r.stdout.String(), "  redefined.", "apply: 1 redefined, 0 already compliant")
	if n := fake.Calls(virttest.MethodDefineXML); n != 1 {
		t.Errorf("DefineXML called %d times, want 1", n)
	}
	after, _ := fake.InactiveXML("web")
	wantLines(t, "new definition", string(after), "<driver name='vhost' queues='4'/>", "<driver queues='4'/>")
	if strings.Count(string(after), "<driver queues='4'/>")+strings.Count(string(after), "<driver name='vhost' queues='4'/>") != 2 {
		t.Errorf("want exactly the two managed NICs at 4 queues:\n%s", after)
	}

	// Again: idempotent, no redefine.
	r = newTestRun(t, fake, nil)
	if code := Main(context.Background(), r.env, []string{"apply", "--policy", testPolicy, "web"}); code != ExitOK {
		t.Fatalf("second apply: exit %d, stderr:\n%s", code, r.stderr)
	}
	wantLines(t, "second apply", r.stdout.String(), "the definition complies: nothing to redefine.", "apply: 0 redefined, 1 already compliant")
	wantNot(t, "second apply", r.stdout.String(), "--- web defined")
	if n := fake.Calls(virttest.MethodDefineXML); n != 1 {
		t.Errorf("DefineXML called %d times after a compliant apply, want 1", n)
	}
}

func TestApplyRunningDomain(t *testing.T) {
	fake := virttest.New()
	define(t, fake, "web.xml")
	if err := fake.Start("web"); err != nil {
		t.Fatal(err)
	}
	live, _ := fake.LiveXML("web")

	r := newTestRun(t, fake, nil)
	if code := Main(context.Background(), r.env, []string{"apply", "--policy", testPolicy, "web"}); code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, r.stderr)
	}
	wantLines(t, "output", r.stdout.String(),
		"web (running):", "redefined.",
		"web is running (52:54:00:12:34:56 runs 1, definition 4; 52:54:00:12:34:57 runs 2, definition 4)",
		"applies at the next cold boot (shutdown + start; a reboot keeps the old count)")
	if got, _ := fake.LiveXML("web"); !bytes.Equal(got, live) {
		t.Error("apply changed the running domain's live XML")
	}

	// The definition complies now, but the running domain still differs:
	// say so again, without redefining.
	r = newTestRun(t, fake, nil)
	if code := Main(context.Background(), r.env, []string{"apply", "--policy", testPolicy, "--all"}); code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, r.stderr)
	}
	wantLines(t, "second output", r.stdout.String(), "nothing to redefine", "web is running (", "next cold boot")
	if n := fake.Calls(virttest.MethodDefineXML); n != 1 {
		t.Errorf("DefineXML called %d times, want 1", n)
	}
}

func TestApplyTransient(t *testing.T) {
	fake := virttest.New()
	if _, err := fake.Create(readFixture(t, "web.xml")); err != nil {
		t.Fatal(err)
	}
	define(t, fake, "db.xml") // already compliant

	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"named", []string{"web"}, ExitFailure, []string{
			"web (transient, running):", "queues 1 -> 4",
			"cannot be redefined: a transient domain (virsh create) has no persistent definition",
			"mode: enforce", "0 redefined, 0 already compliant, 1 transient, 0 failed"}},
		{"all", []string{"--all"}, ExitOK, []string{
			"db (shut off):", "web (transient, running):", "cannot be redefined",
			"0 redefined, 1 already compliant, 1 transient, 0 failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRun(t, fake, nil)
			args := append([]string{"apply", "--policy", testPolicy}, tt.args...)
			if code := Main(context.Background(), r.env, args); code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, r.stderr)
			}
			wantLines(t, "output", r.stdout.String(), tt.want...)
			if n := fake.Calls(virttest.MethodDefineXML); n != 0 {
				t.Errorf("DefineXML called %d times", n)
			}
		})
	}
}

func TestApplyDefineFailure(t *testing.T) {
	fake := virttest.New()
	define(t, fake, "web.xml")
	define(t, fake, "db.xml")
	fake.SetValidate(func(doc []byte) error {
		if bytes.Contains(doc, []byte("<name>web</name>")) {
			return errors.New("Relax-NG validity error: Element interface failed to validate")
		}
		return nil
	})

	r := newTestRun(t, fake, nil)
	if code := Main(context.Background(), r.env, []string{"apply", "--policy", testPolicy, "--all"}); code != ExitFailure {
		t.Errorf("exit %d, want %d", code, ExitFailure)
	}
	wantLines(t, "stderr", r.stderr.String(), "virtmq apply: web: redefine: ", "failed to validate")
	wantLines(t, "stdout", r.stdout.String(), "db (shut off):", "0 redefined, 1 already compliant, 0 transient, 1 failed")
}

func TestApplyErrors(t *testing.T) {
	fake := virttest.New()
	define(t, fake, "db.xml")
	tests := []struct {
		name     string
		fake     *virttest.Conn
		args     []string
		vars     map[string]string
		fault    string
		wantCode int
		stderr   []string
		uris     []string
	}{
		{name: "no domain", fake: fake, args: []string{"nosuch", "db"}, wantCode: ExitFailure,
			stderr: []string{"virtmq apply: nosuch: no such domain"}},
		{name: "neither all nor names", fake: fake, args: nil, wantCode: ExitUsage,
			stderr: []string{"virtmq apply: give --all or domain names\n", "Usage: virtmq apply [", `Run "virtmq apply --help"`}},
		{name: "all and names", fake: fake, args: []string{"--all", "db"}, wantCode: ExitUsage},
		{name: "dial fails", fake: nil, args: []string{"--all", "--connect-socket", "/nonexistent/sock"}, wantCode: ExitFailure,
			stderr: []string{"virtmq apply: cannot connect to libvirt at qemu+unix:///system?socket=/nonexistent/sock (from --connect-socket): ",
				"is libvirt running? start virtqemud (systemctl start virtqemud.socket) or libvirtd; -c URI picks another connection\n"},
			uris: []string{"qemu+unix:///system?socket=/nonexistent/sock"}},
		{name: "socket from environment", fake: fake, args: []string{"db"}, vars: map[string]string{SocketEnvVar: "/env/sock"},
			wantCode: ExitOK, uris: []string{"qemu+unix:///system?socket=/env/sock"}},
		{name: "flag beats environment", fake: fake, args: []string{"db", "--connect-socket", "/flag/sock"},
			vars: map[string]string{SocketEnvVar: "/env/sock"}, wantCode: ExitOK, uris: []string{"qemu+unix:///system?socket=/flag/sock"}},
		{name: "default URI", fake: fake, args: []string{"db"}, wantCode: ExitOK, uris: []string{"qemu:///system"}},
		{name: "URI from environment", fake: fake, args: []string{"db"}, vars: map[string]string{URIEnvVar: "qemu+ssh://root@h/system"},
			wantCode: ExitOK, uris: []string{"qemu+ssh://root@h/system"}},
		{name: "-c beats environment", fake: fake, args: []string{"db", "-c", "qemu+tcp://h/system"},
			vars: map[string]string{URIEnvVar: "qemu+ssh://root@h/system", SocketEnvVar: "/env/sock"}, wantCode: ExitOK, uris: []string{"qemu+tcp://h/system"}},
		{name: "--connect", fake: fake, args: []string{"--connect=qemu+ssh://h:2222/system", "db"}, wantCode: ExitOK, uris: []string{"qemu+ssh://h:2222/system"}},
		{name: "unusable URI in environment never falls back", fake: fake, args: []string{"--all"},
			vars: map[string]string{URIEnvVar: "qemu:///session"}, wantCode: ExitFailure, uris: []string{},
			stderr: []string{"virtmq apply: connect to libvirt: $LIBVIRT_DEFAULT_URI: unsupported libvirt URI \"qemu:///session\""}},
		{name: "environment URI that fails to connect", fake: nil, args: []string{"--all"},
			vars: map[string]string{URIEnvVar: "qemu+unix:///system?socket=/nonexistent"}, wantCode: ExitFailure,
			stderr: []string{"cannot connect to libvirt at qemu+unix:///system?socket=/nonexistent (from $LIBVIRT_DEFAULT_URI):"},
			uris:   []string{"qemu+unix:///system?socket=/nonexistent"}},
		{name: "list fails", fake: fake, args: []string{"--all"}, fault: virttest.MethodListDomains, wantCode: ExitFailure,
			stderr: []string{"virtmq apply: list domains:"}},
		{name: "read fails", fake: fake, args: []string{"db"}, fault: virttest.MethodDomainXML, wantCode: ExitFailure,
			stderr: []string{"virtmq apply: db: read definition:"}},
		{name: "bad policy", fake: fake, args: []string{"db", "--policy", "testdata/nosuch.yaml"}, wantCode: ExitFailure,
			stderr: []string{"virtmq apply: load policy:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.fault != "" {
				fake.FailNext(tt.fault, 1, errors.New("injected"))
			}
			r := newTestRun(t, tt.fake, tt.vars)
			args := append([]string{"apply", "--policy", testPolicy}, tt.args...)
			if code := Main(context.Background(), r.env, args); code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, r.stderr)
			}
			wantLines(t, "stderr", r.stderr.String(), tt.stderr...)
			if tt.uris != nil && strings.Join(r.uris, ",") != strings.Join(tt.uris, ",") {
				t.Errorf("dialed %q, want %q", r.uris, tt.uris)
			}
		})
	}
}

func TestApplyHelp(t *testing.T) {
	r := newTestRun(t, nil, nil)
	if code := Main(context.Background(), r.env, []string{"apply", "--help"}); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	wantLines(t, "help", r.stdout.String(), "Usage: virtmq apply", "--dry-run", "--all", "-c URI", "-connect URI", "-connect-socket", "-detailed-exitcode",
		"next cold boot", "Transient domains", "Exits 1")
	if len(r.uris) != 0 {
		t.Error("--help dialed libvirt")
	}
}

// TestApplyClosesConnection checks that apply does not leak its libvirt connection.
func TestApplyClosesConnection(t *testing.T) {
	fake := virttest.New()
	define(t, fake, "db.xml")
	r := newTestRun(t, fake, nil)
	Main(context.Background(), r.env, []string{"apply", "--policy", testPolicy, "--all"})
	if n := fake.Connections(); n != 1 {
		t.Errorf("%d connections open after apply, want 1 (the test's)", n)
	}
	var _ virt.Conn = fake
}

// xmlReads records the flags of every DomainXML call made through the
// connections of a test run (recordReads).
type xmlReads struct {
	mu    sync.Mutex
	flags []virt.XMLFlags
}

type recordingConn struct {
	virt.Conn
	r *xmlReads
}

func (c recordingConn) DomainXML(ctx context.Context, d virt.Domain, flags virt.XMLFlags) ([]byte, error) {
	c.r.mu.Lock()
	c.r.flags = append(c.r.flags, flags)
	c.r.mu.Unlock()
	return c.Conn.DomainXML(ctx, d, flags)
}

func (r *testRun) recordReads() *xmlReads {
	rec := &xmlReads{}
	dial := r.env.Dial
	r.env.Dial = func(ctx context.Context, uri virt.URI) (virt.Conn, error) {
		c, err := dial(ctx, uri)
		if err != nil {
			return nil, err
		}
		return recordingConn{c, rec}, nil
	}
	return rec
}

// check fails unless the definitions read (to redefine) asked for secrets
// and every other read did not.
func (r *xmlReads) check(t *testing.T, wantInactive, wantLive int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	inactive, live := 0, 0
	for _, f := range r.flags {
		switch f {
		case virt.XMLInactive | virt.XMLSecure:
			inactive++
		case virt.XMLLive:
			live++
		default:
			t.Errorf("DomainXML read with flags %#x: want XMLInactive|XMLSecure to redefine, XMLLive otherwise", f)
		}
	}
	if inactive != wantInactive || live != wantLive {
		t.Errorf("%d secure definition reads and %d live reads, want %d and %d", inactive, live, wantInactive, wantLive)
	}
}

// wantNoSecrets fails when text holds a password of the fixture.
func wantNoSecrets(t *testing.T, what, text string) {
	t.Helper()
	wantNot(t, what, text, "vnc-Pa55", "s3cret")
}

// TestApplyKeepsConsolePasswords: libvirt leaves <graphics
// passwd> out of XML read without VIR_DOMAIN_XML_SECURE, and apply
// redefined from such XML, deleting the VNC and SPICE passwords. The new
// definition must be the rewrite of the whole stored one, and neither the
// plan nor the diff may show a password.
func TestApplyKeepsConsolePasswords(t *testing.T) {
	pol, err := policy.Load(testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	doc := virttest.GraphicsPasswdXML()
	want, _, err := domxml.Apply(pol, doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, running := range []bool{false, true} {
		name, liveReads := "shut off", 0
		if running {
			name, liveReads = "running", 1
		}
		t.Run(name, func(t *testing.T) {
			fake := virttest.New()
			if _, err := fake.Define(doc); err != nil {
				t.Fatal(err)
			}
			if running {
				if err := fake.Start("console"); err != nil {
					t.Fatal(err)
				}
			}
			r := newTestRun(t, fake, nil)
			reads := r.recordReads()
			if code := Main(context.Background(), r.env, []string{"apply", "--policy", testPolicy, "console"}); code != ExitOK {
				t.Fatalf("exit %d, stderr:\n%s", code, r.stderr)
			}
			wantLines(t, "output", r.stdout.String(), "queues 1 -> 4", "+  4    <metadata>", "+ 23        <driver queues='4'/>", "  redefined.")
			got, _ := fake.InactiveXML("console")
			if !bytes.Equal(got, want) {
				t.Errorf("definition after apply:\n%s\nwant:\n%s", got, want)
			}
			for _, pw := range virttest.GraphicsPasswords {
				if !bytes.Contains(got, []byte(pw)) {
					t.Errorf("apply lost %s", pw)
				}
			}
			wantNoSecrets(t, "stdout", r.stdout.String())
			wantNoSecrets(t, "stderr", r.stderr.String())
			reads.check(t, 1, liveReads)
		})
	}
}

// TestApplyDiffMasksSecrets checks that a diff line holding a password
// prints it masked: here the whole definition is one line, so the diff
// shows the <graphics> with it.
func TestApplyDiffMasksSecrets(t *testing.T) {
	doc := bytes.ReplaceAll(bytes.ReplaceAll(virttest.GraphicsPasswdXML(), []byte("\n"), nil), []byte("  "), nil)
	fake := virttest.New()
	if _, err := fake.Define(doc); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--dry-run"}, nil} {
		r := newTestRun(t, fake, nil)
		args = append(append([]string{"apply", "--policy", testPolicy}, args...), "console")
		if code := Main(context.Background(), r.env, args); code != ExitOK {
			t.Fatalf("%q: exit %d, stderr:\n%s", args, code, r.stderr)
		}
		out := r.stdout.String()
		wantLines(t, "output", out, "  - 1  <domain type='kvm'>", "<driver queues='4'/>",
			"passwd='***' passwdValidTo='2031-06-30T12:00:00'>", "passwd='***' connected='disconnect'>")
		wantNoSecrets(t, "stdout", out)
		wantNoSecrets(t, "stderr", r.stderr.String())
	}
	got, _ := fake.InactiveXML("console")
	for _, pw := range virttest.GraphicsPasswords {
		if !bytes.Contains(got, []byte(pw)) {
			t.Errorf("apply lost %s:\n%s", pw, got)
		}
	}
}
