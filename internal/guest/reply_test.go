package guest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/guest/guesttest"
)

// lossy is a guest behind libvirt that loses the replies drop chooses:
// the command reaches qemu-ga (and takes effect), but libvirt's timeout
// ends the call before the reply, as with a guest that answers late.
type lossy struct {
	inner guest.Agent
	drop  func(c guesttest.Command, argv string) bool

	mu       sync.Mutex
	timeouts []time.Duration // of every send
	sets     int             // guest-exec of ethtool -L
}

func (l *lossy) agent() guest.Agent {
	return guesttest.NewAgent(func(ctx context.Context, c guesttest.Command) ([]byte, error) {
		var args struct {
			Path string   `json:"path"`
			Arg  []string `json:"arg"`
		}
		_ = json.Unmarshal(c.Arguments, &args)
		argv := strings.Join(append([]string{args.Path}, args.Arg...), " ")
		l.mu.Lock()
		l.timeouts = append(l.timeouts, c.Timeout)
		if c.Execute == "guest-exec" && strings.Contains(argv, " -L ") {
			l.sets++
		}
		l.mu.Unlock()
		out, err := l.inner.Command(ctx, mustJSON(c), c.Timeout)
		if l.drop(c, argv) {
			time.Sleep(c.Timeout)
			return nil, fmt.Errorf("%w: Guest agent is not responding: timed out", guest.ErrTimeout)
		}
		return out, err
	})
}

// short waits for replies, so that the tests see them.
func replyOpts() guest.Options {
	o := fast
	o.ReplyTimeout = 20 * time.Millisecond
	return o
}

// A guest-exec-status without a reply is asked again, for the same pid,
// with the same short wait: the step goes on and ethtool -L runs once.
func TestConfigureRepollsUnansweredStatus(t *testing.T) {
	g, et := debian(1)
	g.Polls = 2
	var mu sync.Mutex
	polled := map[string]int{}
	l := &lossy{inner: g.Agent(), drop: func(c guesttest.Command, _ string) bool {
		if c.Execute != "guest-exec-status" {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		polled[string(c.Arguments)]++
		return polled[string(c.Arguments)] == 1 // the first poll of each pid: the guest still runs it
	}}
	opt := replyOpts()
	res, err := guest.Configure(context.Background(), l.agent(), mac, 4, opt)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.After.Current != 4 || et.NICs["eth0"].Current != 4 {
		t.Errorf("Configure() = %+v (guest %+v), want changed to 4", res, et.NICs["eth0"])
	}
	if l.sets != 1 {
		t.Errorf("ethtool -L started %d times, want 1", l.sets)
	}
	for _, d := range l.timeouts {
		if d > opt.ReplyTimeout {
			t.Errorf("a send waited %v for its reply, more than ReplyTimeout %v", d, opt.ReplyTimeout)
		}
	}
}

// The guest-exec of ethtool -L ran, but its reply was lost: it is not sent
// again; ethtool -l shows the count set, and the step is done.
func TestConfigureLostSetReplyLooks(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop func(c guesttest.Command, argv string) bool
	}{
		{"guest-exec", func(c guesttest.Command, argv string) bool {
			return c.Execute == "guest-exec" && strings.Contains(argv, " -L ")
		}},
		{"exit status", func() func(c guesttest.Command, argv string) bool {
			// The -L process is the second one; its exited reply is lost
			// (qemu-ga forgot it: the next poll is an unknown pid).
			lost := false
			return func(c guesttest.Command, _ string) bool {
				if lost || c.Execute != "guest-exec-status" || !strings.Contains(string(c.Arguments), `"pid":2`) {
					return false
				}
				lost = true
				return true
			}
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, et := debian(1)
			g.Polls = 0
			l := &lossy{inner: g.Agent(), drop: tc.drop}
			res, err := guest.Configure(context.Background(), l.agent(), mac, 3, replyOpts())
			if err != nil {
				t.Fatalf("Configure() = %v, want the set found by looking", err)
			}
			if !res.Changed || res.After.Current != 3 || et.NICs["eth0"].Current != 3 {
				t.Errorf("Configure() = %+v (guest %+v), want changed to 3", res, et.NICs["eth0"])
			}
			if l.sets != 1 {
				t.Errorf("ethtool -L started %d times, want 1", l.sets)
			}
		})
	}
}

// When the look shows the count was not set, the attempt fails as a
// timeout (retried later from what the guest has), without a second -L.
func TestConfigureLostSetNotDone(t *testing.T) {
	g, et := debian(1)
	inner := g.Agent()
	l := &lossy{inner: guesttest.NewAgent(func(ctx context.Context, c guesttest.Command) ([]byte, error) {
		if c.Execute == "guest-exec" && strings.Contains(string(c.Arguments), `"-L"`) {
			time.Sleep(c.Timeout) // qemu-ga never got to it
			return nil, fmt.Errorf("%w: Guest agent is not responding", guest.ErrTimeout)
		}
		return inner.Command(ctx, mustJSON(c), c.Timeout)
	}), drop: func(guesttest.Command, string) bool { return false }}
	_, err := guest.Configure(context.Background(), l.agent(), mac, 3, replyOpts())
	if !errors.Is(err, guest.ErrTimeout) {
		t.Fatalf("Configure() = %v, want ErrTimeout", err)
	}
	if l.sets != 1 || et.NICs["eth0"].Current != 1 {
		t.Errorf("ethtool -L sent %d times, guest at %d; want once, unchanged", l.sets, et.NICs["eth0"].Current)
	}
}
