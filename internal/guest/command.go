package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// session carries one Configure or Inspect run: the agent, the options and
// what was learned about the guest's programs, so that a missing ethtool
// path is tried once, not once per ethtool run.
type session struct {
	a Agent
	o Options

	sent int // commands sent, guest-exec-status polls not counted (maxCommands)
	// changing is set while a guest-exec that changes the guest (ethtool
	// -L) is sent: it is not sent again when its reply does not come.
	changing bool
	// statusLost is set when a guest-exec-status poll got no reply: qemu-ga
	// may have answered it late, and forgotten the process.
	statusLost bool

	ethtool  string   // resolved ethtool path
	readlink []string // resolved readlink argv prefix
	cat      []string // resolved cat argv prefix
}

type request struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
}

type qgaError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

type reply[T any] struct {
	Return *T        `json:"return"`
	Error  *qgaError `json:"error"`
}

// Bounds on the work one guest can cost per Configure or Inspect, however
// it answers.
const (
	// maxCommands bounds the commands of one run, guest-exec-status polls
	// aside (ExecTimeout bounds those): a healthy step sends about ten
	// (three discovery commands, guest-exec per ethtool run, a few missing
	// program paths, readlink per candidate interface).
	maxCommands = 32
	// maxCandidates is how many interfaces sharing the NIC's MAC are told
	// apart with readlink (a bridge, a bond, VLANs over the NIC); more is
	// a guest we do not guess for, and costs no command.
	maxCandidates = 8
	// maxInterfacesReply caps the guest-network-get-interfaces reply: about
	// 30 000 interfaces with their addresses and statistics. Within it every
	// entry is looked at (in memory: only name and MAC are decoded), so a
	// NIC listed after thousands of veths is still found.
	maxInterfacesReply = 8 << 20
)

// ErrBudget means the guest made the step send more commands than any
// healthy guest needs (see maxCommands); it is reported like a failure.
var ErrBudget = errors.New("the guest step's command budget is used up")

// call sends one agent command and decodes the "return" member into a T.
// The command is bounded by CommandTimeout and by ctx's deadline, whichever
// comes first. Each send waits at most ReplyTimeout for the reply (the
// Agent gets that wait as its timeout), a command sent again twice that,
// and so on within the bound (guest-exec-status: ReplyTimeout each time):
// a guest that does not answer holds libvirt's request slot for a second
// or a few at a time, not for the whole bound. Commands other than
// guest-exec-status count against maxCommands, once however often they
// are sent.
func call[T any](ctx context.Context, s *session, execute string, args any) (T, error) {
	return callCapped[T](ctx, s, execute, args, 0)
}

// replyGrace is how much longer than the command's bound it is waited for
// on this side: the Agent's own timeout reply normally comes first, so
// that what it holds (libvirt's request slot) is given back before the
// next command is sent.
const replyGrace = 250 * time.Millisecond

// callCapped is call with a reply of at most limit bytes (0: no limit).
func callCapped[T any](ctx context.Context, s *session, execute string, args any, limit int) (T, error) {
	var zero T
	if execute != "guest-exec-status" {
		if s.sent >= maxCommands {
			return zero, fmt.Errorf("%s: %w (%d commands sent)", execute, ErrBudget, s.sent)
		}
		s.sent++
	}
	cmd, err := json.Marshal(request{Execute: execute, Arguments: args})
	if err != nil {
		return zero, fmt.Errorf("encoding %s: %w", execute, err)
	}
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	bound := s.o.CommandTimeout
	if dl, ok := ctx.Deadline(); ok {
		if rem := time.Until(dl); rem < bound {
			bound = rem
		}
	}
	if bound <= 0 {
		// The deadline has passed but ctx has not ended yet: its timer is
		// about to fire. Wait for it, so that the caller finds ctx ended
		// (run tells its own ExecTimeout from the caller's deadline by
		// which context ended).
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-t.C:
			return zero, context.DeadlineExceeded
		}
	}
	// A guest-exec that changes the guest is sent once: it may have run
	// without its reply coming back (the caller looks before it tries
	// again). Every other command only reads and is sent again.
	resend := execute != "guest-exec" || !s.changing
	end := time.Now().Add(bound)
	// bctx bounds the whole command on this side, the Agent's wait for
	// its turn included; the Agent enforces each send's timeout (libvirt
	// does, in whole seconds).
	bctx, cancel := context.WithDeadline(ctx, end.Add(replyGrace))
	defer cancel()
	wait := s.o.ReplyTimeout
	var raw []byte
	for {
		timeout := max(min(wait, time.Until(end)), time.Millisecond)
		raw, err = s.a.Command(bctx, cmd, timeout)
		if err == nil {
			break
		}
		switch {
		case ctx.Err() != nil:
			// The caller's context ended: report that, not whatever the
			// transport made of it.
			return zero, fmt.Errorf("%w (%w)", ctx.Err(), err)
		case bctx.Err() == nil && !errors.Is(err, ErrTimeout):
			return zero, err
		case !resend || time.Until(end) <= 0 || bctx.Err() != nil:
			return zero, fmt.Errorf("%w: no reply within %v: %w", ErrTimeout, bound.Round(time.Millisecond), err)
		}
		if execute == "guest-exec-status" {
			// qemu-ga answers a status at once, whatever the program
			// does: a guest that does not is polled again with the same
			// short wait, never holding more.
			s.statusLost = true
			continue
		}
		wait *= 2
	}
	if limit > 0 && len(raw) > limit {
		return zero, fmt.Errorf("reply of %d bytes, more than the %d kept", len(raw), limit)
	}
	var r reply[T]
	if err := json.Unmarshal(raw, &r); err != nil {
		return zero, fmt.Errorf("malformed reply (%d bytes): %w", len(raw), err)
	}
	if r.Error != nil {
		return zero, &CommandError{Command: execute, Class: r.Error.Class, Desc: r.Error.Desc}
	}
	if r.Return == nil {
		return zero, fmt.Errorf("malformed reply (%d bytes): no \"return\" member", len(raw))
	}
	return *r.Return, nil
}

// isDisabled reports whether err says the command is disabled or unknown to
// the agent: CommandNotFound class (qemu-ga uses it for both), or, when the
// class is lost (libvirt), qemu-ga's English wording. qemu-ga does not
// translate these two messages.
func isDisabled(err error) bool {
	var ce *CommandError
	if errors.As(err, &ce) && ce.Class == "CommandNotFound" {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "has been disabled") || strings.Contains(msg, "has not been found")
}

// isAbort reports whether err means the agent (or the caller) is gone, so
// trying another program path is pointless.
func isAbort(err error) bool {
	return errors.Is(err, ErrNoAgent) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrBudget) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Messages of glib's spawn failure and of a child's perror, matched only
// where no typed error exists. They are English: on a guest with another
// locale they do not match and the error is reported as it is.
var (
	notFoundWords = []string{"No such file or directory", "ENOENT", "Not a directory"}
	deniedWords   = []string{"Permission denied", "Operation not permitted", "EACCES", "EPERM"}
)

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// snippet makes guest-supplied text safe and short for an error message:
// at most 200 bytes, valid UTF-8, control characters escaped by %q later
// or replaced here.
func snippet(s string) string {
	const max = 200
	cut := false
	if len(s) > max {
		s = s[:max]
		cut = true
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimRightFunc(s, func(r rune) bool { return r == ' ' || r == utf8.RuneError })
	if cut {
		s += "…"
	}
	return s
}
