package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/policy"
)

// Defaults for Config fields left zero.
const (
	// LibvirtClientRequests is libvirtd's max_client_requests default: how
	// many calls of one client connection it has in execution at once
	// (virtqemud's too); it stops reading the connection beyond them.
	LibvirtClientRequests = 5
	// ReconcileRequests is how many of those the guest lanes leave to the
	// reconciles (lookups, reads, redefines) whatever the guests do.
	ReconcileRequests = 2
	// DefaultConcurrency is the guest lanes' share of the connection: the
	// guest agent commands and QMP checks in flight at once.
	DefaultConcurrency     = LibvirtClientRequests - ReconcileRequests
	DefaultGuestTimeout    = 3 * time.Minute
	DefaultGuestAttempts   = 4
	DefaultGuestRetryDelay = 2 * time.Second
	DefaultGuestRetryMax   = 10 * time.Minute
	// DefaultGuestSlice: a healthy guest answers a whole guest step (about
	// a dozen agent commands of a few ms each) well within it; a slower
	// one is not failed, it goes on in the slow lane.
	DefaultGuestSlice   = 2 * time.Second
	DefaultCallTimeout  = 10 * time.Second
	DefaultDialTimeout  = 10 * time.Second
	DefaultQMPTimeout   = 10 * time.Second
	DefaultReconnectMin = 500 * time.Millisecond
	DefaultReconnectMax = 30 * time.Second
	DefaultRetryMin     = time.Second
	DefaultRetryMax     = 2 * time.Minute
	// DefaultMaxRedefines is how many times in a row the agent redefines a
	// domain whose definition still differs from the rewrite afterwards.
	DefaultMaxRedefines = 3
	// DefaultVCPUCheckInterval keeps a vCPU hot-plug's new M within 60 s
	// (interval + a guest step of a few seconds); see hotplug.go.
	DefaultVCPUCheckInterval = 15 * time.Second
	// DefaultDefinitionCheckInterval bounds how long a --config-only
	// change to a domain that is shut off goes unseen.
	DefaultDefinitionCheckInterval = 5 * time.Minute
	// DefaultStateDir is where the agent keeps its restart intents.
	DefaultStateDir = "/var/lib/virtmq"
)

// DialFunc connects to libvirt; virt.Dial is the real one.
type DialFunc func(ctx context.Context, sockets []string) (virt.Conn, string, error)

// GuestFunc runs the guest step for one NIC; guest.Configure is the real one.
type GuestFunc = guest.ConfigureFunc

