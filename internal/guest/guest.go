// Package guest sets and reads a Linux guest's virtio-net channel count
// through the QEMU guest agent: the in-guest half of the manual procedure
// (`ethtool -L IF combined M`, then `ethtool -l IF` and /proc/interrupts).
//
// Everything the guest says is untrusted: interface names are validated
// before they reach an argv, output is capped, and commands run through
// guest-exec with an argv, never a shell.
package guest

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Agent sends one QEMU guest agent command and returns its reply.
// cmd is a complete QGA JSON command ({"execute": ..., "arguments": ...});
// the reply is the raw JSON object libvirt returns ({"return": ...}).
// Implementations enforce the timeout; virt.GuestAgent implements it with
// libvirt's virDomainQemuAgentCommand.
//
// Errors: return (or wrap) ErrNoAgent when the agent is not connected or
// does not answer, and a *CommandError when the agent answered with an
// error reply. Both are optional, but without them this package can only
// guess from English message text whether guest-exec failed because a
// program is missing (try the next path) or because the agent is gone (stop).
// A reply of the form {"error": ...} is understood too.
type Agent interface {
	Command(ctx context.Context, cmd []byte, timeout time.Duration) ([]byte, error)
}

// Reasons a guest step cannot be done. Callers report them; they are not
// failures of virtmq. Test with errors.Is.
var (
	ErrNoAgent      = errors.New("guest agent not connected")
	ErrExecDisabled = errors.New("guest-exec is disabled by the guest's qemu-ga policy")
	ErrNotLinux     = errors.New("guest OS is not Linux")
	ErrNoEthtool    = errors.New("ethtool not found in the guest")
	ErrNoInterface  = errors.New("no guest interface has the NIC's MAC address")
	ErrDenied       = errors.New("the guest refused to run ethtool (permission or SELinux denial)")
	ErrAboveMax     = errors.New("wanted combined count is above the guest's maximum")
	ErrTimeout      = errors.New("guest command timed out")

	// ErrCommandDisabled means another guest agent command the step needs
	// (guest-network-get-interfaces) is disabled or absent in the guest's
	// qemu-ga.
	ErrCommandDisabled = errors.New("a guest agent command is disabled by the guest's qemu-ga policy")
)

// CommandError is an error reply from the guest agent
// ({"error": {"class": ..., "desc": ...}}): the agent is there but refused
// or failed the command. Agent implementations should return one (or wrap
// one) for such replies; libvirt reports them as "unable to execute QEMU
// agent command 'NAME': DESC" and drops the class.
type CommandError struct {
	// Command is the agent command, e.g. "guest-exec".
	Command string
	// Class is the QAPI error class ("GenericError", "CommandNotFound");
	// empty when the transport does not carry it.
	Class string
	// Desc is the agent's message. It comes from the guest: untrusted,
	// and localized by the guest's locale.
	Desc string
}

// Error returns the command and the agent's message.
func (e *CommandError) Error() string {
	if e.Class != "" {
		return fmt.Sprintf("guest agent command %s failed: %s: %s", e.Command, e.Class, snippet(e.Desc))
	}
	return fmt.Sprintf("guest agent command %s failed: %s", e.Command, snippet(e.Desc))
}

// Options bound the guest step. Zero values take the defaults.
type Options struct {
	// CommandTimeout bounds one agent command, its resends included
	// (default 10s).
	CommandTimeout time.Duration
	// ReplyTimeout is how long one send of a command a healthy qemu-ga
	// answers at once (all of them: guest-info, guest-get-osinfo,
	// guest-network-get-interfaces, guest-exec, guest-exec-status) may wait
	// for the reply (default 1s). libvirt holds one of the connection's
	// request slots for as long as it waits, so a guest that does not
	// answer must not keep it for CommandTimeout: a command without a reply
	// is sent again with twice the wait, within CommandTimeout (a
	// guest-exec-status poll asks for the same pid; a guest-exec that
	// changes something is not sent again, see Configure).
	ReplyTimeout time.Duration
	// ExecTimeout bounds one guest-exec from start to exit (default 30s).
	ExecTimeout time.Duration
	// PollInterval is the longest wait between two guest-exec-status polls
	// (default 100ms). The first poll follows guest-exec at once; the waits
	// then start at a tenth of PollInterval and double up to it, so that a
	// program that exits within milliseconds costs milliseconds.
	PollInterval time.Duration
	// MaxOutput caps the decoded output kept from one command (default 64 KiB).
	// /proc/interrupts is not kept: it is scanned line by line.
	MaxOutput int
	// EthtoolPaths are tried in order (default /usr/sbin/ethtool, /sbin/ethtool, /usr/bin/ethtool, /bin/ethtool).
	EthtoolPaths []string
}

// Defaults for Options.
const (
	DefaultCommandTimeout = 10 * time.Second
	DefaultReplyTimeout   = time.Second
	DefaultExecTimeout    = 30 * time.Second
	DefaultPollInterval   = 100 * time.Millisecond
	DefaultMaxOutput      = 64 << 10
)

// DefaultEthtoolPaths returns the ethtool locations tried when
// Options.EthtoolPaths is empty. qemu-ga resolves a bare name with its own
// PATH, which is not ours to know, so only absolute paths are used.
func DefaultEthtoolPaths() []string {
	return []string{"/usr/sbin/ethtool", "/sbin/ethtool", "/usr/bin/ethtool", "/bin/ethtool"}
}

