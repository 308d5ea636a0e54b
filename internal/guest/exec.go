package guest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

type execArgs struct {
	Path          string   `json:"path"`
	Arg           []string `json:"arg,omitempty"`
	Env           []string `json:"env,omitempty"`
	CaptureOutput bool     `json:"capture-output"`
}

type execStarted struct {
	PID *int64 `json:"pid"`
}

type execStatus struct {
	Exited       bool   `json:"exited"`
	ExitCode     *int   `json:"exitcode"`
	Signal       *int   `json:"signal"`
	OutData      string `json:"out-data"`
	ErrData      string `json:"err-data"`
	OutTruncated bool   `json:"out-truncated"`
	ErrTruncated bool   `json:"err-truncated"`
}

// execResult is a finished guest program.
type execResult struct {
	exitCode int // -1 when killed by a signal
	signal   int
	stdout   []byte // decoded, at most MaxOutput bytes
	stderr   []byte
	// truncated: the agent (16 MiB limit) or we (MaxOutput) cut the output.
	outTruncated, errTruncated bool
	// outB64 is the raw out-data, for callers that scan it as a stream.
	outB64 string
}

// execEnv is the child's whole environment: qemu-ga's own may carry a
// guest locale, and tool output is parsed in C.
var execEnv = []string{"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}

// spawnError is a guest-exec that did not start the program.
type spawnError struct {
	argv []string
	err  error
}

func (e *spawnError) Error() string {
	return fmt.Sprintf("guest-exec %s: %v", strings.Join(e.argv, " "), e.err)
}

func (e *spawnError) Unwrap() error { return e.err }

// run starts argv[0] with guest-exec and polls guest-exec-status until it
// exits, all within ExecTimeout: first right away, then after waits that
// grow from a tenth of PollInterval to PollInterval (nextPoll). A guest-exec
// error comes back as a *spawnError. The caller checks the exit status.
//
// qemu-ga deletes a process's entry with its first exited:true reply, so a
// status is asked once per poll and never again after it said exited. A
// poll without a reply is sent again for the same pid (call); if that
// reply says the pid is unknown, the late reply to the lost poll took the
// exit status with it: the outcome is not known, reported as ErrTimeout
// (the program is never started again blindly). Other failed polls are
// not retried.
func (s *session) run(ctx context.Context, argv []string) (execResult, error) {
	ectx, cancel := context.WithTimeout(ctx, s.o.ExecTimeout)
	defer cancel()
	timedOut := func(err error) error {
		if ctx.Err() == nil && ectx.Err() != nil {
			return fmt.Errorf("%w: still running after %v (%v)", ErrTimeout, s.o.ExecTimeout, err)
		}
		return err
	}

	started, err := call[execStarted](ectx, s, "guest-exec", execArgs{
		Path: argv[0], Arg: argv[1:], Env: execEnv, CaptureOutput: true,
	})
	if err != nil {
		return execResult{}, &spawnError{argv: argv, err: timedOut(err)}
	}
	if started.PID == nil {
		return execResult{}, errors.New("guest-exec reply has no pid")
	}
	pid := *started.PID

	t := time.NewTimer(s.o.PollInterval)
	defer t.Stop()
	var wait time.Duration
	s.statusLost = false
	for {
		st, err := call[execStatus](ectx, s, "guest-exec-status", map[string]int64{"pid": pid})
		var ce *CommandError
		if err != nil && s.statusLost && errors.As(err, &ce) {
			return execResult{}, fmt.Errorf("guest-exec-status pid %d: %w: the exit status went with a reply that came too late (%w)", pid, ErrTimeout, err)
		}
		if err != nil {
			return execResult{}, fmt.Errorf("guest-exec-status pid %d: %w", pid, timedOut(err))
		}
		if st.Exited {
			return s.finish(st)
		}
		wait = nextPoll(wait, s.o.PollInterval)
		t.Reset(wait)
		select {
		case <-ectx.Done():
			return execResult{}, fmt.Errorf("guest pid %d: %w", pid, timedOut(ectx.Err()))
		case <-t.C:
		}
	}
}

// nextPoll returns the wait before the next guest-exec-status poll after a
// wait of prev (0 before the first): a tenth of limit, then doubling up to
// limit. The programs run here (ethtool, readlink, cat) exit within
// milliseconds, but the first poll, right after guest-exec, usually finds
// them still running: with a fixed limit-long wait every run took at least
// limit (100 ms by default, three runs per guest step), while a concurrency
// slot of the agent was held. A long-running program is polled only about
// three times more than with the fixed interval.
func nextPoll(prev, limit time.Duration) time.Duration {
	if prev <= 0 {
		return max(limit/10, 1)
	}
	return min(2*prev, limit)
}

func (s *session) finish(st execStatus) (execResult, error) {
	r := execResult{exitCode: -1, outTruncated: st.OutTruncated, errTruncated: st.ErrTruncated, outB64: st.OutData}
	switch {
	case st.ExitCode != nil:
		r.exitCode = *st.ExitCode
	case st.Signal != nil:
		r.signal = *st.Signal
	}
	var cut bool
	var err error
	if r.stdout, cut, err = decodeCapped(st.OutData, s.o.MaxOutput); err != nil {
		return r, fmt.Errorf("out-data: %w", err)
	}
	r.outTruncated = r.outTruncated || cut
	if r.stderr, cut, err = decodeCapped(st.ErrData, s.o.MaxOutput); err != nil {
		return r, fmt.Errorf("err-data: %w", err)
	}
	r.errTruncated = r.errTruncated || cut
	return r, nil
}

// decodeCapped decodes at most max bytes of standard base64, decoding only
// the prefix it keeps so that a 16 MiB out-data costs no 16 MiB buffer.
func decodeCapped(s string, max int) ([]byte, bool, error) {
	cut := false
	// Every 4 base64 characters give 3 bytes; keep whole quanta. The limit
	// is only computed when max is below the decoded length, so it cannot
	// overflow.
	if base64.StdEncoding.DecodedLen(len(s)) > max {
		if limit := (max/3 + 1) * 4; limit < len(s) {
			s, cut = s[:limit], true
		}
	}
	buf := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(buf, []byte(s))
	if err != nil {
		return nil, false, fmt.Errorf("not base64: %w", err)
	}
	buf = buf[:n]
	if len(buf) > max {
		buf, cut = buf[:max], true
	}
	return buf, cut, nil
}

// exitError describes a non-zero exit, with a bounded piece of stderr.
func (r execResult) exitError() error {
	msg := strings.TrimSpace(string(r.stderr))
	if msg == "" {
		msg = strings.TrimSpace(string(r.stdout))
	}
	how := fmt.Sprintf("exit status %d", r.exitCode)
	if r.exitCode < 0 {
		how = fmt.Sprintf("killed by signal %d", r.signal)
	}
	if msg == "" {
		return errors.New(how)
	}
	return fmt.Errorf("%s: %q", how, snippet(msg))
}

// firstRunnable runs the first of the candidate argvs whose program exists.
// A candidate is skipped when guest-exec cannot start it (missing: ENOENT,
// or any agent error reply, since glib's message is localized) or when it
// exits 127 (the shell convention for "not found"). It returns the index of
// the candidate that ran, or errMissing when none could be started; a start
// refused for permission gives ErrDenied.
func (s *session) firstRunnable(ctx context.Context, cands [][]string) (int, execResult, error) {
	var last, denied error
	tried := make([]string, 0, len(cands))
	for i, argv := range cands {
		tried = append(tried, argv[0])
		r, err := s.run(ctx, argv)
		if err != nil {
			var se *spawnError
			if !errors.As(err, &se) || isAbort(err) {
				return i, r, err
			}
			if isDisabled(err) {
				return i, r, fmt.Errorf("%w: %w", ErrExecDisabled, err)
			}
			var ce *CommandError
			switch {
			case containsAny(err.Error(), deniedWords):
				denied = err
			case containsAny(err.Error(), notFoundWords), errors.As(err, &ce):
			default:
				// An error we cannot tell from a transport failure.
				return i, r, err
			}
			last = err
			continue
		}
		if r.exitCode == 127 {
			last = fmt.Errorf("%s: exit status 127 (not found)", argv[0])
			continue
		}
		return i, r, nil
	}
	if denied != nil {
		return -1, execResult{}, fmt.Errorf("%w: %w", ErrDenied, denied)
	}
	return -1, execResult{}, fmt.Errorf("%w: tried %s; last: %w", errMissing, strings.Join(tried, ", "), last)
}

// errMissing is firstRunnable's "none of these exist".
var errMissing = errors.New("no such program")
