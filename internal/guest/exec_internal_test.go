package guest

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestNextPoll(t *testing.T) {
	const limit = 100 * time.Millisecond
	var got []time.Duration
	var wait time.Duration
	for range 7 {
		wait = nextPoll(wait, limit)
		got = append(got, wait)
	}
	want := []time.Duration{10, 20, 40, 80, 100, 100, 100}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("waits = %v, want %v ms", got, want)
		}
	}
	if w := nextPoll(0, 5*time.Nanosecond); w != 1 {
		t.Errorf("first wait with a 5ns limit = %v, want 1ns", w)
	}
}

// FuzzDecodeCapped checks the capped decoding of guest-exec-status
// out-data/err-data (base64 the guest controls): never more than max
// bytes, and for base64 without line breaks (qemu-ga's g_base64_encode
// writes none) a prefix of the full decoding, cut exactly when bytes were
// dropped. encoding/base64 skips \r and \n, so with line breaks the 4-
// character cut and the cut flag are off (testdata/fuzz/FuzzDecodeCapped);
// such data only has to be handled safely.
func FuzzDecodeCapped(f *testing.F) {
	f.Add("Q29tYmluZWQ6CTQK", 4)
	f.Add("Q29tYmluZWQ6CTQK", 100)
	f.Add("QUJD", 3)
	f.Add("QUJDRA==", 3)
	f.Add("QUJDRA=", 2)
	f.Add("!!!!", 1)
	f.Add("", 1)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 1 || max > 1<<20 {
			return
		}
		out, cut, err := decodeCapped(s, max)
		if len(out) > max {
			t.Fatalf("decodeCapped(%q, %d) kept %d bytes", s, max, len(out))
		}
		if strings.ContainsAny(s, "\r\n") {
			return
		}
		full, ferr := base64.StdEncoding.DecodeString(s)
		switch {
		case err != nil && ferr == nil:
			t.Fatalf("decodeCapped(%q, %d) = %v; the whole string decodes", s, max, err)
		case err != nil:
		case ferr != nil:
			if !cut {
				t.Fatalf("decodeCapped(%q, %d) = %q, nil, not cut; the whole string does not decode: %v", s, max, out, ferr)
			}
		default:
			if want := full[:min(len(full), max)]; !bytes.Equal(out, want) || cut != (len(full) > max) {
				t.Fatalf("decodeCapped(%q, %d) = %q, %v; want %q, %v", s, max, out, cut, want, len(full) > max)
			}
		}
	})
}

// lateContext has a deadline in the past but ends only when end is
// closed, as a context whose deadline timer has not fired yet.
type lateContext struct {
	context.Context
	end chan struct{}
}

func (c lateContext) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }
func (c lateContext) Done() <-chan struct{}       { return c.end }
func (c lateContext) Err() error {
	select {
	case <-c.end:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// TestCallPastDeadline: a command asked for after its context's deadline
// but before the context ended returns once the context has ended, so that
// run can tell its ExecTimeout ("still running after ...", ErrTimeout)
// from the caller's deadline. Returning at once made TestConfigureTimeout
// flaky.
func TestCallPastDeadline(t *testing.T) {
	ctx := lateContext{Context: context.Background(), end: make(chan struct{})}
	s := &session{a: agentFunc(func(context.Context, []byte, time.Duration) ([]byte, error) {
		return nil, errors.New("the agent was called after the deadline")
	}), o: Options{}.withDefaults()}
	go func() {
		time.Sleep(20 * time.Millisecond)
		close(ctx.end)
	}()
	_, err := call[execStatus](ctx, s, "guest-exec-status", map[string]int64{"pid": 1})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call = %v, want context.DeadlineExceeded", err)
	}
	if ctx.Err() == nil {
		t.Fatal("call returned before its context ended")
	}
}

type agentFunc func(ctx context.Context, cmd []byte, timeout time.Duration) ([]byte, error)

func (f agentFunc) Command(ctx context.Context, cmd []byte, timeout time.Duration) ([]byte, error) {
	return f(ctx, cmd, timeout)
}

// However a guest answers, one run sends at most maxCommands commands
// besides guest-exec-status polls.
func TestCommandBudget(t *testing.T) {
	sent := 0
	s := &session{a: agentFunc(func(context.Context, []byte, time.Duration) ([]byte, error) {
		sent++
		return []byte(`{"return":{}}`), nil
	}), o: Options{}.withDefaults()}
	for range maxCommands {
		if _, err := call[struct{}](context.Background(), s, "guest-exec-status", nil); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	for i := 0; err == nil && i < 10*maxCommands; i++ {
		_, err = call[struct{}](context.Background(), s, "guest-exec", nil)
	}
	if !errors.Is(err, ErrBudget) || !isAbort(err) {
		t.Errorf("err = %v, want ErrBudget", err)
	}
	if sent != 2*maxCommands {
		t.Errorf("sent %d commands, want %d polls + %d others", sent, maxCommands, maxCommands)
	}
}