func (o Options) withDefaults() Options {
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = DefaultCommandTimeout
	}
	if o.ReplyTimeout <= 0 {
		o.ReplyTimeout = DefaultReplyTimeout
	}
	o.ReplyTimeout = min(o.ReplyTimeout, o.CommandTimeout)
	if o.ExecTimeout <= 0 {
		o.ExecTimeout = DefaultExecTimeout
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.MaxOutput <= 0 {
		o.MaxOutput = DefaultMaxOutput
	}
	if len(o.EthtoolPaths) == 0 {
		o.EthtoolPaths = DefaultEthtoolPaths()
	}
	return o
}

// Channels is the combined channel count of one guest interface, as ethtool -l reports it.
type Channels struct {
	Max     int
	Current int
}

// Result describes one guest interface after Configure or Inspect.
type Result struct {
	// IfName is the guest's name for the NIC (validated).
	IfName string
	// OS is the guest OS id from guest-get-osinfo (e.g. "debian"), when known.
	OS string
	// Before is the channel count found before any change, After the count read back.
	Before, After Channels
	// Changed reports whether ethtool -L ran.
	Changed bool
	// Interrupts are the guest's /proc/interrupts lines for this NIC's
	// virtio queues (e.g. "virtio0-input.0"), names only; filled by Inspect.
	Interrupts []string
}

// Configure sets the combined channel count of the guest interface whose
// MAC is mac to combined, then reads it back. Steps: guest-info (is
// guest-exec enabled?), guest-get-osinfo (Linux?), guest-network-get-interfaces
// (MAC → name), ethtool -l, ethtool -L when the current count differs, ethtool -l.
// It returns one of the Err* reasons (wrapped) when the guest cannot do it.
// It blocks for at most a few ExecTimeouts.
//
// Outcomes:
//   - nil error: After.Current == combined; Changed says whether ethtool -L
//     ran (when the count was already right, After equals Before).
//   - ErrAboveMax: combined > Before.Max; nothing was changed.
//   - another Err* reason: the guest cannot do it (see each).
//   - any other error: the agent or the guest misbehaved, or ctx ended.
//
// On error the Result holds what was learned before the failing step.
//
// Blocking: each agent command is bounded by CommandTimeout, each program
// run (guest-exec, then guest-exec-status polls) by ExecTimeout. Configure
// sends three discovery commands and runs ethtool up to three times (plus
// one short failed guest-exec per missing EthtoolPaths entry, and readlink
// per candidate when several interfaces share the MAC, at most 8, else it
// fails): at most 32 commands besides the guest-exec-status polls, whatever
// the guest answers (ErrBudget beyond), and with the defaults
// about 30 s + 3 × 30 s in the worst case. Give ctx a deadline for a tighter
// bound; cancelling ctx stops it between and during commands (as far as the
// Agent honours ctx).
func Configure(ctx context.Context, a Agent, mac string, combined int, opt Options) (Result, error) {
	var res Result
	if combined < 1 {
		return res, fmt.Errorf("guest: combined count %d: must be at least 1", combined)
	}
	s, nic, err := start(ctx, a, mac, opt, &res)
	if err != nil {
		return res, err
	}
	before, err := s.channels(ctx, nic.name)
	if err != nil {
		return res, err
	}
	res.Before, res.After = before, before
	if before.Max < 1 {
		return res, fmt.Errorf("guest interface %s: ethtool -l reports no combined channels (Combined: n/a); the driver is not virtio_net with multiqueue", nic.name)
	}
	if combined > before.Max {
		return res, fmt.Errorf("guest interface %s: want combined %d, maximum %d: %w", nic.name, combined, before.Max, ErrAboveMax)
	}
	if before.Current == combined {
		return res, nil
	}
	if err := s.setCombined(ctx, nic.name, combined); err != nil {
		if !errors.Is(err, ErrTimeout) || ctx.Err() != nil {
			return res, err
		}
		// ethtool -L may have run all the same (its guest-exec or exit
		// status got no reply in time): look before anything is tried
		// again; the next attempt starts from what the guest has.
		after, lerr := s.channels(ctx, nic.name)
		if lerr != nil || after.Current != combined {
			return res, err
		}
		res.Changed, res.After = true, after
		return res, nil
	}
	res.Changed = true
	after, err := s.channels(ctx, nic.name)
	if err != nil {
		return res, err
	}
	res.After = after
	if after.Current != combined {
		return res, fmt.Errorf("guest interface %s: ethtool -L combined %d succeeded but ethtool -l reads %d", nic.name, combined, after.Current)
	}
	return res, nil
}

// Inspect reads the guest interface's channel counts and its virtio
// interrupt lines without changing anything.
//
// Before and After are both the count read. Interrupts are the names of
// this NIC's virtio input/output interrupt lines; when the guest cannot
// tell which virtioN device the interface is (no readlink in the guest),
// they are the lines of every virtio NIC-like device.
//
// When ethtool is missing, Inspect still reads the interrupts and returns
// them with an error wrapping ErrNoEthtool. Other errors and the blocking
// bound are as for Configure (at most two ExecTimeouts more: readlink and
// cat).
func Inspect(ctx context.Context, a Agent, mac string, opt Options) (Result, error) {
	var res Result
	s, nic, err := start(ctx, a, mac, opt, &res)
	if err != nil {
		return res, err
	}
	ch, chErr := s.channels(ctx, nic.name)
	if chErr != nil && !errors.Is(chErr, ErrNoEthtool) {
		return res, chErr
	}
	res.Before, res.After = ch, ch

	dev := nic.virtio
	if dev == "" {
		// Best effort: without the device link every virtio queue line is
		// reported, which is still right on the common one-NIC guest.
		dev, _ = s.virtioDevice(ctx, nic.name)
	}
	irqs, err := s.interrupts(ctx, dev)
	res.Interrupts = irqs
	if err != nil {
		if chErr != nil {
			return res, fmt.Errorf("%w; %w", chErr, err)
		}
		return res, err
	}
	return res, chErr
}
