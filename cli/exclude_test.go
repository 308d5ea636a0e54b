package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
	"github.com/virtmq/virtmq/policy"
)

func TestExcludeInclude(t *testing.T) {
	fake := virttest.New()
	define(t, fake, "web.xml")
	events, err := fake.Events(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r := newTestRun(t, fake, nil)
	if code := Main(context.Background(), r.env, []string{"exclude", "web"}); code != ExitOK {
		t.Fatalf("exclude: exit %d, stderr:\n%s", code, r.stderr)
	}
	wantLines(t, "exclude", r.stdout.String(), "web: excluded", "virtmq include web")
	if n := fake.Calls(virttest.MethodDefineXML); n != 0 {
		t.Errorf("exclude redefined the domain (%d DefineXML)", n)
	}
	ev := <-events
	if ev.Kind != virt.EventMetadataChanged || ev.Domain.Name != "web" || ev.Namespace != domxml.ExcludeNamespace {
		t.Errorf("event = %+v", ev)
	}
	doc, _ := fake.InactiveXML("web")
	dom, err := domxml.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !dom.Excluded {
		t.Fatalf("not excluded after exclude:\n%s", doc)
	}
	if plan := policy.Default().Decide(dom); plan.Skip == "" || !plan.Compliant() {
		t.Errorf("plan of an excluded domain: %+v", plan)
	}
	// Twice is fine and leaves one label.
	r = newTestRun(t, fake, nil)
	if code := Main(context.Background(), r.env, []string{"exclude", "web"}); code != ExitOK {
		t.Fatalf("exclude again: exit %d", code)
	}
	doc, _ = fake.InactiveXML("web")
	if n := strings.Count(string(doc), domxml.ExcludeNamespace); n != 1 {
		t.Errorf("%d exclude labels after excluding twice:\n%s", n, doc)
	}

	r = newTestRun(t, fake, nil)
	if code := Main(context.Background(), r.env, []string{"include", "web"}); code != ExitOK {
		t.Fatalf("include: exit %d, stderr:\n%s", code, r.stderr)
	}
	wantLines(t, "include", r.stdout.String(), "web: included")
	doc, _ = fake.InactiveXML("web")
	if dom, err := domxml.Parse(doc); err != nil || dom.Excluded || strings.Contains(string(doc), "<metadata") {
		t.Errorf("after include (%v):\n%s", err, doc)
	}
}

func TestExcludeRunningAndMissing(t *testing.T) {
	fake := virttest.New()
	define(t, fake, "web.xml")
	if err := fake.Start("web"); err != nil {
		t.Fatal(err)
	}
	r := newTestRun(t, fake, nil)
	if code := Main(context.Background(), r.env, []string{"exclude", "web", "nosuch"}); code != ExitFailure {
		t.Fatalf("exit %d, want 1", code)
	}
	wantLines(t, "stderr", r.stderr.String(), `failed to look up domain "nosuch"`)
	for _, get := range []func(string) ([]byte, bool){fake.InactiveXML, fake.LiveXML} {
		doc, _ := get("web")
		if dom, err := domxml.Parse(doc); err != nil || !dom.Excluded {
			t.Errorf("running domain not excluded in both XMLs (%v):\n%s", err, doc)
		}
	}
	r = newTestRun(t, fake, nil)
	if code := Main(context.Background(), r.env, []string{"exclude"}); code != ExitUsage {
		t.Errorf("no domain: exit %d, want %d", code, ExitUsage)
	}
}
