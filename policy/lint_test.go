package policy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestWarnings(t *testing.T) {
	for _, tt := range []struct {
		name, src string
		want      []string
	}{
		{"clean", "rules:\n  - {name: a, match: {domain: web1}}\n  - {name: b, match: {domain: \"web*\"}}\n", nil},
		{"after a catch-all", "rules:\n  - name: all\n    set: {max: 2}\n  - name: late\n    match: {domain: x}\n",
			[]string{"p.yaml:6:5: rules[1]: warning: rule late can never match: rule all (p.yaml:4:5) before it matches every NIC"}},
		{"shadowed by a glob", "rules:\n  - {name: web, match: {domain: \"web*\"}}\n  - {name: web1, match: {domain: web1}}\n",
			[]string{"p.yaml:5:5: rules[1]: warning: rule web1 can never match: rule web (p.yaml:4:5) before it matches every NIC it would"}},
		{"narrower conditions are shadowed too", "rules:\n  - {name: big, match: {vcpus: \"8-\"}}\n  - {name: db, match: {vcpus: \"16-32\", bridge: br0, nic_type: bridge}}\n",
			[]string{"p.yaml:5:5: rules[1]: warning: rule db can never match: rule big (p.yaml:4:5) before it matches every NIC it would"}},
		{"not shadowed when wider", "rules:\n  - {name: web1, match: {domain: web1}}\n  - {name: web, match: {domain: \"web*\"}}\n  - {name: br, match: {vcpus: \"8-\", bridge: br0}}\n  - {name: big, match: {vcpus: \"4-\"}}\n", nil},
		{"hexadecimal", "defaults: {max: 0x10}\n",
			[]string{"p.yaml:3:17: defaults.max: warning: 0x10 is not written in decimal: it means 16"}},
		{"never reached", "defaults: {min_vcpus: 1000000}\nrules:\n  - {name: huge, match: {vcpus: \"5000-\"}}\n",
			[]string{"p.yaml:3:23: defaults.min_vcpus: warning: min_vcpus 1000000 is never reached: no guest has more than 4096 vCPUs, so every NIC is left alone",
				"p.yaml:5:18: rules[0].match: warning: vcpus 5000- can never hold: no guest has more than 4096 vCPUs"}},
		{"libosinfo only", "rules:\n  - {name: win, match: {os: \"http://microsoft.com/win/*\"}}\n",
			[]string{"p.yaml:4:17: rules[0].match: note: rule win matches on os, the libosinfo id virt-install and virt-manager record; domains defined without it (by hand, by terraform, by other tools) fall to later rules or the defaults"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, "\n"+tt.src)
			var got []string
			for _, w := range p.Warnings() {
				got = append(got, w.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestWarningsAcrossDropIns: a drop-in rule runs first, so the main file's
// rule it shadows is the one reported, at its own file.
func TestWarningsAcrossDropIns(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("version: 1\nrules:\n  - {name: web1, match: {domain: web1}, set: {max: 2}}\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "policy.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "policy.d", "10-web.yaml"), []byte("rules:\n  - {name: web, match: {domain: \"web*\"}, exclude: true}\n"), 0o644)
	p, err := Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	w := p.Warnings()
	if len(w) != 1 || w[0].File != filepath.Join(dir, "policy.yaml") || w[0].Line != 3 || !strings.Contains(w[0].Msg, "rule web1 can never match: rule web ("+filepath.Join(dir, "policy.d", "10-web.yaml")+":2:5)") {
		t.Errorf("warnings: %v", w)
	}
}

// TestDropInReplacesRule: a drop-in rule named like a main-file rule
// replaces it (the drop-in's settings decide, the main one is gone), and
// lint warns with both places.
func TestDropInReplacesRule(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "p.yaml")
	drop := filepath.Join(dir, "policy.d", "10-db.yaml")
	if err := os.MkdirAll(filepath.Dir(drop), 0o755); err != nil {
		t.Fatal(err)
	}
	for f, text := range map[string]string{
		main: "version: 1\nrules:\n  - name: db\n    match: {domain: 'db*'}\n    set: {max: 2}\n",
		drop: "rules:\n  - name: db\n    match: {domain: 'db*'}\n    set: {max: 8}\n",
	} {
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Load(main)
	if err != nil {
		t.Fatal(err)
	}
	rules := p.Rules()
	if len(rules) != 1 || rules[0].Settings.Max != 8 {
		t.Fatalf("rules in force = %+v, want the drop-in's db (max 8) only", rules)
	}
	want := drop + `:2:11: rules[0].name: warning: rule "db" replaces the rule of the same name at ` + main + ":3:11"
	var got []string
	for _, w := range p.Warnings() {
		got = append(got, w.Error())
	}
	if !slices.Contains(got, want) {
		t.Errorf("warnings = %q, want %q among them", got, want)
	}
}
