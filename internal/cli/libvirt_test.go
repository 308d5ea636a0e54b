package cli

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qmp"

	"github.com/virtmq/virtmq/agent/guest"
	"github.com/virtmq/virtmq/agent/virt"
	"github.com/virtmq/virtmq/agent/virt/virttest"
)

func TestGuestAgentMapsErrors(t *testing.T) {
	fake := virttest.New()
	define(t, fake, "db.xml")
	if err := fake.Start("db"); err != nil {
		t.Fatal(err)
	}
	d, _ := fake.LookupDomain(context.Background(), "db")
	a := guestAgent{conn: fake, dom: d}

	// No agent scripted: libvirt says it is not connected.
	_, err := a.Command(context.Background(), []byte(`{"execute":"guest-ping"}`), time.Second)
	if !errors.Is(err, guest.ErrNoAgent) || !errors.Is(err, virt.ErrAgentUnavailable) {
		t.Errorf("no agent: err = %v", err)
	}
	if got, want := err.Error(), "guest agent is not connected: QEMU guest agent is not connected"; got != want {
		t.Errorf("message %q, want libvirt's own %q", got, want)
	}

	fake.SetAgent(func(context.Context, virt.Domain, []byte, time.Duration) ([]byte, error) {
		return nil, fmt.Errorf("guest agent command on %q: %w", "db", virt.ErrTimeout)
	})
	if _, err := a.Command(context.Background(), []byte(`{}`), time.Second); !errors.Is(err, guest.ErrTimeout) {
		t.Errorf("timeout: err = %v", err)
	}

	other := errors.New("internal error: unable to execute QEMU agent command 'guest-exec': Command guest-exec has been disabled")
	fake.SetAgent(func(context.Context, virt.Domain, []byte, time.Duration) ([]byte, error) { return nil, other })
	if _, err := a.Command(context.Background(), []byte(`{}`), time.Second); err != other {
		t.Errorf("other errors must pass unchanged: %v", err)
	}

	fake.SetAgent(func(_ context.Context, _ virt.Domain, cmd []byte, timeout time.Duration) ([]byte, error) {
		return fmt.Appendf(nil, `{"return":{"cmd":%q,"timeout":%d}}`, cmd, timeout/time.Second), nil
	})
	out, err := a.Command(context.Background(), []byte(`{"execute":"guest-ping"}`), 7*time.Second)
	if want := `{"return":{"cmd":"{\"execute\":\"guest-ping\"}","timeout":7}}`; err != nil || string(out) != want {
		t.Errorf("reply %s, %v; want %s", out, err, want)
	}
}

func TestQMPMonitor(t *testing.T) {
	fake := virttest.New()
	define(t, fake, "db.xml")
	if err := fake.Start("db"); err != nil {
		t.Fatal(err)
	}
	d, _ := fake.LookupDomain(context.Background(), "db")
	fake.SetMonitor(func(_ context.Context, _ virt.Domain, cmd []byte) ([]byte, error) {
		return append([]byte(`{"return":`), append(cmd, '}')...), nil
	})
	var m qmp.Monitor = qmpMonitor{ctx: context.Background(), conn: fake, dom: d}
	if err := m.Connect(); err != nil {
		t.Fatal(err)
	}
	out, err := m.Run([]byte(`{"execute":"query-status"}`))
	if err != nil || string(out) != `{"return":{"execute":"query-status"}}` {
		t.Errorf("Run = %s, %v", out, err)
	}
	if _, err := m.Events(context.Background()); !errors.Is(err, qmp.ErrEventsNotSupported) {
		t.Errorf("Events: %v", err)
	}
	if err := m.Disconnect(); err != nil {
		t.Fatal(err)
	}

	// The monitor carries the verify run's context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (qmpMonitor{ctx: ctx, conn: fake, dom: d}).Run([]byte(`{}`)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v", err)
	}
}
