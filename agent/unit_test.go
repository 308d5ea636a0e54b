package agent

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
)

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.StatusSocket != status.DefaultSocket || len(c.LibvirtSockets) != 2 || c.Concurrency != DefaultConcurrency ||
		c.GuestTimeout != DefaultGuestTimeout || c.CallTimeout != DefaultCallTimeout || c.Dial == nil ||
		c.GuestStep == nil || c.Logger == nil || c.Notify == nil || c.Watchdog == nil ||
		c.RetryMin != DefaultRetryMin || c.RetryMax != DefaultRetryMax || c.AfterFunc == nil {
		t.Errorf("defaults = %+v", c)
	}
	for _, bad := range []Config{
		{Concurrency: -1},
		{GuestTimeout: -time.Second},
		{ReconnectMin: time.Minute, ReconnectMax: time.Second},
		{RetryMin: time.Minute, RetryMax: time.Second},
		{RetryMin: -time.Second},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	steps := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, s := range steps {
		s *= time.Millisecond
		d := b.next()
		if d < s/2 || d > s {
			t.Errorf("step %d: %v, want within [%v, %v]", i, d, s/2, s)
		}
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Errorf("after reset: %v", d)
	}
}

// A job that keeps failing transiently is tried attempts times, and does
// not hold a concurrency slot while it waits to retry.
func TestSchedulerRetries(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	runs := map[string]int{}
	s := newScheduler(ctx, schedOptions{concurrency: 1, slice: time.Minute, attempts: 3, delay: time.Second}, func(_ context.Context, v *domainView, j job, attempt int, _ *lease) bool {
		mu.Lock()
		runs[v.d.Name]++
		mu.Unlock()
		return v.d.Name == "bad"
	})
	s.schedule(&domainView{d: virt.Domain{Name: "bad", UUID: "1"}}, job{guest: true})
	time.Sleep(5 * time.Millisecond) // bad runs, then waits to retry
	start := time.Now()
	s.schedule(&domainView{d: virt.Domain{Name: "good", UUID: "2"}}, job{guest: true})
	for {
		mu.Lock()
		n := runs["good"]
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("good never ran")
		}
		time.Sleep(time.Millisecond)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("good waited %v behind bad's retry delay", d)
	}
	cancel()
	s.wait()
	mu.Lock()
	defer mu.Unlock()
	if runs["bad"] > 3 {
		t.Errorf("bad ran %d times, want at most 3", runs["bad"])
	}
}

func TestSchedulerAttemptsBounded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n atomic.Int32
	done := make(chan struct{})
	s := newScheduler(ctx, schedOptions{concurrency: 2, slice: time.Minute, attempts: 3, delay: time.Millisecond}, func(_ context.Context, v *domainView, j job, attempt int, _ *lease) bool {
		if n.Add(1) == 3 {
			close(done)
		}
		return true
	})
	s.schedule(&domainView{d: virt.Domain{Name: "bad", UUID: "1"}}, job{guest: true})
	<-done
	time.Sleep(50 * time.Millisecond)
	if got := n.Load(); got != 3 {
		t.Errorf("runs = %d, want 3", got)
	}
	cancel()
	s.wait()
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	h := newHarness(t)
	fs := newFakeGuestStep(func(_ context.Context, _, _ string, m int) (guest.Result, error) { return okResult(m), nil })
	h.cfg.GuestStep = fs.step
	h.start()
	for i := range 5 {
		name := fmt.Sprintf("vm%d", i)
		mustDefine(t, h.fake, domainXML(name, 4, 0, mac(i)))
		must(t, h.fake.Start(name))
		must(t, h.fake.AgentConnect(name))
	}
	h.settle()
	h.fake.Disconnect()
	h.waitFor("reconnected", func(s status.Snapshot) bool { return s.Libvirt.Connected && s.Libvirt.Reconnects == 1 })
	h.settle()
	h.stop()
	h.fake.Disconnect() // the test's own connection
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines left (was %d):\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
