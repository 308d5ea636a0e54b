// Package guesttest provides fakes of the guest agent for testing code that
// uses package guest: NewAgent, driven by one function, and Guest, a small
// simulation of qemu-ga in a Linux guest (guest-exec with programs, the
// guest-exec-status life cycle, ethtool).
package guesttest

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/virtmq/virtmq/internal/guest"
)

// Command is one guest agent command as the fake received it.
type Command struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
	// Timeout is the timeout the caller passed to Agent.Command.
	Timeout time.Duration `json:"-"`
}

// Func handles one command and returns the raw reply (see Return and
// ErrorReply) or an error, as guest.Agent.Command does.
type Func func(ctx context.Context, cmd Command) ([]byte, error)

// NewAgent returns a guest.Agent that decodes each command and calls fn.
// A command on an ended context fails with the context's error.
func NewAgent(fn Func) guest.Agent {
	return &agent{fn: fn}
}

var _ guest.Agent = &agent{}

type agent struct {
	fn Func
}

func (a *agent) Command(ctx context.Context, cmd []byte, timeout time.Duration) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var c Command
	if err := json.Unmarshal(cmd, &c); err != nil {
		return nil, fmt.Errorf("guesttest: undecodable command %q: %w", cmd, err)
	}
	c.Timeout = timeout
	return a.fn(ctx, c)
}

// Return is the reply {"return": v}.
func Return(v any) []byte {
	b, err := json.Marshal(struct {
		Return any `json:"return"`
	}{v})
	if err != nil {
		panic(fmt.Sprintf("guesttest.Return: %v", err))
	}
	return b
}

// ErrorReply is the reply {"error": {"class": class, "desc": desc}}, as
// qemu-ga writes it on its socket (libvirt turns it into an error instead).
func ErrorReply(class, desc string) []byte {
	b, err := json.Marshal(map[string]any{"error": map[string]string{"class": class, "desc": desc}})
	if err != nil {
		panic(fmt.Sprintf("guesttest.ErrorReply: %v", err))
	}
	return b
}
