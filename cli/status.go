package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/policy"
)

// statusTimeout bounds one status socket exchange.
const statusTimeout = 10 * time.Second

// runStatus is `virtmq status`: see its usage text.
func runStatus(ctx context.Context, env *Env, args []string) int {
	fs := newFlags(env, "status", "[--json | -o wide|json] [--status-socket PATH]", `
Show what virtmq-agent knows: its libvirt connection, the policy in force,
and for each domain and NIC the queue count the policy wants (N), the
count defined and running, the virtqueues QEMU reports over QMP (2N+1),
the guest's interface name and its current/max combined channels, the
agent's last action and when, and the domain's state or problem.

It reads the agent's status socket; it does not talk to libvirt (use
"virtmq verify DOMAIN" for a live end-to-end check). "-" means unknown.
The table fits the terminal ($COLUMNS, else its width, else 100 columns):
it leaves out QMP VQS, GUEST IF and AT and cuts long states ("…");
-o wide prints every column in full. With --json
it prints the agent's snapshot as JSON (see docs/json.md).

Exits 1 when the agent cannot be reached (not running, or no permission
to its socket), and, after printing the status, when the agent is not
connected to libvirt or its last policy reload failed; 0 otherwise.`)
	asJSON := fs.Bool("json", false, "print the agent's JSON snapshot instead of a table")
	format, wideFlag := addOutputFlags(fs, "wide", "json")
	fs.check(func() error { return outputConflict(format, *wideFlag, *asJSON) })
	sock := fs.String("status-socket", status.DefaultSocket, "virtmq-agent status `socket`")
	_, code, done := parseFlags(env, fs, args, 0, 0, "")
	if done {
		return code
	}
	wide, jsonOut := outputFormat(format, *wideFlag, *asJSON)
	fctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	snap, err := status.Fetch(fctx, *sock)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq status: %s\n", fetchProblem(*sock, err))
		return ExitFailure
	}
	if jsonOut {
		if err := writeJSON(env, "status", normalizeSnapshot(snap)); err != nil {
			return ExitFailure
		}
		return unhealthy(env, snap)
	}
	if err := printStatus(env, snap, wide); err != nil {
		fmt.Fprintf(env.Stderr, "virtmq status: %v\n", err)
		return ExitFailure
	}
	return unhealthy(env, snap)
}

// unhealthy says on stderr what is wrong with the agent, and returns
// ExitFailure when it is not connected to libvirt or its last policy
// reload failed, ExitOK otherwise.
func unhealthy(env *Env, s status.Snapshot) int {
	code := ExitOK
	if !s.Libvirt.Connected {
		why := ""
		if s.Libvirt.LastError != "" {
			why = " (" + printable(s.Libvirt.LastError) + ")"
		}
		fmt.Fprintf(env.Stderr, "virtmq status: virtmq-agent is not connected to libvirt%s; it reconnects by itself once virtqemud or libvirtd runs (systemctl start virtqemud.socket, or libvirtd)\n", why)
		code = ExitFailure
	}
	if s.Policy.LastReloadError != "" {
		fmt.Fprintln(env.Stderr, "virtmq status: virtmq-agent's last policy reload failed (it keeps the previous policy)")
		code = ExitFailure
	}
	return code
}

// normalizeSnapshot fills in what an older agent leaves out, so that
// status --json always has a format_version and [] for empty lists.
func normalizeSnapshot(s status.Snapshot) status.Snapshot {
	if s.FormatVersion == 0 {
		s.FormatVersion = status.FormatVersion
	}
	s.Policy.Sources = orEmpty(s.Policy.Sources)
	s.Domains = orEmpty(s.Domains)
	for i := range s.Domains {
		s.Domains[i].NICs = orEmpty(s.Domains[i].NICs)
	}
	return s
}

// fetchProblem explains a failed status fetch, naming the socket.
func fetchProblem(sock string, err error) string {
	var errno syscall.Errno
	cause := err.Error()
	if errors.As(err, &errno) {
		cause = errno.Error()
	}
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("virtmq-agent is not running: cannot connect to its status socket %s (%s); start it with systemctl start virtmq-agent, or give --status-socket", sock, cause)
	case errors.Is(err, os.ErrPermission):
		return fmt.Sprintf("cannot connect to virtmq-agent's status socket %s (%s): it is readable by root only", sock, cause)
	default:
		return fmt.Sprintf("cannot read virtmq-agent's status from %s: %v", sock, err)
	}
}

