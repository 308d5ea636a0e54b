// Package agent is virtmq-agent: the host daemon that makes multi-queue
// virtio-net zero-touch on a libvirt host.
//
// It keeps one connection to libvirt's QEMU driver (reconnecting with
// backoff when the daemon restarts or idles out) and after every
// (re)connect reconciles every domain, so nothing that happened while it
// was away is lost. Then:
//
//   - On each DEFINED event it reads the domain's inactive XML, applies the
//     policy with domxml.Apply (exactly what `virtmq rewrite` prints) and
//     redefines the domain, with validation, only when the bytes differ:
//     its own redefine fires another DEFINED, which then finds nothing to
//     do. Transient domains are never redefined, only reported. A domain
//     that runs with other queue counts than its definition is reported
//     pending a cold boot (a reboot keeps the running count). A libvirt
//     call that fails for a transient reason (a timeout, a busy daemon) is
//     retried per domain with backoff, from a fresh read: a redefine that
//     timed out but landed is found, not made again.
//   - When a guest's qemu-guest-agent connects (after every boot and
//     reboot) and at resync, it sets the guest's combined channel count
//     (ethtool -L through guest-exec) where the policy asks for it: one
//     worker per domain at a time, a global concurrency limit, bounded
//     timeouts, retries with backoff for transient failures; reasons the
//     guest gives (guest-exec disabled, no ethtool, ...) are reported, not
//     retried.
//   - After a start and after the guest step it verifies each NIC over QMP
//     (x-query-virtio-status: num-vqs and VIRTIO_NET_F_MQ). QMP through
//     libvirt taints the domain "custom-monitor", guest agent commands
//     "custom-ga-command"; virtmq uses QMP for verification only.
//
// The per-domain, per-NIC state is served as JSON on a unix socket
// (package status), metrics optionally over HTTP for Prometheus. Under
// systemd it reports READY=1 once the policy is valid and the status socket
// listens (without waiting for libvirt), describes what it does in STATUS=,
// and pings the watchdog from its event loop. A reload (SIGHUP) reads the
// policy again, keeping the previous one when the new one is invalid or
// its file is gone.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/virtmq/virtmq/internal/build"
	"github.com/virtmq/virtmq/internal/facts"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/policy"
)

// Agent is one virtmq-agent. Create it with New and start it with Run.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	store   *store
	metrics *metrics
	reg     *prometheus.Registry
	sd      *notifier

	pol   atomic.Pointer[policy.Policy]
	conn  atomic.Pointer[connRef]
	sched *scheduler
	// retry holds the domains waiting to be reconciled again after a
	// transient libvirt failure (the loop and its reconcile workers).
	retry *retries
	// recheck receives domains to reconcile once more, a while after a
	// hot-plug (see deviceRecheck).
	recheck chan virt.Domain
	// facts reads the domains on factsConn, caching the networks'
	// forward modes until a resync or definition check, and compliant has
	// the definitions last found compliant, by UUID (see compliantDef).
	// factsMu guards the three: the loop's reconcile workers share them.
	factsMu   sync.Mutex
	facts     *facts.Reader
	factsConn virt.Conn
	compliant map[string]compliantDef
	// everConnected is set at the first connection (loop goroutine only).
	everConnected bool
	// fromDisk is set once a policy was loaded from a file (Run, then the
	// loop goroutine only): from then on the built-in default is never
	// taken, so a policy file that vanished cannot silently turn observe
	// into apply, enforce into apply, or drop the drop-ins' exclusions.
	fromDisk bool
	// intentProblem is why the last attempt to write a restart intent
	// failed (nil once one succeeds): apply_at: next-reboot cannot act
	// while the state folder is full or read-only (see reboot.go).
	intentProblem atomic.Pointer[string]
	// fp are the failpoints of a failpoints build (nil otherwise).
	fp *failpoints
}

// connRef holds the current libvirt connection for the guest workers.
type connRef struct{ c virt.Conn }

// New checks cfg and builds an agent. It does no I/O.
func New(cfg Config) (*Agent, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "agent"),
		store:   newStore(build.Version, cfg.Now),
		reg:     cfg.Registry,
		retry:   newRetries(cfg.RetryMin, cfg.RetryMax, cfg.AfterFunc),
		recheck: make(chan virt.Domain, 64),
	}
	if a.reg == nil {
		a.reg = prometheus.NewPedanticRegistry()
		a.reg.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		)
	}
	a.metrics, err = newMetrics(a.reg, a.store.counts, a.store.snapshot, build.Version, build.Commit, runtime.Version())
	if err != nil {
		return nil, fmt.Errorf("agent: failed to register metrics: %w", err)
	}
	a.sd = &notifier{notify: cfg.Notify, log: cfg.Logger.With("component", "systemd")}
	a.fp = newFailpoints(cfg.Getenv, a.log.Warn)
	return a, nil
}

// Run runs the agent with cfg until ctx ends; see Agent.Run.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// Snapshot returns the state the status socket serves.
func (a *Agent) Snapshot() status.Snapshot { return a.store.snapshot() }

