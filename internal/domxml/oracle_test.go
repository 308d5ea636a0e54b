package domxml

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// TestStripDrivers checks the corpus test's oracle: it must hide exactly
// what Rewrite may change, and nothing else.
func TestStripDrivers(t *testing.T) {
	base := inDomain("    <interface type='network'>\n      <model type='virtio'/>\n      <driver name='vhost'/>\n    </interface>\n" +
		"    <interface type='bridge'>\n      <model type='virtio'/>\n    </interface>")
	tests := []struct {
		name string
		b    string
		same bool
	}{
		{"identical", base, true},
		{"queues appended", replace(base, "<driver name='vhost'/>", "<driver name='vhost' queues='4'/>"), true},
		{"driver inserted", replace(base, "      <model type='virtio'/>\n    </interface>\n  </devices>",
			"      <model type='virtio'/>\n      <driver queues='4'/>\n    </interface>\n  </devices>"), true},
		{"driver name changed", replace(base, "name='vhost'", "name='qemu'"), false},
		{"a byte outside changed", replace(base, "bridge", "bridgf"), false},
		{"indentation changed", replace(base, "      <model type='virtio'/>\n    </interface>\n  </devices>",
			"        <model type='virtio'/>\n    </interface>\n  </devices>"), false},
		{"driver with other attributes inserted", replace(base, "      <model type='virtio'/>\n    </interface>\n  </devices>",
			"      <model type='virtio'/>\n      <driver name='qemu' queues='4'/>\n    </interface>\n  </devices>"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := stripDrivers([]byte(base))
			if err != nil {
				t.Fatal(err)
			}
			b, err := stripDrivers([]byte(tt.b))
			if err != nil {
				t.Fatal(err)
			}
			if got := bytes.Equal(a, b); got != tt.same {
				t.Errorf("same after stripping = %v, want %v:\n%s", got, tt.same, lineDiff(string(a), string(b)))
			}
		})
	}
}

// replace is strings.Replace once, failing loudly when a test's edit no
// longer matches its base document.
func replace(s, old, new string) string {
	if !strings.Contains(s, old) {
		panic("replace: " + old + " not found")
	}
	return strings.Replace(s, old, new, 1)
}

func TestSplitDocuments(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		ok   bool
	}{
		{"<a/>\n", []string{"<a/>\n"}, true},
		{"<?xml version='1.0'?>\n<a/>\n<b>x</b>\n<!-- end -->\n", []string{"<?xml version='1.0'?>\n<a/>", "\n<b>x</b>\n<!-- end -->\n"}, true},
		{"#cloud-config\n<a/>", nil, false},
		{"<a>", []string{"<a>"}, true},
	}
	for _, tt := range tests {
		got, ok := splitDocuments([]byte(tt.in))
		var gs []string
		for _, g := range got {
			gs = append(gs, string(g))
		}
		if ok != tt.ok || !slices.Equal(gs, tt.want) {
			t.Errorf("splitDocuments(%q) = %q, %v; want %q, %v", tt.in, gs, ok, tt.want, tt.ok)
		}
	}
}
