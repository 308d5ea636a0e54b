package agent

import (
	"log/slog"
	"sync"
	"time"
)

// notifier talks to systemd through Config.Notify (sd_notify): READY=1,
// STATUS= (sent only when the text changes), WATCHDOG=1 and STOPPING=1.
// Outside systemd Notify does nothing.
type notifier struct {
	notify func(state string) error
	log    *slog.Logger

	mu         sync.Mutex
	lastStatus string
	interval   time.Duration // watchdog ping interval (half of WatchdogSec); 0 when off
	lastPing   time.Time
	warned     bool
}

func (n *notifier) send(state string) {
	if err := n.notify(state); err != nil {
		n.mu.Lock()
		warned := n.warned
		n.warned = true
		n.mu.Unlock()
		if !warned {
			n.log.Warn("failed to notify systemd", "err", err)
		}
	}
}

// ready sends READY=1 with a status text.
func (n *notifier) ready(text string) {
	n.mu.Lock()
	n.lastStatus = text
	n.mu.Unlock()
	n.send("READY=1\nSTATUS=" + text)
}

// status sends STATUS=text when it differs from the last one.
func (n *notifier) status(text string) {
	n.mu.Lock()
	same := n.lastStatus == text
	n.lastStatus = text
	n.mu.Unlock()
	if !same {
		n.send("STATUS=" + text)
	}
}

// setWatchdog sets the ping interval: half of systemd's watchdog timeout.
func (n *notifier) setWatchdog(timeout time.Duration) {
	n.mu.Lock()
	n.interval = timeout / 2
	n.mu.Unlock()
}

// ping sends WATCHDOG=1.
func (n *notifier) ping(now time.Time) {
	n.mu.Lock()
	on := n.interval > 0
	n.lastPing = now
	n.mu.Unlock()
	if on {
		n.send("WATCHDOG=1")
	}
}

// kick pings the watchdog when an interval has passed since the last ping;
// long passes of the event loop (a resync of many domains) call it between
// domains.
func (n *notifier) kick(now time.Time) {
	n.mu.Lock()
	due := n.interval > 0 && now.Sub(n.lastPing) >= n.interval
	n.mu.Unlock()
	if due {
		n.ping(now)
	}
}