// Run loads the policy, listens on the status socket (and the metrics
// address), tells systemd it is ready, then connects to libvirt and
// reconciles until ctx ends. It returns an error when it cannot start (an
// invalid policy, a socket it cannot listen on) or when a listener fails;
// after ctx ends it stops the workers, closes the listeners, removes the
// status socket and returns nil. libvirt being unavailable is not an
// error: the agent keeps retrying.
func (a *Agent) Run(ctx context.Context) error {
	a.sd.status("loading the policy")
	p, err := a.loadPolicy()
	if err != nil {
		return fmt.Errorf("invalid policy: %w", err)
	}
	a.usePolicy(p)

	ln, err := status.Listen(a.cfg.StatusSocket)
	if err != nil {
		return err
	}
	defer func() {
		_ = ln.Close()
		// The listener unlinks the socket on close; make sure anyway.
		if err := os.Remove(a.cfg.StatusSocket); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("failed to remove the status socket", "path", a.cfg.StatusSocket, "err", err)
		}
	}()
	var mln net.Listener
	if a.cfg.MetricsWebConfig != "" && a.cfg.MetricsListen == "" {
		return fmt.Errorf("a metrics web config (%s) needs a metrics address to serve", a.cfg.MetricsWebConfig)
	}
	if a.cfg.MetricsListen != "" {
		// A web config that does not load must stop the start, not let
		// the metrics out in plain HTTP.
		if err := web.Validate(a.cfg.MetricsWebConfig); err != nil {
			return fmt.Errorf("metrics web config %s: %w", a.cfg.MetricsWebConfig, err)
		}
		mln, err = net.Listen("tcp", a.cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("failed to listen for metrics: %w", err)
		}
		defer mln.Close()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Go(func() {
		if err := status.Serve(ctx, ln, a.store.snapshot); err != nil {
			errc <- err
			cancel()
		}
	})
	if mln != nil {
		srv := a.metricsServer()
		webConfig := &web.FlagConfig{WebConfigFile: &a.cfg.MetricsWebConfig}
		wg.Go(func() {
			// TLS, client certificates and basic auth as the web config
			// says, the way node_exporter serves them.
			err := web.Serve(mln, srv, webConfig, a.cfg.Logger.With("component", "metrics"))
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics endpoint: %w", err)
				cancel()
			}
		})
		stop := context.AfterFunc(ctx, func() {
			sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
			defer c()
			_ = srv.Shutdown(sctx)
		})
		defer stop()
		a.log.Info("serving metrics", "address", mln.Addr().String(), "web_config", a.cfg.MetricsWebConfig)
	}
	a.log.Info("status socket listening", "path", a.cfg.StatusSocket)

	a.sched = newScheduler(ctx, schedOptions{
		concurrency: a.cfg.Concurrency,
		slice:       a.cfg.GuestSlice,
		attempts:    a.cfg.GuestAttempts,
		delay:       a.cfg.GuestRetryDelay,
		maxDelay:    a.cfg.GuestRetryMax,
		now:         a.cfg.Now,
	}, a.runJob)
	a.sd.ready("connecting to libvirt")
	a.loop(ctx)

	a.sd.send("STOPPING=1")
	a.log.Info("stopping")
	cancel()
	a.sched.wait()
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func (a *Agent) metricsServer() *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{
		Registry:          a.reg,
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "virtmq-agent: metrics at /metrics")
	})
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.cfg.Logger.With("component", "metrics").Handler(), slog.LevelWarn),
	}
}

// loadPolicy resolves and loads the policy like every virtmq program. The
// built-in default is taken only while no policy was ever loaded from disk
// (policy.Resolve itself refuses it when drop-ins are left): after that, a
// missing file is an error wrapping policy.ErrMissing, and reload keeps the
// last good policy. Going back to the built-in default takes a restart.
func (a *Agent) loadPolicy() (*policy.Policy, error) {
	p, embedded, err := policy.Resolve(a.cfg.PolicyPath, a.cfg.Getenv, a.cfg.DefaultPolicyPath)
	if err != nil {
		return nil, err
	}
	if embedded {
		if a.fromDisk {
			return nil, fmt.Errorf("load policy: %w: %s is gone (restart virtmq-agent to use the built-in default policy)",
				policy.ErrMissing, a.cfg.DefaultPolicyPath)
		}
		a.log.Info("no policy file: using the built-in default policy", "default_path", a.cfg.DefaultPolicyPath)
		return p, nil
	}
	a.fromDisk = true
	return p, nil
}

// usePolicy puts p in force.
func (a *Agent) usePolicy(p *policy.Policy) {
	a.pol.Store(p)
	now := a.cfg.Now()
	a.metrics.reloadOK.Set(1)
	a.metrics.reloadTime.Set(float64(now.UnixNano()) / 1e9)
	digest := p.Digest()
	a.metrics.policyInfo.Reset()
	a.metrics.policyInfo.WithLabelValues(digest, string(p.Mode())).Set(1)
	a.store.setPolicy(func(sp *status.Policy) {
		sp.Sources = p.Sources()
		sp.Mode = string(p.Mode())
		sp.Digest = digest
		sp.LoadedAt = now
		sp.LastReloadError = ""
	})
	a.store.resetRedefines()
}

// reload reads the policy again; an invalid or missing one leaves the
// previous one in force, and says so in the log, the status and systemd's
// STATUS=.
func (a *Agent) reload() {
	p, err := a.loadPolicy()
	if err != nil {
		a.log.Error("policy reload failed: keeping the previous policy", "err", err)
		a.metrics.reloadOK.Set(0)
		a.store.setPolicy(func(sp *status.Policy) { sp.LastReloadError = err.Error() })
		return
	}
	a.usePolicy(p)
	a.log.Info("policy reloaded", "sources", p.Sources(), "mode", string(p.Mode()), "digest", p.Digest())
}

func (a *Agent) currentConn() virt.Conn {
	if r := a.conn.Load(); r != nil {
		return r.c
	}
	return nil
}
