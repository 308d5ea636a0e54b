package guest

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Class
	}{
		{nil, Class{}},
		{fmt.Errorf("guest-info: %w", ErrExecDisabled), Class{Reason: ReasonExecDisabled, DomainWide: true, Skip: true}},
		{ErrCommandDisabled, Class{Reason: ReasonCmdDisabled, DomainWide: true, Skip: true}},
		{ErrNotLinux, Class{Reason: ReasonNotLinux, DomainWide: true, Skip: true}},
		{ErrNoAgent, Class{Reason: ReasonNoAgent, DomainWide: true, Skip: true}},
		{ErrNoEthtool, Class{Reason: ReasonNoEthtool, Skip: true}},
		{ErrDenied, Class{Reason: ReasonDenied, Skip: true}},
		{ErrAboveMax, Class{Reason: ReasonAboveMax, Skip: true}},
		{ErrNoInterface, Class{Reason: ReasonNoInterface, Transient: true, Skip: true}},
		{ErrBudget, Class{Reason: ReasonBudget, DomainWide: true, Transient: true}},
		{ErrTimeout, Class{Reason: ReasonTimeout, DomainWide: true, Transient: true, Skip: true}},
		{context.DeadlineExceeded, Class{Reason: ReasonTimeout, DomainWide: true, Transient: true, Skip: true}},
		{errors.New("boom"), Class{Reason: ReasonError, Transient: true}},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %+v, want %+v", tc.err, got, tc.want)
		}
	}
	seen := map[Reason]bool{}
	for _, r := range Reasons {
		if seen[r] {
			t.Errorf("Reasons lists %s twice", r)
		}
		seen[r] = true
	}
	if len(seen) != 12 {
		t.Errorf("Reasons has %d reasons, want 12", len(seen))
	}
}
