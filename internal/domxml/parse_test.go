package domxml

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtmq/virtmq/policy"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseFixture(t *testing.T) {
	want := &policy.Domain{
		Name:         "web-01",
		UUID:         "8f3c2a4e-1b7d-4c9a-9e2f-0a1b2c3d4e5f",
		Type:         "kvm",
		Arch:         "x86_64",
		Machine:      "pc-q35-7.2",
		MaxVCPUs:     8,
		CurrentVCPUs: 4,
		OSID:         "http://debian.org/debian/12",
		Labels:       map[string]string{"tier": "web", "team": "platform"},
		MetadataNamespaces: []string{"http://libosinfo.org/xmlns/libvirt/domain/1.0", "https://virtmq.dev/xmlns/labels/1",
			"https://example.com/labels"},
		Interfaces: []policy.Interface{
			{Index: 0, Type: "network", Model: "virtio", MAC: "52:54:00:ab:cd:01", Network: "default", Bridge: "virbr0",
				HasDriver: true, DriverName: "vhost", Queues: 4, TargetDev: "vnet3", Alias: "net0"},
			{Index: 1, Type: "bridge", Model: "virtio", MAC: "52:54:00:ab:cd:02", Bridge: "br0"},
			{Index: 2, Type: "direct", Model: "virtio-non-transitional", MAC: "52:54:00:ab:cd:03", SourceDev: "eth1",
				HasDriver: true, DriverName: "qemu"},
			{Index: 3, Type: "ethernet", Model: "virtio", MAC: "52:54:00:ab:cd:04", TargetDev: "tap-web", TargetManaged: "no"},
			{Index: 4, Type: "vhostuser", Model: "virtio", MAC: "52:54:00:ab:cd:05", HasDriver: true, Queues: 2},
			{Index: 5, Type: "user", Model: "e1000e", MAC: "52:54:00:ab:cd:06"},
		},
	}
	got, err := Parse(readFixture(t, "full.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := domainDiff(want, got); diff != "" {
		t.Errorf("Parse(full.xml) (-want +got):\n%s", diff)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want *policy.Domain
	}{
		{
			name: "defaults",
			doc:  `<domain type="qemu"><name>tiny</name></domain>`,
			want: &policy.Domain{Name: "tiny", Type: "qemu", MaxVCPUs: 1, CurrentVCPUs: 1},
		},
		{
			name: "current defaults to the maximum",
			doc:  "<domain>\n<vcpu placement='static'>\n  6\n</vcpu></domain>",
			want: &policy.Domain{MaxVCPUs: 6, CurrentVCPUs: 6},
		},
		{
			name: "first name, uuid and vcpu win, as in libvirt",
			doc:  `<domain><name>a</name><name>b</name><uuid> u1 </uuid><uuid>u2</uuid><vcpu>2</vcpu><vcpu>x</vcpu></domain>`,
			want: &policy.Domain{Name: "a", UUID: "u1", MaxVCPUs: 2, CurrentVCPUs: 2},
		},
		{
			name: "metadata with a default namespace and an odd prefix",
			doc: `<domain><metadata>
  <labels xmlns="https://virtmq.dev/xmlns/labels/1"><label name="a">1</label><label name="b"/></labels>
  <q:libosinfo xmlns:q="http://libosinfo.org/xmlns/libvirt/domain/1.0"><q:os id="http://microsoft.com/win/2k19"/></q:libosinfo>
</metadata></domain>`,
			want: &policy.Domain{MaxVCPUs: 1, CurrentVCPUs: 1, OSID: "http://microsoft.com/win/2k19",
				Labels:             map[string]string{"a": "1", "b": ""},
				MetadataNamespaces: []string{"https://virtmq.dev/xmlns/labels/1", "http://libosinfo.org/xmlns/libvirt/domain/1.0"}},
		},
		{
			name: "metadata in other namespaces or undeclared prefixes is ignored",
			doc: `<domain><metadata>
  <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/2.0"><libosinfo:os id="v2"/></libosinfo:libosinfo>
  <virtmq:labels><virtmq:label name="undeclared">x</virtmq:label></virtmq:labels>
  <l:labels xmlns:l="https://virtmq.dev/xmlns/labels/1"><label name="no-namespace">x</label></l:labels>
  <m:wrap xmlns:m="https://virtmq.dev/xmlns/labels/1"><m:label name="not-in-labels">x</m:label></m:wrap>
</metadata>
<devices><metadata><labels xmlns="https://virtmq.dev/xmlns/labels/1"><label name="misplaced">x</label></labels></metadata></devices>
</domain>`,
			want: &policy.Domain{MaxVCPUs: 1, CurrentVCPUs: 1,
				MetadataNamespaces: []string{"http://libosinfo.org/xmlns/libvirt/domain/2.0", "https://virtmq.dev/xmlns/labels/1"}},
		},
		{
			name: "a later label of the same name wins",
			doc:  `<domain><metadata><v:labels xmlns:v="https://virtmq.dev/xmlns/labels/1"><v:label name="k">1</v:label><v:label name="k">2</v:label></v:labels></metadata></domain>`,
			want: &policy.Domain{MaxVCPUs: 1, CurrentVCPUs: 1, Labels: map[string]string{"k": "2"},
				MetadataNamespaces: []string{"https://virtmq.dev/xmlns/labels/1"}},
		},
		{
			name: "only interfaces directly under devices under domain count",
			doc: `<domain>
  <interface type="top"/>
  <metadata><x:devices xmlns:x="urn:x"><interface type="in-metadata"/></x:devices></metadata>
  <devices>
    <x:interface xmlns:x="urn:x" type="namespaced"/>
    <hub type="usb"><interface type="nested"/></hub>
    <interface type="bridge">
      <backend tap="/dev/net/tun"><driver queues="9"/></backend>
      <x:driver xmlns:x="urn:x" queues="7"/>
      <model type="virtio"/><model type="e1000"/>
      <driver name="vhost" queues="3"/>
      <driver name="qemu" queues="5"/>
      <source bridge="br0"><source bridge="inner"/></source>
    </interface>
  </devices>
  <devices><interface type="second-devices"/></devices>
</domain>`,
			want: &policy.Domain{MaxVCPUs: 1, CurrentVCPUs: 1, MetadataNamespaces: []string{"urn:x"}, Interfaces: []policy.Interface{
				{Index: 0, Type: "bridge", Model: "virtio", Bridge: "br0", HasDriver: true, DriverName: "vhost", Queues: 3},
				{Index: 1, Type: "second-devices"},
			}},
		},
		{
			// Who else keeps data in the domain: the namespaces of the
			// elements directly in the first <metadata>, each once, a
			// prefix bound on the root included (as oVirt writes it).
			name: "metadata namespaces, in order, each once",
			doc: `<domain xmlns:ovirt-vm="http://ovirt.org/vm/1.0"><metadata>
  <ovirt-vm:vm><nested xmlns="urn:nested"/></ovirt-vm:vm>
  <a:x xmlns:a="urn:a"/><b:y xmlns:b="urn:a"/>
  <unqualified/><undeclared:z/>
  <kubevirt xmlns="http://kubevirt.io"><uid/></kubevirt>
</metadata><metadata><late xmlns="urn:late"/></metadata></domain>`,
			want: &policy.Domain{MaxVCPUs: 1, CurrentVCPUs: 1,
				MetadataNamespaces: []string{"http://ovirt.org/vm/1.0", "urn:a", "http://kubevirt.io"}},
		},
		{
			name: "the first smbios sysinfo's first product",
			doc: `<domain><sysinfo type="fwcfg"><entry name="product">fw</entry></sysinfo>
<sysinfo type="smbios"><bios><entry name="product">bios</entry></bios><system>
  <entry name="manufacturer">Apache Software Foundation</entry>
  <entry name="product"> CloudStack KVM Hypervisor </entry>
  <entry name="product">second</entry>
</system></sysinfo><sysinfo type="smbios"><system><entry name="product">late</entry></system></sysinfo></domain>`,
			want: &policy.Domain{MaxVCPUs: 1, CurrentVCPUs: 1, SMBIOSProduct: "CloudStack KVM Hypervisor"},
		},
		{
			name: "queues 0 and entity-encoded values",
			doc:  `<domain><name>a&amp;b&#x20;c</name><devices><interface type="network"><driver queues="0"/><mac address="AA:bb:CC:&#x44;d:00:01"/></interface></devices></domain>`,
			want: &policy.Domain{Name: "a&b c", MaxVCPUs: 1, CurrentVCPUs: 1, Interfaces: []policy.Interface{
				{Type: "network", HasDriver: true, MAC: "aa:bb:cc:dd:00:01"},
			}},
		},
		{
			name: "byte order mark, prolog, comments and whitespace around the root",
			doc:  "\uFEFF<?xml version='1.0'?>\n<!-- c -->\n<domain type='kvm'/>\n<!-- trailing -->\n<?pi x?>\n",
			want: &policy.Domain{Type: "kvm", MaxVCPUs: 1, CurrentVCPUs: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := domainDiff(tt.want, got); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	// Every document carries a password: no error may repeat it.
	const secret = "s3cret"
	const gfx = `<graphics type='vnc' passwd='s3cret'/>`
	tests := []struct {
		name      string
		doc       string
		want      string // the exact error text
		notDomain bool   // errors.Is(err, ErrNotDomain)
	}{
		{
			name:      "network XML",
			doc:       "<network>\n  <name>default</name>\n</network>",
			want:      "line 1: root element is not <domain>: found <network>",
			notDomain: true,
		},
		{
			name:      "domain in a namespace",
			doc:       `<d:domain xmlns:d="urn:x"/>`,
			want:      `line 1: root element is not <domain>: found <domain> in namespace "urn:x"`,
			notDomain: true,
		},
		{
			name: "empty",
			doc:  "\n\n",
			want: "line 3: no root element",
		},
		{
			name: "truncated",
			doc:  "<domain>\n  <devices>\n" + gfx,
			want: "line 3: malformed XML: unexpected EOF",
		},
		{
			name: "mismatched end tag",
			doc:  "<domain>\n  <name>x</nam>\n</domain>",
			want: "line 2: malformed XML: element <name> closed by </nam>",
		},
		{
			name: "unquoted attribute",
			doc:  "<domain>\n" + gfx + "\n<vcpu current=2>4</vcpu></domain>",
			want: "line 3: malformed XML: unquoted or missing attribute value in element",
		},
		{
			name: "unknown entity inside a password",
			doc:  "<domain>\n<graphics type='vnc' passwd='s3cret&s3cret;'/>\n</domain>",
			want: "line 2: malformed XML: invalid character entity (only &amp; &lt; &gt; &quot; &apos; and character references are allowed)",
		},
		{
			name: "DOCTYPE declaring an entity",
			doc:  "<?xml version='1.0'?>\n<!DOCTYPE domain [<!ENTITY pw 's3cret'>]>\n<domain>" + gfx + "</domain>",
			want: "line 2: <!DOCTYPE> and other <!...> declarations are not allowed in domain XML",
		},
		{
			name: "text before the root",
			doc:  "#cloud-config\n<domain/>",
			want: "line 1: text before the root element",
		},
		{
			name: "second root",
			doc:  "<domain>" + gfx + "</domain>\n<domain/>",
			want: "line 2: element <domain> after the root element",
		},
		{
			name: "text after the root",
			doc:  "<domain/>\nx",
			want: "line 1: text after the root element",
		},
		{
			name: "vcpu not a number",
			doc:  "<domain>\n  " + gfx + "\n  <vcpu>x</vcpu>\n</domain>",
			want: `line 3: <vcpu> "x": not a number`,
		},
		{
			name: "vcpu zero",
			doc:  "<domain>\n  <vcpu>0</vcpu>\n</domain>",
			want: `line 2: <vcpu> "0": must be at least 1`,
		},
		{
			name: "vcpu current not a number",
			doc:  "<domain>\n  <vcpu current='two'>4</vcpu>\n</domain>",
			want: `line 2: <vcpu current="two">: not a number`,
		},
		{
			name: "vcpu current above the maximum",
			doc:  "<domain>\n\n  <vcpu current='8'>4</vcpu>\n</domain>",
			want: `line 3: <vcpu current="8">: more than the maximum of 4`,
		},
		{
			name: "queues not a number",
			doc: "<domain>\n  <devices>\n    " + gfx + "\n    <interface type='network'/>\n    <interface type='network'>\n" +
				"      <driver name='vhost'\n        queues=\"abc\"/>\n    </interface>\n  </devices>\n</domain>",
			want: `line 6: <interface> #1 <driver queues="abc">: not a number`,
		},
		{
			name: "queues negative",
			doc:  "<domain><devices><interface><driver queues='-1'/></interface></devices></domain>",
			want: `line 1: <interface> #0 <driver queues="-1">: not a number`,
		},
		{
			name: "queues out of range, long value shortened",
			doc:  "<domain><devices><interface><driver queues='99999999999999999999999999999999999999'/></interface></devices></domain>",
			want: `line 1: <interface> #0 <driver queues="99999999999999999999999999999999"...>: out of range`,
		},
		{
			name: "repeated attribute",
			doc:  "<domain>\n<devices><interface><driver queues='2' queues='4'/></interface></devices></domain>",
			want: "line 2: <driver>: attribute queues appears twice",
		},
		{
			name: "prefix bound to no namespace",
			doc:  "<domain><devices><interface><driver xmlns:p='' p:queues='2'/></interface></devices></domain>",
			want: "line 1: <driver>: namespace prefix p bound to an empty name",
		},
		{
			name: "label without a name",
			doc:  "<domain><metadata>\n<l:labels xmlns:l='https://virtmq.dev/xmlns/labels/1'><l:label>x</l:label></l:labels></metadata></domain>",
			want: "line 2: <label> without a name attribute",
		},
		{
			name: "encoding other than UTF-8",
			doc:  "<?xml version='1.0' encoding='ISO-8859-1'?><domain/>",
			want: `line 1: xml: encoding "ISO-8859-1" declared but Decoder.CharsetReader is nil`,
		},
		{
			name: "invalid UTF-8",
			doc:  "<domain>\n<name>\xff</name></domain>",
			want: "line 2: malformed XML: invalid UTF-8",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", d)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
			if got := errors.Is(err, ErrNotDomain); got != tt.notDomain {
				t.Errorf("errors.Is(err, ErrNotDomain) = %v, want %v", got, tt.notDomain)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error repeats the password: %v", err)
			}
			// Rewrite reads the document the same way and must refuse it too.
			if _, rerr := splice([]byte(tt.doc), nil); rerr == nil || rerr.Error() != err.Error() {
				t.Errorf("Rewrite error = %v, want the Parse error", rerr)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	doc := bytes.Repeat([]byte(" "), MaxSize+1)
	copy(doc, "<domain/>")
	_, err := Parse(doc)
	want := "document is 16777217 bytes, more than the 16777216-byte limit"
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v, want %s", err, want)
	}
}
