package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/virtmq/virtmq/internal/virt"
)

// FuzzCommandLine runs virtmq with arbitrary arguments and stdin, as a
// careless script or a hostile user would: it never panics, exits 0, 1, 2
// or 3, and a usage error says why on stderr in a line of its own. Nothing
// reaches libvirt (Dial fails) and no file is written.
func FuzzCommandLine(f *testing.F) {
	for _, seed := range [][]string{
		{"plan", "/dev/zero"}, {"plan", "-"}, {"rewrite", "-"}, {"rewrite"}, {"plan", "."},
		{"apply", "-c", "", "--all"}, {"apply", "--connect-socket=", "web"}, {"-c", "", "apply", "--all"},
		{"verify", "-c", "qemu+tcp://127.0.0.1:1/system", "web1"}, {"apply", "--cold-boot", "--parallel", "0", "--all"},
		{"apply", "-o", "json", "--all"}, {"status", "--color", "loud"}, {"help", "help"}, {"--policy", "x", "plan"},
		{"plan", "--detailed-exitcode"}, {"lint", "--drop-in"}, {"completion", "fish"}, {"exclude"}, {"-x"},
	} {
		for len(seed) < 4 {
			seed = append(seed, "")
		}
		f.Add(seed[0], seed[1], seed[2], seed[3], []byte("<domain><name>x</name></domain>"))
	}
	dir := f.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("version: 1\nmode: observe\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a0, a1, a2, a3 string, stdin []byte) {
		var args []string
		for _, a := range []string{a0, a1, a2, a3} {
			if a != "" || len(args) > 0 && strings.HasPrefix(args[len(args)-1], "-") {
				args = append(args, a)
			}
		}
		for _, a := range args {
			// Only files of the test's own: no run may read or write
			// anywhere else, or wait on the machine's sockets.
			if strings.Contains(a, "/") && !strings.Contains(a, "://") && a != "/dev/zero" && a != "/dev/null" || strings.Contains(a, "socket") {
				return
			}
		}
		var out, errOut bytes.Buffer
		env := &Env{
			Stdin: bytes.NewReader(stdin), Stdout: &out, Stderr: &errOut,
			Getenv:            func(k string) string { return map[string]string{"VIRTMQ_POLICY": pol}[k] },
			DefaultPolicyPath: filepath.Join(dir, "none.yaml"),
			Dial: func(context.Context, virt.URI) (virt.Conn, error) {
				return nil, os.ErrNotExist
			},
		}
		if len(args) > 0 && (args[0] == "status" || strings.Contains(strings.Join(args, " "), "cold-boot")) {
			return // they read the agent's status socket of this machine
		}
		code := Main(context.Background(), env, args)
		switch code {
		case ExitOK, ExitFailure, ExitUsage, ExitLeftOff:
		default:
			t.Fatalf("%q: exit %d", args, code)
		}
		detailed := strings.Contains(strings.Join(args, " "), "detailed-exitcode")
		if code == ExitUsage && !detailed {
			first, _, _ := strings.Cut(errOut.String(), "\n")
			if !strings.HasPrefix(first, "virtmq") || len(first) < len("virtmq: x") {
				t.Fatalf("%q: usage error without a reason: %q", args, errOut.String())
			}
		}
		// A file name that is not UTF-8 is echoed as given; one argument
		// alone is judged (two halves of a character join into a valid one).
		argsValid := true
		for _, a := range args {
			argsValid = argsValid && utf8.ValidString(a)
		}
		if !utf8.Valid(errOut.Bytes()) && argsValid {
			t.Fatalf("%q: stderr is not UTF-8: %q", args, errOut.String())
		}
	})
}
