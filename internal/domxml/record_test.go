package domxml

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/virtmq/virtmq/policy"
)

const recNS = "xmlns:virtmq='https://virtmq.dev/xmlns/written/1'"

func TestRecord(t *testing.T) {
	nic := func(mac, driver string) string {
		return "    <interface type='bridge'>\n      <mac address='" + mac + "'/>\n      <model type='virtio'/>" + driver + "\n    </interface>\n"
	}
	devices := "  <devices>\n" + nic("52:54:00:00:00:01", "") + nic("52:54:00:00:00:02", "\n      <driver queues='3'/>") + "  </devices>\n"
	// Two NICs with one MAC, as libvirt accepts in a definition.
	twins := "  <devices>\n" + nic("52:54:00:00:00:07", "\n      <driver queues='3'/>") + nic("52:54:00:00:00:07", "\n      <driver queues='3'/>") + "  </devices>\n"
	anonymous := "  <devices>\n    <interface type='bridge'>\n      <model type='virtio'/>\n    </interface>\n  </devices>\n"
	for _, tt := range []struct {
		name, in, want string
		q              map[int]int
	}{
		{
			name: "no metadata: added after the last identity element",
			in:   "<domain type='kvm'>\n  <name>a</name>\n  <uuid>u</uuid>\n  <title>t</title>\n  <memory>1</memory>\n" + devices + "</domain>\n",
			q:    map[int]int{0: 4},
			want: "<domain type='kvm'>\n  <name>a</name>\n  <uuid>u</uuid>\n  <title>t</title>\n  <metadata>\n    <virtmq:written " + recNS + ">\n" +
				"      <virtmq:nic mac='52:54:00:00:00:01' nth='1' queues='4'/>\n    </virtmq:written>\n  </metadata>\n  <memory>1</memory>\n" +
				strings.Replace(devices, "<model type='virtio'/>\n", "<model type='virtio'/>\n      <driver queues='4'/>\n", 1) + "</domain>\n",
		},
		{
			name: "metadata with other elements: appended",
			in:   "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <x:y xmlns:x='urn:x'/>\n  </metadata>\n" + devices + "</domain>\n",
			q:    map[int]int{1: 2},
			want: "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <x:y xmlns:x='urn:x'/>\n    <virtmq:written " + recNS + ">\n" +
				"      <virtmq:nic mac='52:54:00:00:00:02' nth='1' queues='2'/>\n    </virtmq:written>\n  </metadata>\n" +
				strings.Replace(devices, "queues='3'", "queues='2'", 1) + "</domain>\n",
		},
		{
			name: "existing record updated, stale MACs dropped, other NICs kept",
			in: "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <virtmq:written " + recNS + ">\n" +
				"      <virtmq:nic mac='52:54:00:00:00:09' queues='8'/>\n      <virtmq:nic mac='52:54:00:00:00:02' queues='3'/>\n" +
				"    </virtmq:written>\n  </metadata>\n" + devices + "</domain>\n",
			q: map[int]int{0: 4},
			want: "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <virtmq:written " + recNS + ">\n" +
				"      <virtmq:nic mac='52:54:00:00:00:01' nth='1' queues='4'/>\n      <virtmq:nic mac='52:54:00:00:00:02' nth='1' queues='3'/>\n" +
				"    </virtmq:written>\n  </metadata>\n" +
				strings.Replace(devices, "<model type='virtio'/>\n", "<model type='virtio'/>\n      <driver queues='4'/>\n", 1) + "</domain>\n",
		},
		{
			name: "self-closing metadata opened up",
			in:   "<domain type='kvm'>\n  <name>a</name>\n  <metadata/>\n" + devices + "</domain>\n",
			q:    map[int]int{1: 5},
			want: "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <virtmq:written " + recNS + ">\n" +
				"      <virtmq:nic mac='52:54:00:00:00:02' nth='1' queues='5'/>\n    </virtmq:written>\n  </metadata>\n" +
				strings.Replace(devices, "queues='3'", "queues='5'", 1) + "</domain>\n",
		},
		{
			name: "NICs sharing a MAC: each recorded by its rank",
			in:   "<domain type='kvm'>\n  <name>a</name>\n" + twins + "</domain>\n",
			q:    map[int]int{0: 4, 1: 2},
			want: "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <virtmq:written " + recNS + ">\n" +
				"      <virtmq:nic mac='52:54:00:00:00:07' nth='1' queues='4'/>\n      <virtmq:nic mac='52:54:00:00:00:07' nth='2' queues='2'/>\n" +
				"    </virtmq:written>\n  </metadata>\n" +
				strings.Replace(strings.Replace(twins, "queues='3'", "queues='4'", 1), "queues='3'", "queues='2'", 1) + "</domain>\n",
		},
		{
			name: "the first of two NICs sharing a MAC untouched: the second is recorded all the same",
			in:   "<domain type='kvm'>\n  <name>a</name>\n" + twins + "</domain>\n",
			q:    map[int]int{1: 2},
			want: "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <virtmq:written " + recNS + ">\n" +
				"      <virtmq:nic mac='52:54:00:00:00:07' nth='2' queues='2'/>\n    </virtmq:written>\n  </metadata>\n" +
				strings.Replace(twins, "queues='3'/>\n    </interface>\n  </devices>", "queues='2'/>\n    </interface>\n  </devices>", 1) + "</domain>\n",
		},
		{
			name: "an entry of the older form stands for every NIC with its MAC, and is rewritten per NIC",
			in: "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <virtmq:written " + recNS + ">\n" +
				"      <virtmq:nic mac='52:54:00:00:00:07' queues='3'/>\n    </virtmq:written>\n  </metadata>\n" + twins + "</domain>\n",
			q: map[int]int{0: 5},
			want: "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <virtmq:written " + recNS + ">\n" +
				"      <virtmq:nic mac='52:54:00:00:00:07' nth='1' queues='5'/>\n      <virtmq:nic mac='52:54:00:00:00:07' nth='2' queues='3'/>\n" +
				"    </virtmq:written>\n  </metadata>\n" + strings.Replace(twins, "queues='3'", "queues='5'", 1) + "</domain>\n",
		},
		{
			name: "a NIC without a MAC: no record, and never an empty one",
			in:   "<domain type='kvm'>\n  <name>a</name>\n" + anonymous + "</domain>\n",
			q:    map[int]int{0: 4},
			want: "<domain type='kvm'>\n  <name>a</name>\n" + strings.Replace(anonymous, "<model type='virtio'/>", "<model type='virtio'/>\n      <driver queues='4'/>", 1) + "</domain>\n",
		},
		{
			name: "a record left with no entries is removed",
			in: "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <x:y xmlns:x='urn:x'/>\n    <virtmq:written " + recNS + ">\n" +
				"      <virtmq:nic mac='52:54:00:00:00:09' nth='1' queues='8'/>\n    </virtmq:written>\n  </metadata>\n" + anonymous + "</domain>\n",
			q: map[int]int{0: 4},
			want: "<domain type='kvm'>\n  <name>a</name>\n  <metadata>\n    <x:y xmlns:x='urn:x'/>\n  </metadata>\n" +
				strings.Replace(anonymous, "<model type='virtio'/>", "<model type='virtio'/>\n      <driver queues='4'/>", 1) + "</domain>\n",
		},
		{
			name: "nothing to change: nothing recorded",
			in:   "<domain type='kvm'>\n  <name>a</name>\n" + devices + "</domain>\n",
			q:    map[int]int{1: 3},
			want: "<domain type='kvm'>\n  <name>a</name>\n" + devices + "</domain>\n",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := recorded([]byte(tt.in), tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("(-want +got):\n%s", lineDiff(tt.want, string(got)))
			}
			again, err := recorded(got, tt.q)
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
	if !strings.Contains(string(out), "<driver queues='1'/>") || !strings.Contains(string(out), "<virtmq:nic mac='52:54:00:00:00:02' nth='1' queues='8'/>") {
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
	if !strings.Contains(string(out2), "<virtmq:nic mac='52:54:00:00:00:02' nth='1' queues='2'/>") || !strings.Contains(string(out2), "<driver queues='1'/>") {
		t.Fatalf("out:\n%s", out2)
	}
}

// TestParseRecordByRank: each entry counts for the NIC its MAC and rank
// name; an entry without a rank (the form older releases wrote) for every
// NIC with that MAC that has no entry of its own; a bad rank for none.
func TestParseRecordByRank(t *testing.T) {
	doc := `<domain type='kvm'>
  <name>a</name>
  <metadata>
    <virtmq:written xmlns:virtmq='https://virtmq.dev/xmlns/written/1'>
      <virtmq:nic mac='52:54:00:00:00:07' nth='2' queues='2'/>
      <virtmq:nic mac='52:54:00:00:00:07' queues='6'/>
      <virtmq:nic mac='52:54:00:00:00:08' nth='1' queues='4'/>
      <virtmq:nic mac='52:54:00:00:00:09' nth='0' queues='4'/>
      <virtmq:nic mac='52:54:00:00:00:09' nth='x' queues='4'/>
    </virtmq:written>
  </metadata>
  <devices>
    <interface type='bridge'><mac address='52:54:00:00:00:07'/></interface>
    <interface type='bridge'><mac address='52:54:00:00:00:08'/></interface>
    <interface type='bridge'><mac address='52:54:00:00:00:07'/></interface>
    <interface type='bridge'><mac address='52:54:00:00:00:07'/></interface>
    <interface type='bridge'><mac address='52:54:00:00:00:08'/></interface>
    <interface type='bridge'><mac address='52:54:00:00:00:09'/></interface>
  </devices>
</domain>`
	d, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, ifc := range d.Interfaces {
		got = append(got, ifc.Written)
	}
	if want := []int{6, 4, 2, 6, 0, 0}; !slices.Equal(got, want) {
		t.Errorf("Written = %v, want %v", got, want)
	}
}

// TestApplyDuplicateMACs follows a domain with two NICs that share a MAC
// through two policy decisions: the first NIC's count is a person's, the
// second's virtmq's. When the domain drops from 8 vCPUs to 2, virtmq must
// lower the count it wrote (its record names that NIC) and keep the hand-set one.
func TestApplyDuplicateMACs(t *testing.T) {
	doc := []byte(`<domain type='kvm'>
  <name>twins</name>
  <vcpu placement='static'>8</vcpu>
  <devices>
    <interface type='bridge'>
      <mac address='52:54:00:00:00:07'/>
      <source bridge='br0'/>
      <model type='virtio'/>
      <driver queues='3'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:00:00:07'/>
      <source bridge='br1'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
`)
	pol, err := policy.Parse("p", []byte("version: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, plan, err := Apply(pol, doc)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.NICs[0].Kept || plan.NICs[1].Wanted != 8 {
		t.Fatalf("plan at 8 vCPUs: %+v", plan.NICs)
	}
	if !strings.Contains(string(out), "<virtmq:nic mac='52:54:00:00:00:07' nth='2' queues='8'/>") {
		t.Fatalf("the record does not name the second NIC:\n%s", out)
	}

	two := bytes.Replace(out, []byte(">8</vcpu>"), []byte(">2</vcpu>"), 1)
	out2, plan, err := Apply(pol, two)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.NICs[0].Kept || plan.NICs[0].Wanted != 3 {
		t.Errorf("hand-set NIC at 2 vCPUs: %+v", plan.NICs[0])
	}
	if n := plan.NICs[1]; n.Kept || n.Wanted != 2 || !n.Change() {
		t.Errorf("virtmq's NIC at 2 vCPUs: %+v (reason %q)", n, n.Reason)
	}
	d, err := Parse(out2)
	if err != nil {
		t.Fatal(err)
	}
	if q := []int{d.Interfaces[0].Queues, d.Interfaces[1].Queues}; q[0] != 3 || q[1] != 2 {
		t.Errorf("queues after the vCPU drop = %v, want [3 2]:\n%s", q, out2)
	}
	if w := []int{d.Interfaces[0].Written, d.Interfaces[1].Written}; w[0] != 0 || w[1] != 2 {
		t.Errorf("record after the vCPU drop = %v, want [0 2]", w)
	}
}
