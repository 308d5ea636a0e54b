package cli

import (
	"context"
	"testing"

	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// TestDetailedExitcode: plan and apply --dry-run report drift in their exit
// code with --detailed-exitcode only (terraform's 0 / 1 / 2).
func TestDetailedExitcode(t *testing.T) {
	fake := virttest.New()
	define(t, fake, "web.xml") // 1 and 2 queues: changes
	define(t, fake, "db.xml")  // complies
	for _, tt := range []struct {
		name string
		args []string
		want int
	}{
		{"plan changes, no flag", []string{"plan", "--policy", testPolicy, "testdata/web.xml"}, ExitOK},
		{"plan changes", []string{"plan", "--policy", testPolicy, "--detailed-exitcode", "testdata/web.xml"}, ExitChanges},
		{"plan json changes", []string{"plan", "--policy", testPolicy, "--json", "testdata/web.xml", "--detailed-exitcode"}, ExitChanges},
		{"plan no change", []string{"plan", "--policy", testPolicy, "--detailed-exitcode", "testdata/db.xml"}, ExitOK},
		{"plan error beats changes", []string{"plan", "--policy", testPolicy, "--detailed-exitcode", "testdata/web.xml", "testdata/nosuch.xml"}, ExitFailure},
		{"plan usage error, no flag", []string{"plan"}, ExitUsage},
		{"plan usage error", []string{"plan", "--detailed-exitcode"}, ExitFailure},
		{"plan bad flag", []string{"plan", "--detailed-exitcode", "--nosuch", "testdata/web.xml"}, ExitFailure},
		{"dry run changes, no flag", []string{"apply", "--policy", testPolicy, "--dry-run", "web"}, ExitOK},
		{"dry run changes", []string{"apply", "--policy", testPolicy, "--dry-run", "--detailed-exitcode", "web"}, ExitChanges},
		{"dry run all changes", []string{"apply", "--policy", testPolicy, "--dry-run", "--detailed-exitcode", "--all"}, ExitChanges},
		{"dry run no change", []string{"apply", "--policy", testPolicy, "--dry-run", "--detailed-exitcode", "db"}, ExitOK},
		{"dry run error", []string{"apply", "--policy", testPolicy, "--dry-run", "--detailed-exitcode", "web", "nosuch"}, ExitFailure},
		{"apply usage error", []string{"apply", "--dry-run", "--detailed-exitcode"}, ExitFailure},
		{"not with --cold-boot", []string{"apply", "--cold-boot", "--dry-run", "--detailed-exitcode", "--all"}, ExitFailure},
		{"=false", []string{"apply", "--policy", testPolicy, "--dry-run", "--detailed-exitcode=false", "web"}, ExitOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRun(t, fake, nil)
			if code := Main(context.Background(), r.env, tt.args); code != tt.want {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.want, r.stderr)
			}
		})
	}
	if n := fake.Calls(virttest.MethodDefineXML); n != 0 {
		t.Errorf("%d defines in dry runs", n)
	}
}

func TestBoolArg(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"--cold-boot"}, true},
		{[]string{"-cold-boot", "web"}, true},
		{[]string{"--cold-boot=false", "--all"}, false},
		{[]string{"--cold-boot=t"}, true},
		{[]string{"--cold-boot=TRUE"}, true},
		{[]string{"--cold-boot", "--cold-boot=0"}, false},
		{[]string{"--", "--cold-boot"}, false},
		{[]string{"--cold-boots"}, false},
		{[]string{"web"}, false},
	} {
		if got := boolArg(tc.args, "cold-boot"); got != tc.want {
			t.Errorf("boolArg(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
