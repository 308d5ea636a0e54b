package domxml

import (
	"strings"
	"testing"

	"github.com/virtmq/virtmq/policy"
)

const recNS = "xmlns:virtmq='https://virtmq.dev/xmlns/written/1'"

func TestRewriteRecorded(t *testing.T) {
	nic := func(mac, driver string) string {
		return "    <interface type='bridge'>\n      <mac address='" + mac + "'/>\n      <model type='virtio'/>" + driver + "\n    </interface>\n"
	}
	devices := "  <devices>\n" + nic("52:54:00:00:00:01", "") + nic("52:54:00:00:00:02", "\n      <driver queues='3'/>") + "  </devices>\n"
	for _, tt := range []struct {
		name, in, want string
		q              map[int]int
	}{
		{
			name: "no metadata: added after the last identity element",
			in:   "<domain type='kvm'>\n  <name>a</name>\n  <uuid>u</uuid>\n  <title>t</title>\n  <memory>1</memory>\n" + devices + "</domain>\n",
			q:    map[int]int{0: 4},
			want: "<domain type='kvm'>\n  <name>a</name>\n  <uuid>u</uuid>\n  <title>t</title>\n  <metadata>\n    <virtmq:written " + recNS + ">\n" +
				"      <virtmq:nic mac='52:54:00:00:00:01' queues='4'/>\n    </virtmq:written>\n  </metadata>\n  <memory>1</memory>\n" +
				strings.Replace(devices, "<model type='virtio'/>\n", "<model type='virtio'/>\n      <driver queues='4'/>\n", 1) + "</domain>\n",
		},
		{
			name: "metadata with other elements: appended",
			in:   "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <x:y xmlns:x='urn:x'/>\n  </metadata>\n" + devices + "</domain>\n",
			q:    map[int]int{1: 2},
			want: "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <x:y xmlns:x='urn:x'/>\n    <virtmq:written " + recNS + ">\n" +
				"      <virtmq:nic mac='52:54:00:00:00:02' queues='2'/>\n    </virtmq:written>\n  </metadata>\n" +
				strings.Replace(devices, "queues='3'", "queues='2'", 1) + "</domain>\n",
		},
		{
			name: "existing record updated, stale MACs dropped, other NICs kept",
			in: "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <virtmq:written " + recNS + ">\n" +
				"      <virtmq:nic mac='52:54:00:00:00:09' queues='8'/>\n      <virtmq:nic mac='52:54:00:00:00:02' queues='3'/>\n" +
				"    </virtmq:written>\n  </metadata>\n" + devices + "</domain>\n",
			q: map[int]int{0: 4},
			want: "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <virtmq:written " + recNS + ">\n" +
				"      <virtmq:nic mac='52:54:00:00:00:01' queues='4'/>\n      <virtmq:nic mac='52:54:00:00:00:02' queues='3'/>\n" +
				"    </virtmq:written>\n  </metadata>\n" +
				strings.Replace(devices, "<model type='virtio'/>\n", "<model type='virtio'/>\n      <driver queues='4'/>\n", 1) + "</domain>\n",
		},
		{
			name: "self-closing metadata opened up",
			in:   "<domain type='kvm'>\n  <name>a</name>\n  <metadata/>\n" + devices + "</domain>\n",
			q:    map[int]int{1: 5},
			want: "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <virtmq:written " + recNS + ">\n" +
				"      <virtmq:nic mac='52:54:00:00:00:02' queues='5'/>\n    </virtmq:written>\n  </metadata>\n" +
				strings.Replace(devices, "queues='3'", "queues='5'", 1) + "</domain>\n",
		},
		{
			name: "nothing to change: nothing recorded",
			in:   "<domain type='kvm'>\n  <name>a</name>\n" + devices + "</domain>\n",
			q:    map[int]int{1: 3},
			want: "<domain type='kvm'>\n  <name>a</name>\n" + devices + "</domain>\n",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RewriteRecorded([]byte(tt.in), tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("(-want +got):\n%s", lineDiff(tt.want, string(got)))
			}
			again, err := RewriteRecorded(got, tt.q)
			if err != nil || string(again) != string(got) {
				t.Errorf("second run not a no-op (%v):\n%s", err, lineDiff(string(got), string(again)))
			}
		})
	}
}

