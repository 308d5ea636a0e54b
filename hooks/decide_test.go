package hooks

import (
	"strings"
	"testing"
)

// TestPrepareLeavesAlone: in enforce mode, the hook lets a domain start
// when the policy leaves it alone: the exclude label, a hand-set count, a
// vhost-user NIC, a domain type that is not virtmq's.
func TestPrepareLeavesAlone(t *testing.T) {
	pol := writePolicy(t, policyWith("enforce", "deny"))
	web1 := string(fixture(t, "web1.xml"))
	if r := run(t, pol, []byte(web1), "web1", "prepare", "begin", "-"); r.code != ExitDeny {
		t.Fatalf("the plain fixture must be refused for this test to mean anything: %+v", r)
	}
	for name, doc := range map[string]string{
		"exclude label": strings.Replace(web1, "</uuid>", "</uuid>\n  <metadata><virtmq:exclude xmlns:virtmq='https://virtmq.dev/xmlns/exclude/1'/></metadata>", 1),
		"hand-set":      strings.Replace(web1, "<model type='virtio'/>", "<model type='virtio'/><driver queues='1'/>", 1),
		"vhost-user":    strings.Replace(web1, "<interface type='bridge'>", "<interface type='vhostuser'>", 1),
		"xen domain":    strings.Replace(web1, "<domain type='kvm'>", "<domain type='xen'>", 1),
	} {
		if doc == web1 {
			t.Fatalf("%s: the fixture did not change", name)
		}
		if r := run(t, pol, []byte(doc), "web1", "prepare", "begin", "-"); r.code != ExitAllow {
			t.Errorf("%s: exit %d, stderr %q", name, r.code, r.stderr)
		}
	}
}
