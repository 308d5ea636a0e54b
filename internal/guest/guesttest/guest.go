package guesttest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/virtmq/virtmq/internal/guest"
)

// Guest simulates qemu-ga 7.2 in a Linux guest. Set the fields, then use
// Agent. Safe for concurrent use once running.
type Guest struct {
	// Version is guest-info's version (default "7.2.0").
	Version string
	// Disabled commands are listed with enabled:false and refused with
	// "Command X has been disabled", as a qemu-ga allow/block list does.
	Disabled []string
	// Absent commands are not listed and unknown (an old agent).
	Absent []string
	// OSInfo is guest-get-osinfo's return (default: Debian 12).
	OSInfo map[string]any
	// Interfaces are guest-network-get-interfaces' entries.
	Interfaces []Interface
	// Programs run by guest-exec, by absolute path. guest-exec of any
	// other path fails like glib's spawn: "No such file or directory".
	Programs map[string]Program
	// Polls is how many guest-exec-status replies say exited:false before
	// the one that says exited:true.
	Polls int
	// Libvirt makes error replies plain errors with libvirt's wording
	// ("internal error: unable to execute QEMU agent command ...") and no
	// class, as QEMUDomainAgentCommand returns them; otherwise they are
	// *guest.CommandError.
	Libvirt bool

	mu    sync.Mutex
	next  int64
	procs map[int64]*proc
	calls []string
}

// Interface is one guest network interface.
type Interface struct {
	Name string
	MAC  string // "" for interfaces without one (tun, wireguard)
}

// Program is a guest program: it gets its arguments (without argv[0]).
type Program func(args []string) Exit

// Exit is how a Program ends.
type Exit struct {
	Code   int
	Signal int // non-zero: killed by this signal, Code is ignored
	Stdout []byte
	Stderr []byte
	// Hang makes the program never exit.
	Hang bool
	// OutTruncated and ErrTruncated are reported as qemu-ga does when
	// output exceeds its 16 MiB buffer.
	OutTruncated, ErrTruncated bool
}

type proc struct {
	exit  Exit
	polls int
}

// Agent returns the guest.Agent that talks to g.
func (g *Guest) Agent() guest.Agent { return NewAgent(g.handle) }

// Calls returns the commands received so far, one string each:
// "guest-info", "guest-exec /usr/sbin/ethtool -l eth0",
// "guest-exec-status 1".
func (g *Guest) Calls() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.calls)
}

// Execs returns the argv of every guest-exec received, joined by spaces.
func (g *Guest) Execs() []string {
	var out []string
	for _, c := range g.Calls() {
		if s, ok := strings.CutPrefix(c, "guest-exec "); ok {
			out = append(out, s)
		}
	}
	return out
}

// allCommands is qemu-ga 7.2's command list on Linux.
var allCommands = []string{
	"guest-sync-delimited", "guest-sync", "guest-ping", "guest-get-time", "guest-set-time",
	"guest-info", "guest-shutdown", "guest-file-open", "guest-file-close", "guest-file-read",
	"guest-file-write", "guest-file-seek", "guest-file-flush", "guest-fsfreeze-status",
	"guest-fsfreeze-freeze", "guest-fsfreeze-freeze-list", "guest-fsfreeze-thaw", "guest-fstrim",
	"guest-suspend-disk", "guest-suspend-ram", "guest-suspend-hybrid",
	"guest-network-get-interfaces", "guest-get-vcpus", "guest-set-vcpus", "guest-get-disks",
	"guest-get-fsinfo", "guest-set-user-password", "guest-get-memory-blocks",
	"guest-set-memory-blocks", "guest-get-memory-block-info", "guest-exec-status", "guest-exec",
	"guest-get-host-name", "guest-get-users", "guest-get-timezone", "guest-get-osinfo",
	"guest-get-devices", "guest-ssh-get-authorized-keys", "guest-ssh-add-authorized-keys",
	"guest-ssh-remove-authorized-keys",
}

