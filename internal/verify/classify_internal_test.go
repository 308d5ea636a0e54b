package verify

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/virtmq/virtmq/internal/guest"
)

// legacyGuestSkip is how verify told a guest SKIP from a FAIL before it
// used guest.Classify: guestSkip must agree with it on every error Inspect
// can return, but two: ErrBudget, newer, is a FAIL either way, and a
// disabled guest agent command (ErrCommandDisabled) is now a SKIP, as the
// agent has always counted it: the guest's qemu-ga policy, not a failure.
func legacyGuestSkip(err error) (skip, domainWide bool) {
	for _, r := range []error{guest.ErrNoAgent, guest.ErrExecDisabled, guest.ErrNotLinux, guest.ErrTimeout} {
		if errors.Is(err, r) {
			return true, true
		}
	}
	for _, r := range []error{guest.ErrNoInterface, guest.ErrAboveMax, guest.ErrNoEthtool, guest.ErrDenied} {
		if errors.Is(err, r) {
			return true, false
		}
	}
	return false, false
}

func TestGuestSkip(t *testing.T) {
	deadline := fmt.Errorf("%w (%w)", context.DeadlineExceeded, errors.New("libvirt: timed out"))
	for _, tc := range []struct {
		err              error
		skip, domainWide bool
	}{
		{fmt.Errorf("guest-info: %w", guest.ErrNoAgent), true, true},
		{fmt.Errorf("guest-exec: %w: %w", guest.ErrExecDisabled, errors.New("disabled")), true, true},
		{guest.ErrNotLinux, true, true},
		{fmt.Errorf("%w: no reply within 10s: %w", guest.ErrTimeout, context.DeadlineExceeded), true, true},
		{guest.ErrNoInterface, true, false},
		{guest.ErrAboveMax, true, false},
		{fmt.Errorf("tried /usr/sbin/ethtool: %w", guest.ErrNoEthtool), true, false},
		{fmt.Errorf("%w: %w", guest.ErrDenied, errors.New("exit status 1")), true, false},
		{fmt.Errorf("guest-info: %w", guest.ErrCommandDisabled), true, true},
		{fmt.Errorf("guest-exec: %w (33 commands sent)", guest.ErrBudget), false, false},
		{deadline, false, false},
		{context.Canceled, false, false},
		{errors.New("boom"), false, false},
		// Inspect joins a missing ethtool with the interrupts' error.
		{fmt.Errorf("%w; %w", guest.ErrNoEthtool, guest.ErrTimeout), true, true},
		{fmt.Errorf("%w; %w", guest.ErrNoEthtool, deadline), true, false},
		{fmt.Errorf("%w; %w", guest.ErrNoEthtool, guest.ErrBudget), true, false},
		{fmt.Errorf("%w; %w", guest.ErrNoEthtool, guest.ErrNoAgent), true, true},
		{fmt.Errorf("%w (%w)", context.DeadlineExceeded, guest.ErrNoAgent), true, true},
	} {
		skip, dw := guestSkip(tc.err)
		if skip != tc.skip || dw != tc.domainWide {
			t.Errorf("guestSkip(%v) = %v, %v; want %v, %v", tc.err, skip, dw, tc.skip, tc.domainWide)
		}
		if errors.Is(tc.err, guest.ErrCommandDisabled) {
			continue
		}
		if ls, ldw := legacyGuestSkip(tc.err); ls != skip || ldw != dw {
			t.Errorf("guestSkip(%v) = %v, %v; verify said %v, %v before", tc.err, skip, dw, ls, ldw)
		}
	}
}
