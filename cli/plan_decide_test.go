package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlanLeaveAlone: plan says why for every NIC it leaves alone, and
// takes over what virtmq wrote itself.
func TestPlanLeaveAlone(t *testing.T) {
	env, out, errOut := testEnv(t, "")
	if code := Main(context.Background(), env, []string{"plan", "--json", "testdata/leave-alone.xml"}); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep planReport
	err := json.Unmarshal(out.Bytes(), &rep)
	plans := rep.Domains
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		managed, kept bool
		wanted        int
		reason        string
	}{
		{false, false, 1, "vhost-user: QEMU refuses to start when the backend supports fewer queues than asked; a rule with allow_vhostuser: true opts in"},
		{false, true, 1, "kept: set by hand (rule defaults says keep)"},
		{false, false, 1, "<teaming type='transient'>: the passed-through VF of a failover pair; its standby, the persistent virtio NIC, is the one that takes queues"},
		{true, false, 8, "queues=vcpus → 8; no <model>: libvirt's default here is virtio"},
		{true, false, 8, "queues=vcpus → 8"},
	}
	if len(plans) != 1 || len(plans[0].NICs) != len(want) {
		t.Fatalf("plans: %+v", plans)
	}
	for i, w := range want {
		n := plans[0].NICs[i]
		if n.Managed != w.managed || n.Kept != w.kept || n.Wanted != w.wanted || n.Reason != w.reason {
			t.Errorf("NIC %d: got managed=%v kept=%v wanted=%d reason=%q, want %+v", i, n.Managed, n.Kept, n.Wanted, n.Reason, w)
		}
	}
}

func TestPlanSkipsForeignAndExcludedDomains(t *testing.T) {
	for _, tt := range []struct{ doc, want string }{
		{`<domain type='xen'><name>x</name><vcpu>4</vcpu><devices><interface type='bridge'><model type='virtio'/></interface></devices></domain>`,
			"domain type xen is not virtmq's (only qemu and kvm domains are)"},
		{`<domain type='kvm'><name>fw</name><metadata><virtmq:exclude xmlns:virtmq='https://virtmq.dev/xmlns/exclude/1'/></metadata><vcpu>4</vcpu>` +
			`<devices><interface type='bridge'><model type='virtio'/></interface></devices></domain>`,
			"excluded by the domain's virtmq label (`virtmq include fw` removes it)"},
		{`<domain type='test'><name>t</name></domain>`, "domain type test is not virtmq's (only qemu and kvm domains are)"},
	} {
		env, out, errOut := testEnv(t, tt.doc)
		if code := Main(context.Background(), env, []string{"plan", "-o", "wide", "-"}); code != ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if !strings.Contains(out.String(), tt.want) || strings.Contains(out.String(), " *") {
			t.Errorf("plan:\n%s\nwant %q and no change", out, tt.want)
		}
	}
}

func TestPlanBudgetWarning(t *testing.T) {
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(pol, []byte("version: 1\ndefaults: {budget: 6}\n"), 0o644)
	doc := `<domain type='kvm'><name>b</name><vcpu>8</vcpu><devices>` +
		`<interface type='bridge'><mac address='52:54:00:00:00:01'/><model type='virtio'/></interface>` +
		`<interface type='bridge'><mac address='52:54:00:00:00:02'/><model type='virtio'/></interface>` +
		`</devices></domain>`
	env, out, errOut := testEnv(t, doc)
	if code := Main(context.Background(), env, []string{"plan", "--policy", pol, "-"}); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "warning: b: NIC 52:54:00:00:00:01: 3 queues, below the 8 rule defaults wants: the domain's budget of 6 is shared by 2 NICs\n"
	if !strings.Contains(out.String(), want) || strings.Count(out.String(), "warning: ") != 2 {
		t.Errorf("plan:\n%s\nwant %q", out, want)
	}
}

// TestPlanCorpus runs plan over the real domain XML corpus and checks that
// every NIC virtmq leaves alone carries a reason.
func TestPlanCorpus(t *testing.T) {
	dir := filepath.Join("..", "..", "shared", "corpus", "domains")
	if d := os.Getenv("VIRTMQ_CORPUS"); d != "" {
		dir = d
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.xml"))
	if len(files) == 0 {
		t.Skipf("no corpus at %s", dir)
	}
	env, out, errOut := testEnv(t, "")
	// Files holding two domains or none fail to parse; plan reports them
	// and goes on, which is all this test needs.
	Main(context.Background(), env, append([]string{"plan", "--json"}, files...))
	var rep planReport
	err := json.Unmarshal(out.Bytes(), &rep)
	plans := rep.Domains
	if err != nil {
		t.Fatalf("%v; stderr:\n%s", err, errOut)
	}
	nics, skipped := 0, 0
	for _, p := range plans {
		for _, n := range p.NICs {
			nics++
			if n.Managed {
				continue
			}
			skipped++
			if strings.TrimSpace(n.Reason) == "" {
				t.Errorf("%s: NIC #%d (%s/%s) is left alone without a reason", p.File, n.Index, n.Type, n.Model)
			}
			if n.Change {
				t.Errorf("%s: NIC #%d is left alone but changes", p.File, n.Index)
			}
		}
	}
	if len(plans) < len(files)/2 {
		t.Errorf("only %d of %d files planned; stderr:\n%s", len(plans), len(files), errOut)
	}
	t.Logf("%d domains, %d NICs, %d left alone, each with its reason", len(plans), nics, skipped)
}

func TestLintWarnings(t *testing.T) {
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(pol, []byte("version: 1\ndefaults: {max: 0x10}\nrules:\n  - {name: web, match: {domain: \"web*\"}}\n  - {name: web1, match: {domain: web1}}\n"), 0o644)
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"lint", "--policy", pol}, ExitOK},
		{[]string{"lint", "--strict", "--policy", pol}, ExitFailure},
	} {
		env, out, _ := testEnv(t, "")
		if code := Main(context.Background(), env, tt.args); code != tt.code {
			t.Errorf("%v: exit %d, want %d:\n%s", tt.args, code, tt.code, out)
		}
		wantLines(t, "lint", out.String(),
			pol+":2:17: defaults.max: warning: 0x10 is not written in decimal: it means 16",
			pol+":5:5: rules[1]: warning: rule web1 can never match: rule web ("+pol+":4:5)",
			"warnings: 2)")
	}
	// Notes alone never fail, even with --strict: the shipped default has one.
	env, out, _ := testEnv(t, "")
	if code := Main(context.Background(), env, []string{"lint", "--strict"}); code != ExitOK {
		t.Errorf("lint --strict of the default: exit %d:\n%s", code, out)
	}
	wantLines(t, "lint", out.String(), "note: rule windows matches on os")
}
