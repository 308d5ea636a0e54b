package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlanOrchestratorSamples: `virtmq plan` on a Nova and an oVirt
// domain (fixtures shaped on what nova's libvirt driver and VDSM write)
// leaves them alone, naming the orchestrator's own knob; `rewrite` prints
// them unchanged; the policy's orchestrators entry opts one in.
func TestPlanOrchestratorSamples(t *testing.T) {
	samples := []struct {
		file, owner, knob string
		vcpus             int
	}{
		{"testdata/nova-instance.xml", "nova", "the flavor's hw:vif_multiqueue_enabled extra spec or the image's hw_vif_multiqueue_enabled property", 4},
		{"testdata/ovirt-vm.xml", "ovirt", "the VM's Multi Queues Enabled setting, multi_queues_enabled in the oVirt API", 8},
	}
	for _, s := range samples {
		env, out, errOut := testEnv(t, "")
		if code := Main(context.Background(), env, []string{"plan", "--json", s.file}); code != ExitOK {
			t.Fatalf("plan %s: exit %d: %s", s.file, code, errOut)
		}
		var rep planReport
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Domains) != 1 {
			t.Fatalf("plan %s: %v\n%s", s.file, err, out)
		}
		d := rep.Domains[0]
		if d.Orchestrator != s.owner || d.Changes || !strings.HasPrefix(d.Skip, "left to ") || !strings.Contains(d.Skip, "set multiqueue there, with "+s.knob) {
			t.Errorf("plan %s: orchestrator %q changes %v skip %q", s.file, d.Orchestrator, d.Changes, d.Skip)
		}
		for _, n := range d.NICs {
			if n.Managed || n.Change || n.GuestStep || n.Reason != d.Skip {
				t.Errorf("plan %s: NIC %+v is not left alone with the domain's reason", s.file, n)
			}
		}

		doc, err := os.ReadFile(s.file)
		if err != nil {
			t.Fatal(err)
		}
		env, out, errOut = testEnv(t, "")
		if code := Main(context.Background(), env, []string{"rewrite", s.file}); code != ExitOK || out.String() != string(doc) {
			t.Errorf("rewrite %s: exit %d, changed=%v: %s", s.file, code, out.String() != string(doc), errOut)
		}

		// Opted in: decided like any other domain, with the warning.
		pol := filepath.Join(t.TempDir(), "policy.yaml")
		os.WriteFile(pol, []byte("version: 1\norchestrators: {"+s.owner+": apply}\n"), 0o644)
		env, out, errOut = testEnv(t, "")
		if code := Main(context.Background(), env, []string{"plan", "--json", "--policy", pol, s.file}); code != ExitOK {
			t.Fatalf("plan %s opted in: exit %d: %s", s.file, code, errOut)
		}
		rep = planReport{}
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Domains) != 1 {
			t.Fatalf("plan %s: %v\n%s", s.file, err, out)
		}
		d = rep.Domains[0]
		if d.Skip != "" || !d.Changes || d.Mode != "apply" || len(d.NICs) != 1 || !d.NICs[0].Managed || d.NICs[0].Wanted != s.vcpus ||
			len(d.Warnings) != 1 || !strings.Contains(d.Warnings[0], "orchestrators: "+s.owner+": apply") {
			t.Errorf("plan %s opted in: %+v", s.file, d)
		}
	}
}

// TestPlanOrchestratorObserve: opted in to observe, the plan is decided
// and its mode is observe, whatever the policy's.
func TestPlanOrchestratorObserve(t *testing.T) {
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(pol, []byte("version: 1\nmode: enforce\norchestrators: {nova: observe}\n"), 0o644)
	env, out, errOut := testEnv(t, "")
	if code := Main(context.Background(), env, []string{"plan", "--json", "--policy", pol, "testdata/nova-instance.xml"}); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep planReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Domains) != 1 {
		t.Fatalf("%v\n%s", err, out)
	}
	if d := rep.Domains[0]; d.Mode != "observe" || !d.Changes || d.Skip != "" {
		t.Errorf("plan: %+v", d)
	}
}
