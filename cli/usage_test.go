package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// TestUsageErrorsSayWhy: every usage error exits 2 and says in its first
// line what was wrong, then the synopsis and where the help is; never the
// whole help.
func TestUsageErrorsSayWhy(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"plan"}, `virtmq plan: missing DOMAIN.xml (one or more domain XML files; "-" reads stdin)`},
		{[]string{"rewrite", "a", "b"}, `virtmq rewrite: unexpected argument "b": rewrite takes one DOMAIN.xml`},
		{[]string{"verify"}, "virtmq verify: missing DOMAIN (the running domain to check)"},
		{[]string{"verify", "a", "b"}, `virtmq verify: unexpected argument "b": verify takes one DOMAIN`},
		{[]string{"exclude"}, "virtmq exclude: missing DOMAIN (one or more domain names)"},
		{[]string{"include"}, "virtmq include: missing DOMAIN (one or more domain names)"},
		{[]string{"status", "extra"}, `virtmq status: unexpected argument "extra": status takes no arguments`},
		{[]string{"mode", "extra"}, `virtmq mode: unexpected argument "extra": mode takes no arguments`},
		{[]string{"completion"}, "virtmq completion: missing SHELL (bash or zsh)"},
		{[]string{"completion", "fish"}, `virtmq completion: unknown shell "fish": want bash or zsh`},
		{[]string{"apply"}, "virtmq apply: give --all or domain names"},
		{[]string{"apply", "--all", "web"}, "virtmq apply: give --all or domain names, not both"},
		{[]string{"apply", "-c", "qemu:///system", "--connect-socket", "/x", "--all"}, "virtmq apply: give -c/--connect or --connect-socket, not both"},
		{[]string{"apply", "-o", "json", "--all"}, `virtmq apply: invalid value "json" for -o: want wide`},
		{[]string{"apply", "--frob"}, "virtmq apply: unknown option --frob"},
		{[]string{"plan", "--policy"}, "virtmq plan: missing value of option --policy"},
		{[]string{"plan", "-o", "yaml", "x.xml"}, `virtmq plan: invalid value "yaml" for -o: want wide or json`},
		{[]string{"plan", "--json", "-o", "wide", "x.xml"}, "virtmq plan: give --json (-o json) or -o wide (--wide), not both"},
		{[]string{"status", "-o", "json", "--wide"}, "virtmq status: give --json (-o json) or -o wide (--wide), not both"},
		{[]string{"status", "--color=sometimes"}, `virtmq status: invalid value "sometimes" for --color: want auto, always or never`},
		{[]string{"apply", "--cold-boot"}, "virtmq apply --cold-boot: give --all or domain names or globs"},
		{[]string{"apply", "--cold-boot", "--all", "web"}, "virtmq apply --cold-boot: give --all or domain names or globs, not both"},
		{[]string{"apply", "--cold-boot", "--parallel", "0", "--all"}, "virtmq apply --cold-boot: --parallel 0: give at least 1"},
		{[]string{"apply", "--cold-boot", "--shutdown-timeout", "0s", "--all"}, "virtmq apply --cold-boot: --shutdown-timeout 0s: give a duration above 0"},
		{[]string{"apply", "--cold-boot", "--boot-timeout", "-1s", "--all"}, "virtmq apply --cold-boot: --boot-timeout -1s: give a duration above 0"},
		{[]string{"apply", "--cold-boot", "[", "--dry-run"}, `virtmq apply --cold-boot: bad glob "["`},
		{[]string{"lint", "--policy", "p.yaml", "q.yaml"}, "virtmq lint: give --policy FILE or FILE arguments, not both"},
		{[]string{"-x", "plan"}, "virtmq: unknown option -x before the command"},
		{[]string{"--policy"}, "virtmq: missing value of option --policy"},
		{[]string{"--policy", "p.yaml"}, "virtmq: --policy p.yaml given but no command"},
		{[]string{}, "virtmq: no command given"},
		{[]string{"frobnicate"}, `virtmq: unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, `virtmq help: unknown command "frobnicate"`},
		{[]string{"-c", "qemu:///system", "plan", "x.xml"}, "virtmq plan: unknown option -c"},
	} {
		r := newTestRun(t, virttest.New(), nil)
		code := Main(context.Background(), r.env, tt.args)
		if code != ExitUsage {
			t.Errorf("%q: exit %d, want %d", tt.args, code, ExitUsage)
		}
		first, _, _ := strings.Cut(r.stderr.String(), "\n")
		if !strings.HasPrefix(first, tt.want) {
			t.Errorf("%q: first line %q, want %q", tt.args, first, tt.want)
		}
		if strings.Contains(r.stderr.String(), "Options:") {
			t.Errorf("%q: prints the whole help:\n%s", tt.args, r.stderr)
		}
		if len(r.uris) > 0 {
			t.Errorf("%q: dialled libvirt on a usage error", tt.args)
		}
	}
}

// TestGlobalFlagsBeforeCommand: -c, --connect-socket, --policy,
// --status-socket and --color may come before the command, as with virsh
// -c URI CMD; an option after the command wins.
func TestGlobalFlagsBeforeCommand(t *testing.T) {
	fake := virttest.New()
	define(t, fake, "web.xml")
	for _, tt := range []struct {
		args    []string
		wantURI string
	}{
		{[]string{"-c", "qemu+unix:///system?socket=/a", "apply", "--dry-run", "--policy", testPolicy, "--all"}, "qemu+unix:///system?socket=/a"},
		{[]string{"--connect=qemu+unix:///system?socket=/b", "apply", "--dry-run", "--policy", testPolicy, "web"}, "qemu+unix:///system?socket=/b"},
		{[]string{"--connect-socket", "/c", "--policy", testPolicy, "apply", "--dry-run", "--all"}, "qemu+unix:///system?socket=/c"},
		{[]string{"-c", "qemu+unix:///system?socket=/a", "apply", "-c", "qemu+unix:///system?socket=/d", "--dry-run", "--policy", testPolicy, "--all"}, "qemu+unix:///system?socket=/d"},
	} {
		r := newTestRun(t, fake, nil)
		if code := Main(context.Background(), r.env, tt.args); code != ExitOK {
			t.Errorf("%q: exit %d: %s", tt.args, code, r.stderr)
		}
		if len(r.uris) != 1 || r.uris[0] != tt.wantURI {
			t.Errorf("%q: dialled %v, want %s", tt.args, r.uris, tt.wantURI)
		}
	}
	r := newTestRun(t, nil, nil)
	if code := Main(context.Background(), r.env, []string{"--policy", testPolicy, "plan", web1}); code != ExitOK {
		t.Errorf("--policy F plan: exit %d: %s", code, r.stderr)
	}
	wantLines(t, "--policy F plan", r.stdout.String(), "web1", "RULE")
	wantNot(t, "--policy F plan", r.stderr.String(), "built-in default")

	sock := serveStatus(t, testSnapshot())
	r = newTestRun(t, nil, nil)
	if code := Main(context.Background(), r.env, []string{"--status-socket", sock, "--color=always", "status"}); code != ExitOK && code != ExitFailure {
		t.Errorf("--status-socket S status: exit %d: %s", code, r.stderr)
	}
	wantLines(t, "--status-socket S --color=always status", r.stdout.String(), "DOMAIN", "\033[")
}

// TestHelpHelp: virtmq help help says what help does; help takes one
// command.
func TestHelpHelp(t *testing.T) {
	r := newTestRun(t, nil, nil)
	if code := Main(context.Background(), r.env, []string{"help", "help"}); code != ExitOK {
		t.Errorf("help help: exit %d", code)
	}
	wantLines(t, "help help", r.stdout.String(), "Usage: virtmq help [COMMAND]")
	r = newTestRun(t, nil, nil)
	if code := Main(context.Background(), r.env, []string{"-c", "qemu:///system", "help", "apply"}); code != ExitOK {
		t.Errorf("-c URI help apply: exit %d: %s", code, r.stderr)
	}
	wantLines(t, "-c URI help apply", r.stdout.String(), "Usage: virtmq apply")
	r = newTestRun(t, nil, nil)
	if code := Main(context.Background(), r.env, []string{"help", "plan", "apply"}); code != ExitUsage {
		t.Errorf("help plan apply: exit %d", code)
	}
}

// TestHelpIsGNUStyle: help spells options --name, a short alias beside
// its long name, placeholders in capitals, and no Go-style "-json" or
// "(default true)"; the command list is aligned.
func TestHelpIsGNUStyle(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"apply", "--help"}, {"apply", "--cold-boot", "--help"}, {"plan", "--help"},
		{"status", "--help"}, {"verify", "--help"}, {"lint", "--help"}, {"exclude", "--help"}, {"mode", "--help"}, {"rewrite", "--help"}, {"completion", "--help"}} {
		r := newTestRun(t, nil, nil)
		if code := Main(context.Background(), r.env, args); code != ExitOK {
			t.Errorf("%q: exit %d", args, code)
		}
		out := r.stdout.String()
		for _, l := range strings.Split(out, "\n") {
			trim := strings.TrimSpace(l)
			if strings.HasPrefix(trim, "-") && len(trim) > 2 && trim[1] != '-' && trim[2] != ',' && trim[2] != ' ' {
				t.Errorf("%q: Go-style option line %q", args, l)
			}
		}
		wantNot(t, strings.Join(args, " "), out, "(default true)", "(default false)", "this long", "-policy file", "\t")
	}
	r := newTestRun(t, nil, nil)
	Main(context.Background(), r.env, []string{"apply", "--help"})
	wantLines(t, "apply --help", r.stdout.String(), "  -c, --connect URI ", "      --policy FILE ", "  -o FORMAT ", "      --dry-run ", "also takes --color=WHEN")
	r = newTestRun(t, nil, nil)
	Main(context.Background(), r.env, []string{"apply", "--cold-boot", "--help"})
	wantLines(t, "apply --cold-boot --help", r.stdout.String(), "      --boot-timeout DURATION\n", "(default 5m)", "      --shutdown-timeout DURATION", "(default 2m)")
	r = newTestRun(t, nil, nil)
	Main(context.Background(), r.env, []string{"status", "--help"})
	wantLines(t, "status --help", r.stdout.String(), "Usage: virtmq status [--json | -o wide|json]", "  -o FORMAT ")
	r = newTestRun(t, nil, nil)
	Main(context.Background(), r.env, []string{"--help"})
	wantLines(t, "--help", r.stdout.String(), "  completion  print the bash", "  lint        check the policy")
}
