package domxml

import (
	"bytes"
	"strings"
	"testing"
)

// inDomain wraps <interface> elements in a small domain laid out the way
// virsh prints it (two spaces per level).
func inDomain(devices string) string {
	return "<domain type='kvm'>\n  <name>t</name>\n  <devices>\n" + devices + "\n  </devices>\n</domain>\n"
}

func TestRewrite(t *testing.T) {
	const extras = `<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment before the root -->
<domain type="kvm" xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0">
  <name>keep&amp;me</name>
  <description><![CDATA[<interface type='x'><driver queues='1'/></interface>]]></description>
  <metadata>
    <v:labels xmlns:v="https://virtmq.dev/xmlns/labels/1"><v:label name="k">&lt;v&gt;</v:label></v:labels>
  </metadata>
  <devices>
    <!-- <interface type='commented-out'/> -->
    <interface type="network">
      <source network="default"/>
      <?virtmq note?>
      <model type="virtio"/>
    </interface>
    <graphics type="vnc" passwd="&quot;&amp;&apos;" keymap='en-us'/>
  </devices>
  <qemu:commandline><qemu:arg value="-S"/></qemu:commandline>
</domain>
<!-- a comment after it -->
`
	tests := []struct {
		name   string
		in     string
		queues map[int]int
		want   string
	}{
		// Replacing an existing value.
		{
			name:   "replace single-quoted",
			in:     inDomain("    <interface type='network'>\n      <driver name='vhost' queues='2'/>\n    </interface>"),
			queues: map[int]int{0: 4},
			want:   inDomain("    <interface type='network'>\n      <driver name='vhost' queues='4'/>\n    </interface>"),
		},
		{
			name:   "replace double-quoted",
			in:     inDomain(`    <interface type="network"><driver queues="2" name="vhost"/></interface>`),
			queues: map[int]int{0: 16},
			want:   inDomain(`    <interface type="network"><driver queues="16" name="vhost"/></interface>`),
		},
		{
			name:   "replace with whitespace around = and newlines in the tag",
			in:     inDomain("    <interface type='network'><driver name='vhost'\n        queues =\n '2'\n/></interface>"),
			queues: map[int]int{0: 8},
			want:   inDomain("    <interface type='network'><driver name='vhost'\n        queues =\n '8'\n/></interface>"),
		},
		{
			name:   "replace an entity-encoded value",
			in:     inDomain(`    <interface type="network"><driver queues="&#50;"/></interface>`),
			queues: map[int]int{0: 3},
			want:   inDomain(`    <interface type="network"><driver queues="3"/></interface>`),
		},
		{
			name:   "replace only queues among xqueues and queues_x",
			in:     inDomain(`    <interface type="network"><driver xqueues="2" queues_x='2' queues="2" v:queues="2" xmlns:v="urn:v"/></interface>`),
			queues: map[int]int{0: 5},
			want:   inDomain(`    <interface type="network"><driver xqueues="2" queues_x='2' queues="5" v:queues="2" xmlns:v="urn:v"/></interface>`),
		},
		{
			name:   "replace after a > inside a quoted value",
			in:     inDomain(`    <interface type="network"><driver txmode="a>b/>" queues='2'/></interface>`),
			queues: map[int]int{0: 4},
			want:   inDomain(`    <interface type="network"><driver txmode="a>b/>" queues='4'/></interface>`),
		},
		{
			name:   "count 1 where queues exist",
			in:     inDomain(`    <interface type="network"><driver queues="4"/></interface>`),
			queues: map[int]int{0: 1},
			want:   inDomain(`    <interface type="network"><driver queues="1"/></interface>`),
		},
		{
			name:   "count 0 where queues exist means one pair",
			in:     inDomain(`    <interface type="network"><driver queues="4"/></interface>`),
			queues: map[int]int{0: 0},
			want:   inDomain(`    <interface type="network"><driver queues="1"/></interface>`),
		},
		{
			name:   "queues 0 set to 1",
			in:     inDomain(`    <interface type="network"><driver queues="0"/></interface>`),
			queues: map[int]int{0: 1},
			want:   inDomain(`    <interface type="network"><driver queues="1"/></interface>`),
		},

		// Appending to an existing <driver>.
		{
			name:   "append to driver name vhost",
			in:     inDomain("    <interface type='network'>\n      <model type='virtio'/>\n      <driver name='vhost'/>\n    </interface>"),
			queues: map[int]int{0: 4},
			want:   inDomain("    <interface type='network'>\n      <model type='virtio'/>\n      <driver name='vhost' queues='4'/>\n    </interface>"),
		},
		{
			name:   "append keeps the space before />",
			in:     inDomain(`    <interface type="network"><driver name="vhost" /></interface>`),
			queues: map[int]int{0: 4},
			want:   inDomain(`    <interface type="network"><driver name="vhost" queues="4" /></interface>`),
		},
		{
			name: "append to a driver with children",
			in: inDomain("    <interface type='network'>\n      <driver name='vhost' txmode='iothread'>\n" +
				"        <host csum='off'/>\n        <guest tso4='off'/>\n      </driver>\n    </interface>"),
			queues: map[int]int{0: 4},
			want: inDomain("    <interface type='network'>\n      <driver name='vhost' txmode='iothread' queues='4'>\n" +
				"        <host csum='off'/>\n        <guest tso4='off'/>\n      </driver>\n    </interface>"),
		},
		{
			name:   "append to a multi-line driver tag",
			in:     inDomain("    <interface type='network'>\n      <driver name='vhost'\n              rx_queue_size='1024'\n              />\n    </interface>"),
			queues: map[int]int{0: 4},
			want:   inDomain("    <interface type='network'>\n      <driver name='vhost'\n              rx_queue_size='1024' queues='4'\n              />\n    </interface>"),
		},
		{
			name:   "append takes the driver's quote over the interface's",
			in:     inDomain(`    <interface type="network"><driver name='vhost'/></interface>`),
			queues: map[int]int{0: 4},
			want:   inDomain(`    <interface type="network"><driver name='vhost' queues='4'/></interface>`),
		},
		{
			name:   "append to a driver without attributes takes the interface's quote",
			in:     inDomain(`    <interface type="network"><driver/><driver><host csum="off"/></driver></interface>`),
			queues: map[int]int{0: 4},
			want:   inDomain(`    <interface type="network"><driver queues="4"/><driver><host csum="off"/></driver></interface>`),
		},
		{
			name:   "append to a childful driver without attributes",
			in:     inDomain(`    <interface type="network"><driver><host csum="off"/></driver></interface>`),
			queues: map[int]int{0: 4},
			want:   inDomain(`    <interface type="network"><driver queues="4"><host csum="off"/></driver></interface>`),
		},
		{
			name:   "append without attributes anywhere uses '",
			in:     inDomain(`    <interface><driver/></interface>`),
			queues: map[int]int{0: 4},
			want:   inDomain(`    <interface><driver queues='4'/></interface>`),
		},
		{
			name:   "append next to look-alike attributes",
			in:     inDomain(`    <interface type="network"><driver xqueues="9" queues_x="9" v:queues="9" xmlns:v="urn:v"/></interface>`),
			queues: map[int]int{0: 4},
			want:   inDomain(`    <interface type="network"><driver xqueues="9" queues_x="9" v:queues="9" xmlns:v="urn:v" queues="4"/></interface>`),
		},
		{
			name:   "append after a > inside a quoted value",
			in:     inDomain(`    <interface type="network"><driver name='vhost' txmode='a>b'/></interface>`),
			queues: map[int]int{0: 4},
			want:   inDomain(`    <interface type="network"><driver name='vhost' txmode='a>b' queues='4'/></interface>`),
		},
		{
			name:   "append between attributes with no space (encoding/xml accepts it)",
			in:     inDomain(`    <interface type="network"><driver name='vhost'txmode='iothread'/></interface>`),
			queues: map[int]int{0: 4},
			want:   inDomain(`    <interface type="network"><driver name='vhost'txmode='iothread' queues='4'/></interface>`),
		},

		// Inserting a new <driver>.
		{
			name: "insert, 2-space indentation",
			in: "<domain type='kvm'>\n  <devices>\n    <interface type='bridge'>\n      <mac address='52:54:00:00:00:01'/>\n" +
				"      <source bridge='br0'/>\n      <model type='virtio'/>\n    </interface>\n  </devices>\n</domain>\n",
			queues: map[int]int{0: 4},
			want: "<domain type='kvm'>\n  <devices>\n    <interface type='bridge'>\n      <mac address='52:54:00:00:00:01'/>\n" +
				"      <source bridge='br0'/>\n      <model type='virtio'/>\n      <driver queues='4'/>\n    </interface>\n  </devices>\n</domain>\n",
		},
		{
			name: "insert, 4-space indentation and double quotes",
			in: "<domain type=\"kvm\">\n    <devices>\n        <interface type=\"bridge\">\n            <source bridge=\"br0\"/>\n" +
				"            <model type=\"virtio\"/>\n        </interface>\n    </devices>\n</domain>\n",
			queues: map[int]int{0: 4},
			want: "<domain type=\"kvm\">\n    <devices>\n        <interface type=\"bridge\">\n            <source bridge=\"br0\"/>\n" +
				"            <model type=\"virtio\"/>\n            <driver queues=\"4\"/>\n        </interface>\n    </devices>\n</domain>\n",
		},
		{
			name:   "insert, tab indentation",
			in:     "<domain>\n\t<devices>\n\t\t<interface type='bridge'>\n\t\t\t<model type='virtio'/>\n\t\t</interface>\n\t</devices>\n</domain>",
			queues: map[int]int{0: 4},
			want:   "<domain>\n\t<devices>\n\t\t<interface type='bridge'>\n\t\t\t<model type='virtio'/>\n\t\t\t<driver queues='4'/>\n\t\t</interface>\n\t</devices>\n</domain>",
		},
		{
			name:   "insert, CRLF line endings",
			in:     "<domain>\r\n  <devices>\r\n    <interface type='bridge'>\r\n      <model type='virtio'/>\r\n    </interface>\r\n  </devices>\r\n</domain>\r\n",
			queues: map[int]int{0: 4},
			want:   "<domain>\r\n  <devices>\r\n    <interface type='bridge'>\r\n      <model type='virtio'/>\r\n      <driver queues='4'/>\r\n    </interface>\r\n  </devices>\r\n</domain>\r\n",
		},
		{
			name:   "insert, one line",
			in:     inDomain(`    <interface type='network'><model type='virtio'/></interface>`),
			queues: map[int]int{0: 4},
			want:   inDomain(`    <interface type='network'><model type='virtio'/><driver queues='4'/></interface>`),
		},
		{
			name:   "insert after a trailing comment, indented like it",
			in:     inDomain("    <interface type='network'>\n      <model type='virtio'/>\n      <!-- keep me -->\n    </interface>"),
			queues: map[int]int{0: 4},
			want:   inDomain("    <interface type='network'>\n      <model type='virtio'/>\n      <!-- keep me -->\n      <driver queues='4'/>\n    </interface>"),
		},
		{
			name:   "insert into an empty interface",
			in:     inDomain(`    <interface type="user"></interface>`),
			queues: map[int]int{0: 4},
			want:   inDomain(`    <interface type="user"><driver queues="4"/></interface>`),
		},
		{
			name:   "insert into a blank interface",
			in:     inDomain("    <interface type='user'>\n    </interface>"),
			queues: map[int]int{0: 4},
			want:   inDomain("    <interface type='user'><driver queues='4'/>\n    </interface>"),
		},
		{
			name:   "insert into a self-closing interface",
			in:     inDomain(`    <interface type="network" />`),
			queues: map[int]int{0: 4},
			want:   inDomain(`    <interface type="network" ><driver queues="4"/></interface>`),
		},
		{
			name:   "insert ignores a driver in another namespace",
			in:     inDomain(`    <interface type="network"><x:driver xmlns:x="urn:x" queues="2"/></interface>`),
			queues: map[int]int{0: 4},
			want:   inDomain(`    <interface type="network"><x:driver xmlns:x="urn:x" queues="2"/><driver queues="4"/></interface>`),
		},
		{
			name:   "comments, CDATA, entities, PIs and namespaces are kept",
			in:     extras,
			queues: map[int]int{0: 4},
			want: strings.Replace(extras, "      <model type=\"virtio\"/>\n",
				"      <model type=\"virtio\"/>\n      <driver queues=\"4\"/>\n", 1),
		},

		// Leaving things alone.
		{
			name:   "count 1 without queues",
			in:     inDomain(`    <interface type="network"><driver name="vhost"/></interface><interface type="network"/>`),
			queues: map[int]int{0: 1, 1: 1},
			want:   inDomain(`    <interface type="network"><driver name="vhost"/></interface><interface type="network"/>`),
		},
		{
			name:   "count 0 without queues",
			in:     inDomain(`    <interface type="network"></interface>`),
			queues: map[int]int{0: 0},
			want:   inDomain(`    <interface type="network"></interface>`),
		},
		{
			name:   "already at the count, in an odd spelling",
			in:     inDomain(`    <interface type="network"><driver queues=" 04 "/></interface>`),
			queues: map[int]int{0: 4},
			want:   inDomain(`    <interface type="network"><driver queues=" 04 "/></interface>`),
		},
		{
			name:   "no interfaces asked for",
			in:     extras,
			queues: nil,
			want:   extras,
		},
		{
			name: "only the listed interfaces change",
			in: inDomain("    <interface type='network'>\n      <model type='virtio'/>\n    </interface>\n" +
				"    <interface type='bridge'>\n      <model type='virtio'/>\n    </interface>\n" +
				"    <interface type='direct'>\n      <driver queues='2'/>\n    </interface>"),
			queues: map[int]int{1: 6, 2: 6},
			want: inDomain("    <interface type='network'>\n      <model type='virtio'/>\n    </interface>\n" +
				"    <interface type='bridge'>\n      <model type='virtio'/>\n      <driver queues='6'/>\n    </interface>\n" +
				"    <interface type='direct'>\n      <driver queues='6'/>\n    </interface>"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splice([]byte(tt.in), tt.queues)
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			if string(got) != tt.want {
				t.Fatalf("Rewrite (-want +got):\n%s", lineDiff(tt.want, string(got)))
			}
			again, err := splice(got, tt.queues)
			if err != nil {
				t.Fatalf("second Rewrite: %v", err)
			}
			if !bytes.Equal(again, got) {
				t.Errorf("second Rewrite is not a no-op (-first +second):\n%s", lineDiff(string(got), string(again)))
			}
			before, err := scan([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			after, err := Parse(got)
			if err != nil {
				t.Fatalf("Parse(rewritten): %v", err)
			}
			for i, ifc := range after.Interfaces {
				want := before.dom.Interfaces[i].Queues
				if n, ok := tt.queues[i]; ok && (n > 1 || before.spans[i].hasQueues) {
					want = max(n, 1)
				}
				if ifc.Queues != want {
					t.Errorf("interface #%d: Parse(rewritten) reports queues %d, want %d", i, ifc.Queues, want)
				}
			}
		})
	}
}

func TestRewriteNoChangeIsACopy(t *testing.T) {
	in := []byte(inDomain(`    <interface type="network"><driver queues="4"/></interface>`))
	got, err := splice(in, map[int]int{0: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, in) {
		t.Fatalf("Rewrite changed the document:\n%s", lineDiff(string(in), string(got)))
	}
	// The caller may edit the result; the input must not move with it.
	got[0] = 'X'
	if in[0] != '<' {
		t.Error("Rewrite returned the input slice itself")
	}
}

func TestRewriteErrors(t *testing.T) {
	two := inDomain(`    <interface type="network"/><interface type="bridge"><driver queues="2"/></interface>`)
	tests := []struct {
		name   string
		in     string
		queues map[int]int
		want   string
	}{
		{"index past the end", two, map[int]int{0: 4, 2: 4, 7: 4}, "no <interface> #2: the domain has 2"},
		{"negative index", two, map[int]int{-1: 4}, "no <interface> #-1: the domain has 2"},
		{"no interfaces at all", inDomain(""), map[int]int{0: 4}, "no <interface> #0: the domain has 0"},
		{"count too large", two, map[int]int{1: 65536}, "<interface> #1: queues 65536 is outside 0..65535"},
		{"negative count", two, map[int]int{0: -4}, "<interface> #0: queues -4 is outside 0..65535"},
		{"not a domain", "<network/>", map[int]int{0: 4}, "line 1: root element is not <domain>: found <network>"},
		{"malformed", "<domain>", nil, "line 1: malformed XML: unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splice([]byte(tt.in), tt.queues)
			if err == nil {
				t.Fatalf("Rewrite succeeded:\n%s", got)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

func BenchmarkParseRewrite(b *testing.B) {
	doc := readFixture(b, "bench-4nic.xml")
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		d, err := Parse(doc)
		if err != nil {
			b.Fatal(err)
		}
		q := make(map[int]int, len(d.Interfaces))
		for _, ifc := range d.Interfaces {
			q[ifc.Index] = 4
		}
		if _, err := splice(doc, q); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	doc := readFixture(b, "bench-4nic.xml")
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := Parse(doc); err != nil {
			b.Fatal(err)
		}
	}
}