// Config is everything virtmq-agent needs. Zero fields take the defaults;
// the function fields are the boundaries tests replace (the rewrite,
// domxml.Apply, and the QMP check, qmpcheck.Query, are called as they are:
// tests drive them through the fake libvirt's XML and QMP replies).
type Config struct {
	// PolicyPath is an explicit policy file (--policy). Empty means
	// $VIRTMQ_POLICY, else DefaultPolicyPath when it exists, else the
	// policy built into the binary (see policy.Resolve).
	PolicyPath string
	// DefaultPolicyPath is policy.DefaultPath outside tests.
	DefaultPolicyPath string
	// Getenv reads the environment (os.Getenv outside tests).
	Getenv func(string) string

	// LibvirtSockets are probed in order (default virt.DefaultSockets).
	LibvirtSockets []string
	// StatusSocket is where the status is served (default status.DefaultSocket).
	StatusSocket string
	// StateDir holds what must survive the agent (default
	// DefaultStateDir): the intents of domains stopped at their reboot to
	// cold boot them (apply_at: next-reboot), finished at the next start.
	StateDir string
	// MetricsListen is the address of the Prometheus endpoint (/metrics);
	// empty disables it.
	MetricsListen string
	// MetricsWebConfig is a Prometheus exporter-toolkit web configuration
	// file for the metrics endpoint, as node_exporter's --web.config.file
	// takes it: TLS (tls_server_config: cert_file, key_file; client_ca_file
	// and client_auth_type for client certificates) and basic auth
	// (basic_auth_users, bcrypt hashes). It is checked at the start and read
	// again for every connection (certificates can be renewed in place).
	// Empty serves plain HTTP.
	MetricsWebConfig string

	// Concurrency is how many guest agent commands or QMP checks are in
	// flight at once on the libvirt connection, both lanes together (up to
	// 4 × Concurrency domains are in the fast lane; runs moved to the slow
	// lane hold at most a third of the slots; see GuestSlice and the
	// scheduler). Keep it below libvirtd's max_client_requests
	// (LibvirtClientRequests) so that reconciles always find a free one.
	Concurrency int
	// GuestSlice is how long one domain's guest step and QMP check may stay
	// in the fast lane; after it the rest of the run takes one slow slot per
	// command, and its next attempts start there (until a success or a
	// boot). Slow or hostile guests so take turns among themselves.
	GuestSlice time.Duration
	// GuestTimeout bounds one guest step attempt for one domain (all its NICs).
	GuestTimeout time.Duration
	// GuestAttempts is how many times a guest step that failed for a
	// transient reason (timeout, unknown error) is tried; reasons the guest
	// gives (guest-exec disabled, no ethtool, ...) are never retried.
	GuestAttempts int
	// GuestRetryDelay is the first delay between attempts; it doubles with
	// each failure of the domain, up to GuestRetryMax. The count is kept per
	// domain across guest agent reconnects: after GuestAttempts failures the
	// next agent-connected event gets the next attempt, not before the
	// backoff. A success or a (re)start of the domain resets it.
	GuestRetryDelay time.Duration
	GuestRetryMax   time.Duration
	// Guest bounds the single guest agent commands.
	Guest guest.Options

	// DialTimeout bounds connecting to libvirt.
	DialTimeout time.Duration
	// CallTimeout bounds one libvirt call. Keep it well below systemd's
	// WatchdogSec: the event loop pings the watchdog between calls.
	CallTimeout time.Duration
	// QMPTimeout bounds one QMP verification of one NIC.
	QMPTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the reconnect backoff.
	ReconnectMin, ReconnectMax time.Duration
	// RetryMin and RetryMax bound the backoff of a domain whose libvirt
	// call failed for a transient reason (a timeout, a busy daemon): its
	// reconcile is tried again after RetryMin, doubling up to RetryMax,
	// then every RetryMax until it succeeds.
	RetryMin, RetryMax time.Duration
	// MaxRedefines stops a redefine loop: after this many redefines of a
	// domain whose definition still needs a change, the agent reports an
	// error for it instead (reset by a policy reload or a reconnect).
	MaxRedefines int

	// VCPUCheckInterval is how often the live vCPU count of running
	// domains with combined: vcpus is read (setvcpus --live sends no
	// event); DefinitionCheckInterval how often every definition is read
	// again (attach-interface --config sends none either). Zero takes the
	// default (DefaultVCPUCheckInterval, DefaultDefinitionCheckInterval);
	// negative turns the check off. See hotplug.go.
	VCPUCheckInterval, DefinitionCheckInterval time.Duration

	// Reload delivers reload requests (SIGHUP): the policy is read again
	// and every domain reconciled. May be nil.
	Reload <-chan os.Signal

	// Logger receives the agent's logs (default: discard).
	Logger *slog.Logger
	// Notify sends a systemd notification (default: daemon.SdNotify; a
	// no-op outside systemd).
	Notify func(state string) error
	// Watchdog returns systemd's watchdog interval, 0 when disabled
	// (default: daemon.SdWatchdogEnabled).
	Watchdog func() (time.Duration, error)
	// Registry receives the metrics (default: a new pedantic registry with
	// the Go and process collectors). It is served only with MetricsListen.
	Registry *prometheus.Registry

	// Dial connects to libvirt (default virt.Dial).
	Dial DialFunc
	// GuestStep runs the in-guest step for one NIC (default guest.Configure).
	GuestStep GuestFunc
	// Now is the clock (default time.Now).
	Now func() time.Time
	// AfterFunc runs f in its own goroutine after d, unless stop is called
	// first (default: time.AfterFunc(d, f).Stop). Every timer of the event
	// loop uses it: the domain retries, the reconnect and resync backoff,
	// the periodic checks, the watchdog ping, the hot-plug recheck.
	AfterFunc func(d time.Duration, f func()) (stop func() bool)
}