// DebianOSInfo is guest-get-osinfo's return in a Debian 12 guest.
func DebianOSInfo() map[string]any {
	return map[string]any{
		"name": "Debian GNU/Linux", "kernel-release": "6.1.0-27-cloud-amd64",
		"version": "12 (bookworm)", "pretty-name": "Debian GNU/Linux 12 (bookworm)",
		"version-id": "12", "kernel-version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.115-1 (2024-11-01)",
		"machine": "x86_64", "id": "debian",
	}
}

// WindowsOSInfo is guest-get-osinfo's return in a Windows Server 2019 guest.
func WindowsOSInfo() map[string]any {
	return map[string]any{
		"name": "Microsoft Windows", "kernel-release": "17763", "version": "Microsoft Windows Server 2019",
		"variant": "server", "pretty-name": "Windows Server 2019 Datacenter", "version-id": "2019",
		"variant-id": "server", "kernel-version": "10.0", "machine": "x86_64", "id": "mswindows",
	}
}

func (g *Guest) fail(cmd, class, desc string) ([]byte, error) {
	if g.Libvirt {
		return nil, fmt.Errorf("internal error: unable to execute QEMU agent command '%s': %s", cmd, desc)
	}
	return nil, &guest.CommandError{Command: cmd, Class: class, Desc: desc}
}

func (g *Guest) handle(ctx context.Context, c Command) ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.procs == nil {
		g.procs = map[int64]*proc{}
	}
	logged := c.Execute
	defer func() { g.calls = append(g.calls, logged) }()

	if slices.Contains(g.Absent, c.Execute) || !slices.Contains(allCommands, c.Execute) {
		return g.fail(c.Execute, "CommandNotFound", fmt.Sprintf("The command %s has not been found", c.Execute))
	}
	if slices.Contains(g.Disabled, c.Execute) {
		return g.fail(c.Execute, "CommandNotFound", fmt.Sprintf("Command %s has been disabled: the command is not allowed", c.Execute))
	}
	switch c.Execute {
	case "guest-info":
		type info struct {
			Name            string `json:"name"`
			Enabled         bool   `json:"enabled"`
			SuccessResponse bool   `json:"success-response"`
		}
		var cmds []info
		for _, n := range allCommands {
			if slices.Contains(g.Absent, n) {
				continue
			}
			sr := !strings.HasPrefix(n, "guest-suspend") && n != "guest-shutdown"
			cmds = append(cmds, info{n, !slices.Contains(g.Disabled, n), sr})
		}
		v := g.Version
		if v == "" {
			v = "7.2.0"
		}
		return Return(map[string]any{"version": v, "supported_commands": cmds}), nil
	case "guest-get-osinfo":
		if g.OSInfo == nil {
			return Return(DebianOSInfo()), nil
		}
		return Return(g.OSInfo), nil
	case "guest-network-get-interfaces":
		return Return(g.interfaces()), nil
	case "guest-exec":
		var a struct {
			Path    string   `json:"path"`
			Arg     []string `json:"arg"`
			Capture bool     `json:"capture-output"`
		}
		if err := json.Unmarshal(c.Arguments, &a); err != nil {
			return g.fail(c.Execute, "GenericError", err.Error())
		}
		logged = strings.Join(append([]string{"guest-exec", a.Path}, a.Arg...), " ")
		p, ok := g.Programs[a.Path]
		if !ok {
			return g.fail(c.Execute, "GenericError", fmt.Sprintf("Failed to execute child process “%s” (No such file or directory)", a.Path))
		}
		e := p(a.Arg)
		if !a.Capture {
			e.Stdout, e.Stderr, e.OutTruncated, e.ErrTruncated = nil, nil, false, false
		}
		g.next++
		g.procs[g.next] = &proc{exit: e}
		return Return(map[string]int64{"pid": g.next}), nil
	case "guest-exec-status":
		var a struct {
			PID int64 `json:"pid"`
		}
		if err := json.Unmarshal(c.Arguments, &a); err != nil {
			return g.fail(c.Execute, "GenericError", err.Error())
		}
		logged = fmt.Sprintf("guest-exec-status %d", a.PID)
		p, ok := g.procs[a.PID]
		if !ok {
			return g.fail(c.Execute, "GenericError", "Invalid parameter 'pid'")
		}
		if p.exit.Hang || p.polls < g.Polls {
			p.polls++
			return Return(map[string]bool{"exited": false}), nil
		}
		// qemu-ga forgets the process with its first exited:true reply.
		delete(g.procs, a.PID)
		return exitStatus(p.exit), nil
	}
	return nil, errors.New("guesttest: command not simulated: " + c.Execute)
}