// printStatus writes the snapshot as a header and one row per NIC, within
// the table width unless wide.
func printStatus(env *Env, s status.Snapshot, wide bool) error {
	w := env.Stdout
	lv := "connected"
	if s.Libvirt.Connected {
		if s.Libvirt.Socket != "" {
			lv += " via " + s.Libvirt.Socket
		}
		if !s.Libvirt.Since.IsZero() {
			lv += " since " + fmtTime(s.Libvirt.Since)
		}
	} else {
		lv = env.paint(sgrRed, "NOT connected")
		if s.Libvirt.LastError != "" {
			lv += ": " + printable(s.Libvirt.LastError)
		}
	}
	if s.Libvirt.Reconnects > 0 {
		lv += fmt.Sprintf(" (%d reconnects)", s.Libvirt.Reconnects)
	}
	fmt.Fprintf(w, "agent:   %s, snapshot %s\n", orDash(s.Version), fmtTime(s.Generated))
	fmt.Fprintf(w, "libvirt: %s\n", lv)
	digest := ""
	if s.Policy.Digest != "" {
		// What tells hosts apart that decide differently: compare it across a fleet.
		digest = ", digest " + s.Policy.Digest
	}
	fmt.Fprintf(w, "policy:  %s (mode %s, loaded %s%s)\n", orDash(strings.Join(s.Policy.Sources, ", ")), orDash(s.Policy.Mode), fmtTime(s.Policy.LoadedAt), digest)
	if s.Policy.Mode == string(policy.ModeObserve) {
		fmt.Fprintln(w, "         mode observe: the agent changes nothing; \"would:\" is what it does in mode apply")
	}
	if s.Policy.LastReloadError != "" {
		fmt.Fprintf(w, "         last reload %s, previous policy kept: %s\n", env.paint(sgrRed, "FAILED"), printable(s.Policy.LastReloadError))
	}
	fmt.Fprintln(w)
	if len(s.Domains) == 0 {
		fmt.Fprintln(w, "no domains")
		return nil
	}
	t := &table{header: []string{"DOMAIN", "MAC", "WANTED", "DEFINED", "RUNNING", "QMP VQS", "GUEST IF", "GUEST CUR/MAX", "LAST ACTION", "AT", "STATE / PROBLEM"}, width: env.tableWidth()}
	const state = 10
	t.shrink = []shrinkCol{{col: state, min: 40}, {col: 8, min: 12}, {col: 0, min: 16}, {col: state, min: 20}}
	for _, d := range s.Domains {
		action := orDash(printable(d.LastAction))
		at := "-"
		if !d.LastAt.IsZero() {
			at = fmtTime(d.LastAt)
		}
		domState := printable(d.State)
		if !d.Persistent && d.State != status.StateTransient {
			domState += " (transient)"
		}
		if d.Problem != "" {
			domState += ": " + printable(d.Problem)
		}
		if len(d.Would) > 0 {
			domState = join(domState, "would: "+printable(strings.Join(d.Would, "; ")))
		}
		for _, w := range d.Warnings {
			domState = join(domState, "warning: "+printable(w))
		}
		if len(d.NICs) == 0 {
			t.add(printable(d.Name), "-", "-", "-", "-", "-", "-", "-", action, at, orDash(domState))
			continue
		}
		for i, n := range d.NICs {
			st := domState
			if i > 0 {
				st = ""
			}
			switch {
			case n.Kept:
				st = join(st, printable(n.Reason))
			case !n.Managed && n.Reason != "" && n.Reason != d.Problem:
				st = join(st, "not managed: "+printable(n.Reason))
			case !n.Managed:
				st = join(st, "not managed")
			}
			if n.GuestStep != "" {
				st = join(st, "guest: "+printable(n.GuestStep))
			}
			if n.Problem != "" {
				st = join(st, printable(n.Problem))
			}
			running := count(n.Running)
			if !d.Active {
				running = "off"
			}
			vqs := count(n.QMPVirtqueues)
			if n.QMPVirtqueues > 0 && n.MQ {
				vqs += " mq"
			}
			guest := "-"
			if n.GuestCurrent > 0 || n.GuestMax > 0 {
				guest = count(n.GuestCurrent) + "/" + count(n.GuestMax)
				if n.GuestWanted > 0 && n.GuestWanted != n.GuestCurrent {
					guest += fmt.Sprintf(" (want %d)", n.GuestWanted)
				}
			}
			t.add(printable(d.Name), orDash(printable(n.MAC)), count(n.Wanted), count(n.Defined), running, vqs,
				orDash(printable(n.GuestIfName)), guest, action, at, orDash(st))
			action, at = "", ""
		}
	}
	if !wide {
		// The narrow table: what a person scans for. QMP virtqueues, the
		// guest's interface name and the action's time are in -o wide.
		t.header[2], t.header[3], t.header[4], t.header[7], t.header[8] = "WANT", "DEF", "RUN", "GUEST", "ACTION"
		t.dropColumns(5, 6, 9)
	}
	last := len(t.header) - 1
	t.color = func(col int, cell string) string {
		if col != last {
			return cell
		}
		return env.paintLead(cell)
	}
	if err := t.write(w, wide); err != nil {
		return err
	}
	if t.clipped {
		_, err := fmt.Fprintln(w, clippedNote(t.width))
		return err
	}
	return nil
}

// count prints a count, "-" for zero (unknown).
func count(n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

// join joins two status fragments with "; ".
func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// fmtTime prints a time in the local zone, "-" for the zero time.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