// withDefaults returns c with every zero field set, or an error for values
// that make no sense.
func (c Config) withDefaults() (Config, error) {
	if c.Concurrency < 0 || c.GuestTimeout < 0 || c.CallTimeout < 0 || c.DialTimeout < 0 ||
		c.QMPTimeout < 0 || c.GuestAttempts < 0 || c.GuestRetryDelay < 0 || c.GuestRetryMax < 0 || c.GuestSlice < 0 ||
		c.ReconnectMin < 0 || c.ReconnectMax < 0 || c.RetryMin < 0 || c.RetryMax < 0 {
		return c, errors.New("agent: negative concurrency, count or timeout")
	}
	defaultTo(&c.DefaultPolicyPath, policy.DefaultPath)
	if c.Getenv == nil {
		c.Getenv = os.Getenv
	}
	if len(c.LibvirtSockets) == 0 {
		c.LibvirtSockets = virt.DefaultSockets
	}
	defaultTo(&c.StatusSocket, status.DefaultSocket)
	defaultTo(&c.StateDir, DefaultStateDir)
	defaultTo(&c.Concurrency, DefaultConcurrency)
	defaultTo(&c.GuestTimeout, DefaultGuestTimeout)
	defaultTo(&c.GuestAttempts, DefaultGuestAttempts)
	defaultTo(&c.GuestRetryDelay, DefaultGuestRetryDelay)
	defaultTo(&c.GuestRetryMax, DefaultGuestRetryMax)
	defaultTo(&c.GuestSlice, DefaultGuestSlice)
	defaultTo(&c.DialTimeout, DefaultDialTimeout)
	defaultTo(&c.CallTimeout, DefaultCallTimeout)
	defaultTo(&c.QMPTimeout, DefaultQMPTimeout)
	defaultTo(&c.ReconnectMin, DefaultReconnectMin)
	defaultTo(&c.ReconnectMax, DefaultReconnectMax)
	if c.ReconnectMax < c.ReconnectMin {
		return c, fmt.Errorf("agent: reconnect backoff maximum %v is below the minimum %v", c.ReconnectMax, c.ReconnectMin)
	}
	defaultTo(&c.RetryMin, DefaultRetryMin)
	if c.RetryMax == 0 {
		c.RetryMax = max(DefaultRetryMax, c.RetryMin)
	}
	if c.RetryMax < c.RetryMin {
		return c, fmt.Errorf("agent: retry backoff maximum %v is below the minimum %v", c.RetryMax, c.RetryMin)
	}
	defaultTo(&c.MaxRedefines, DefaultMaxRedefines)
	// The periodic checks are the one place a negative value means
	// something (off), as their field says; it is kept as it is.
	defaultTo(&c.VCPUCheckInterval, DefaultVCPUCheckInterval)
	defaultTo(&c.DefinitionCheckInterval, DefaultDefinitionCheckInterval)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Notify == nil {
		c.Notify = func(state string) error {
			_, err := daemon.SdNotify(false, state)
			return err
		}
	}
	if c.Watchdog == nil {
		c.Watchdog = func() (time.Duration, error) { return daemon.SdWatchdogEnabled(false) }
	}
	if c.Dial == nil {
		c.Dial = virt.Dial
	}
	if c.GuestStep == nil {
		c.GuestStep = guest.Configure
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.AfterFunc == nil {
		c.AfterFunc = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	return c, nil
}

// defaultTo sets *v to def when it is the zero value (the field was left unset).
func defaultTo[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