// exitStatus is the guest-exec-status reply for a finished program, built
// by hand: base64 needs no JSON escaping, and encoding/json is slow on the
// multi-megabyte outputs the tests feed through it. Like qemu-ga, it leaves
// out-data/err-data out when the stream was empty.
func exitStatus(e Exit) []byte {
	var b bytes.Buffer
	b.WriteString(`{"return":{"exited":true`)
	if e.Signal != 0 {
		fmt.Fprintf(&b, `,"signal":%d`, e.Signal)
	} else {
		fmt.Fprintf(&b, `,"exitcode":%d`, e.Code)
	}
	for _, d := range []struct {
		name      string
		data      []byte
		truncated bool
	}{{"out", e.Stdout, e.OutTruncated}, {"err", e.Stderr, e.ErrTruncated}} {
		if len(d.data) > 0 {
			fmt.Fprintf(&b, `,"%s-data":"`, d.name)
			enc := base64.NewEncoder(base64.StdEncoding, &b)
			enc.Write(d.data)
			enc.Close()
			b.WriteByte('"')
		}
		if len(d.data) > 0 || d.truncated {
			fmt.Fprintf(&b, `,"%s-truncated":%v`, d.name, d.truncated)
		}
	}
	b.WriteString("}}")
	return b.Bytes()
}

func (g *Guest) interfaces() []map[string]any {
	out := []map[string]any{}
	for i, n := range g.Interfaces {
		e := map[string]any{
			"name": n.Name,
			"statistics": map[string]int{
				"tx-packets": 12, "tx-errs": 0, "rx-bytes": 2048, "rx-dropped": 0,
				"rx-packets": 20, "rx-errs": 0, "tx-bytes": 1536, "tx-dropped": 0,
			},
		}
		if n.MAC != "" {
			e["hardware-address"] = n.MAC
		}
		if n.Name == "lo" {
			e["ip-addresses"] = []map[string]any{
				{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},
				{"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128},
			}
		} else {
			e["ip-addresses"] = []map[string]any{
				{"ip-address-type": "ipv4", "ip-address": fmt.Sprintf("192.168.122.%d", 10+i), "prefix": 24},
			}
		}
		out = append(out, e)
	}
	return out
}

// Output returns a Program that always exits with e.
func Output(e Exit) Program { return func([]string) Exit { return e } }

// Files returns a cat-like Program printing the named files' contents;
// a missing file prints cat's error and exits 1.
func Files(files map[string][]byte) Program {
	return func(args []string) Exit {
		var out []byte
		for _, a := range args {
			b, ok := files[a]
			if !ok {
				return Exit{Code: 1, Stderr: fmt.Appendf(nil, "cat: %s: No such file or directory\n", a)}
			}
			out = append(out, b...)
		}
		return Exit{Stdout: out}
	}
}

// Links returns a readlink-like Program resolving the given symlinks; any
// other path prints nothing and exits 1, as readlink without -f does.
func Links(links map[string]string) Program {
	return func(args []string) Exit {
		if len(args) == 1 {
			if t, ok := links[args[0]]; ok {
				return Exit{Stdout: []byte(t + "\n")}
			}
		}
		return Exit{Code: 1, Stdout: []byte{}}
	}
}

// Busybox returns a Program that runs applets[args[0]] with the rest of
// the arguments, like /bin/busybox APPLET ARGS.
func Busybox(applets map[string]Program) Program {
	return func(args []string) Exit {
		if len(args) == 0 {
			return Exit{Code: 1, Stderr: []byte("BusyBox v1.35.0 (Debian 1:1.35.0-4+b3) multi-call binary.\n")}
		}
		p, ok := applets[args[0]]
		if !ok {
			return Exit{Code: 127, Stderr: fmt.Appendf(nil, "%s: applet not found\n", args[0])}
		}
		return p(args[1:])
	}
}
