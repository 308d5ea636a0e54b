package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/virtmq/virtmq/agent"
	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// queues is what the shipped default policy gives the 4-vCPU domains.
const queues = 4

// pollEvery is how often the status snapshot is read during a storm.
const pollEvery = 10 * time.Millisecond

type profiles struct{ cpu, mem string }

// runStorm starts an agent against a fresh fake host, defines and starts n
// domains at once and waits until the agent's snapshot shows every one
// reconciled; then, when idleFor > 0, measures the idle agent's CPU.
func runStorm(n int, o options, idleFor time.Duration, prof profiles) (storm, error) {
	res := storm{Domains: n}
	h := newHost(o)
	a, stop, err := startAgent(h, o.Timeout, agent.Config{
		Concurrency: o.Concurrency,
		Guest:       guest.Options{PollInterval: o.PollInterval},
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return res, err
	}
	defer stop()
	deadline := time.Now().Add(o.Timeout)

	// The domains, their guests, and a signal per domain when the
	// agent's redefine returned.
	type dom struct {
		name      string
		doc       []byte
		rewritten chan struct{}
		rewrote   time.Time // the agent's redefine returned
		once      sync.Once
		defined   time.Time
		done      time.Time
	}
	doms := make([]*dom, n)
	byName := make(map[string]*dom, n)
	for i := range doms {
		name := fmt.Sprintf("scale%04d", i)
		mac := fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
		uuid := fmt.Sprintf("5ca1e000-0000-4000-8000-%012x", i)
		doms[i] = &dom{name: name, doc: domainXML(name, uuid, mac), rewritten: make(chan struct{})}
		byName[name] = doms[i]
		h.addGuest(name, mac, queues, o.Polls)
	}
	var rmu sync.Mutex
	var lastRewrite time.Time
	h.fake.OnCall(func(method string, d virt.Domain, err error) {
		if method != virttest.MethodDefineXML || err != nil {
			return
		}
		if x := byName[d.Name]; x != nil {
			x.once.Do(func() {
				rmu.Lock()
				lastRewrite = time.Now()
				x.rewrote = lastRewrite
				rmu.Unlock()
				close(x.rewritten)
			})
		}
	})

	if prof.cpu != "" {
		f, err := os.Create(fmt.Sprintf("%s-%d.pprof", prof.cpu, n))
		if err != nil {
			return res, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return res, err
		}
	}
	calls0, byRPC0 := h.libvirtd.rpcs.Load(), h.libvirtd.byRPC()
	cpu0 := cpuTime()
	start := time.Now()
	sctx, scancel := context.WithDeadline(context.Background(), deadline)
	defer scancel()
	errc := make(chan error, n)
	var wg sync.WaitGroup
	for _, d := range doms {
		wg.Go(func() {
			d.defined = time.Now()
			if _, err := h.fake.Define(d.doc); err != nil {
				errc <- err
				return
			}
			select {
			case <-d.rewritten:
			case <-sctx.Done():
				return
			}
			if err := h.fake.Start(d.name); err != nil {
				errc <- err
				return
			}
			if o.Boot > 0 {
				select {
				case <-time.After(o.Boot):
				case <-sctx.Done():
					return
				}
			}
			h.guest(d.name).booted.Store(true)
			if err := h.fake.AgentConnect(d.name); err != nil {
				errc <- err
			}
		})
	}

	left := n
	var last status.Snapshot
	var polling time.Duration // this loop's own time, about its CPU time
	for left > 0 {
		select {
		case err := <-errc:
			scancel()
			wg.Wait()
			return res, err
		case <-sctx.Done():
			wg.Wait()
			return res, fmt.Errorf("%d of %d domains not reconciled after %v; e.g. %s", left, n, o.Timeout, pending(last, byName))
		case <-time.After(pollEvery):
		}
		t0 := time.Now()
		res.PeakGoroutines = max(res.PeakGoroutines, runtime.NumGoroutine())
		last = a.Snapshot()
		for _, d := range last.Domains {
			x := byName[d.Name]
			if x != nil && x.done.IsZero() && reconciled(d) {
				x.done = t0
				left--
			}
		}
		polling += time.Since(t0)
	}
	elapsed := time.Since(start)
	res.CPUS = (cpuTime() - cpu0).Seconds()
	res.PollCPUS = polling.Seconds()
	if prof.cpu != "" {
		pprof.StopCPUProfile()
	}
	wg.Wait()
	res.AllReconciledS = elapsed.Seconds()
	rmu.Lock()
	res.AllRewrittenS = lastRewrite.Sub(start).Seconds()
	rmu.Unlock()
	per := make([]time.Duration, 0, n)
	toRewrite := make([]time.Duration, 0, n)
	for _, d := range doms {
		per = append(per, d.done.Sub(d.defined))
		toRewrite = append(toRewrite, d.rewrote.Sub(d.defined))
	}
	slices.Sort(per)
	slices.Sort(toRewrite)
	res.DomainP50S = per[len(per)/2].Seconds()
	res.DomainP95S = per[len(per)*95/100].Seconds()
	res.RewriteP50S = toRewrite[len(toRewrite)/2].Seconds()
	res.RewriteP95S = toRewrite[len(toRewrite)*95/100].Seconds()
	res.LibvirtCalls = h.libvirtd.rpcs.Load() - calls0
	res.LibvirtByRPC = h.libvirtd.byRPC()
	for k, v := range byRPC0 {
		res.LibvirtByRPC[k] -= v
	}
	res.GuestCommands = h.guestCmds.Load()
	res.PeakRSSMiB = procStatusMiB("VmHWM")
	if prof.mem != "" {
		f, err := os.Create(fmt.Sprintf("%s-%d.pprof", prof.mem, n))
		if err != nil {
			return res, err
		}
		runtime.GC()
		err = pprof.WriteHeapProfile(f)
		f.Close()
		if err != nil {
			return res, err
		}
	}

	if idleFor > 0 {
		// Let the last workers return: no libvirt call for 100 ms.
		for calls, end := h.libvirtd.rpcs.Load(), time.Now().Add(5*time.Second); time.Now().Before(end); {
			time.Sleep(100 * time.Millisecond)
			c := h.libvirtd.rpcs.Load()
			if c == calls {
				break
			}
			calls = c
		}
		calls := h.libvirtd.rpcs.Load()
		c0, t0 := cpuTime(), time.Now()
		time.Sleep(idleFor)
		cpu, took := cpuTime()-c0, time.Since(t0)
		res.Idle = &idle{
			Domains:      n,
			Seconds:      took.Seconds(),
			CPUS:         cpu.Seconds(),
			CPUPercent:   100 * cpu.Seconds() / took.Seconds(),
			LibvirtCalls: h.libvirtd.rpcs.Load() - calls,
			RSSMiB:       procStatusMiB("VmRSS"),
		}
	}
	return res, nil
}

// reconciled reports whether the agent's status shows a domain fully
// handled: the definition has the wanted queues, the domain runs with
// them, the guest step set the guest's channels and QMP saw 2N+1
// virtqueues with multiqueue negotiated.
func reconciled(d status.Domain) bool {
	if d.State != status.StateCompliant || !d.Active || len(d.NICs) != 1 {
		return false
	}
	n := d.NICs[0]
	return n.Managed && n.Wanted == queues && n.Defined == queues && n.Running == queues &&
		n.GuestStep == "done" && n.GuestCurrent == queues && n.QMPVirtqueues == 2*queues+1 && n.MQ
}

// pending describes one domain that is not reconciled, for errors.
func pending[T any](s status.Snapshot, names map[string]T) string {
	for _, d := range s.Domains {
		if _, ok := names[d.Name]; ok && !reconciled(d) {
			return fmt.Sprintf("%+v", d)
		}
	}
	return fmt.Sprintf("%d domains in the status", len(s.Domains))
}

// startAgent runs an agent on h with cfg (its paths, clock and systemd
// hooks set for a bench run: the built-in default policy, a status socket
// in a temp dir, no systemd) and waits until it is connected and its first
// resync is done (its STATUS= then counts the domains), so that what the
// caller does next comes to it as events. stop ends it and removes the
// temp dir.
func startAgent(h *host, connectWithin time.Duration, cfg agent.Config) (a *agent.Agent, stop func(), err error) {
	dir, err := os.MkdirTemp("", "vmqbench")
	if err != nil {
		return nil, nil, err
	}
	cfg.DefaultPolicyPath = filepath.Join(dir, "none.yaml") // the built-in default policy
	cfg.Getenv = func(string) string { return "" }
	cfg.StatusSocket = filepath.Join(dir, "status.sock")
	resynced := make(chan struct{})
	var once sync.Once
	cfg.Notify = func(state string) error {
		if strings.Contains(state, "connected to libvirt at ") && strings.Contains(state, " domains") {
			once.Do(func() { close(resynced) })
		}
		return nil
	}
	cfg.Watchdog = func() (time.Duration, error) { return 0, nil }
	cfg.Dial = h.dial
	if a, err = agent.New(cfg); err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()
	stop = func() {
		cancel()
		<-runErr
		os.RemoveAll(dir)
	}
	select {
	case <-resynced:
	case <-time.After(connectWithin):
		stop()
		return nil, nil, errors.New("the agent did not connect to the fake libvirt and resync")
	}
	return a, stop, nil
}