func TestParseDecisionFacts(t *testing.T) {
	doc := `<domain type='kvm'>
  <name>fw1</name>
  <metadata>
    <virtmq:exclude xmlns:virtmq='https://virtmq.dev/xmlns/exclude/1'/>
    <virtmq:written xmlns:virtmq='https://virtmq.dev/xmlns/written/1'>
      <virtmq:nic mac='52:54:00:AA:00:01' queues='4'/>
      <virtmq:nic mac='52:54:00:aa:00:02' queues='nonsense'/>
    </virtmq:written>
  </metadata>
  <os><type arch='aarch64' machine='virt-9.2'>hvm</type></os>
  <devices>
    <interface type='network'><mac address='52:54:00:aa:00:01'/><model type='ViRtIo'/><driver queues='4'/><teaming type='persistent'/></interface>
    <interface type='network'><mac address='52:54:00:aa:00:02'/><teaming type='transient' persistent='ua-net0'/></interface>
  </devices>
</domain>`
	d, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if d.Arch != "aarch64" || d.Machine != "virt-9.2" || !d.Excluded {
		t.Errorf("arch %q machine %q excluded %v", d.Arch, d.Machine, d.Excluded)
	}
	want := []policy.Interface{
		{Index: 0, Type: "network", Model: "virtio", MAC: "52:54:00:aa:00:01", HasDriver: true, Queues: 4, Teaming: "persistent", Written: 4},
		{Index: 1, Type: "network", MAC: "52:54:00:aa:00:02", Teaming: "transient"},
	}
	for i := range want {
		if d.Interfaces[i] != want[i] {
			t.Errorf("NIC %d:\n got %+v\nwant %+v", i, d.Interfaces[i], want[i])
		}
	}
	// The exclude label in another namespace, or outside <metadata>, is not it.
	d, _ = Parse([]byte(`<domain type='kvm'><name>x</name><metadata><v:exclude xmlns:v='urn:other'/></metadata></domain>`))
	if d.Excluded {
		t.Error("an exclude element in another namespace excluded the domain")
	}
}

// TestApplyKeepsHandSet: a count a person wrote survives Apply, and one
// virtmq wrote is virtmq's to change when the policy changes.
func TestApplyKeepsHandSet(t *testing.T) {
	doc := []byte(`<domain type='kvm'>
  <name>fw1</name>
  <vcpu>8</vcpu>
  <devices>
    <interface type='bridge'>
      <mac address='52:54:00:00:00:01'/>
      <model type='virtio'/>
      <driver queues='1'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:00:00:02'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
`)
	p8, _ := policy.Parse("p8", []byte("version: 1\n"))
	out, plan, err := Apply(p8, doc)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.NICs[0].Kept || plan.NICs[1].Wanted != 8 {
		t.Fatalf("plan: %+v", plan.NICs)
	}
	if !strings.Contains(string(out), "<driver queues='1'/>") || !strings.Contains(string(out), "<virtmq:nic mac='52:54:00:00:00:02' queues='8'/>") {
		t.Fatalf("out:\n%s", out)
	}
	p2, _ := policy.Parse("p2", []byte("version: 1\ndefaults: {max: 2}\n"))
	out2, plan, err := Apply(p2, out)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.NICs[0].Kept || plan.NICs[1].Wanted != 2 || !plan.NICs[1].Change() {
		t.Fatalf("plan after a policy change: %+v", plan.NICs)
	}
	if !strings.Contains(string(out2), "<virtmq:nic mac='52:54:00:00:00:02' queues='2'/>") || !strings.Contains(string(out2), "<driver queues='1'/>") {
		t.Fatalf("out:\n%s", out2)
	}
}
