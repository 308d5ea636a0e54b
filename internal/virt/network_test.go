package virt

import "testing"

func TestForwardMode(t *testing.T) {
	for _, tt := range []struct{ doc, want string }{
		{`<network><name>virtmq-e2e-hostdev</name><forward mode='hostdev' managed='yes'><pf dev='eth-nonexistent'/></forward></network>`, "hostdev"},
		{`<network><name>default</name><forward/><bridge name='virbr0'/></network>`, "nat"},
		{`<network><name>br</name><forward mode="bridge"/><bridge name='br0'/></network>`, "bridge"},
		{`<network><name>iso</name><bridge name='virbr9'/></network>`, ""},
	} {
		got, err := ForwardMode([]byte(tt.doc))
		if err != nil || got != tt.want {
			t.Errorf("ForwardMode(%s) = %q, %v; want %q", tt.doc, got, err, tt.want)
		}
	}
	if _, err := ForwardMode([]byte("<domain/>")); err == nil {
		t.Error("ForwardMode(<domain/>) did not fail")
	}
}
