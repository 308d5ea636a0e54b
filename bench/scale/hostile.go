package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/virtmq/virtmq/agent"
	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/guest/guesttest"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
)

// Hostile guests:
//   - stall: qemu-ga answers everything but guest-exec-status, which it
//     leaves unanswered until the caller's timeout;
//   - many: the NIC's MAC on thousands of interfaces, and every command
//     after guest-network-get-interfaces answered just before its timeout;
//   - reconnect: stalls like stall, and its qemu-ga reconnects (a new
//     agent-connected event) every second.
const (
	hostileStall     = "stall"
	hostileMany      = "many"
	hostileReconnect = "reconnect"
)

// hostileOptions is the hostile scenario: the hostile guests connect at
// once, then the well-behaved ones one by one, every Every, while the
// hostile ones are busy.
type hostileOptions struct {
	Stall, Many, Reconnect int
	Good                   int
	Every                  time.Duration // between two well-behaved guests connecting
	Cap                    time.Duration // a wait is counted as Cap when longer
	ManyInterfaces         int
}

// hostileResult is the hostile scenario's outcome: the guest step wait of
// each well-behaved domain, from its guest agent connecting to its guest
// step done in the agent's status.
type hostileResult struct {
	Hostile       map[string]int `json:"hostile"`
	Good          int            `json:"good"`
	WaitsS        []float64      `json:"waits_s"`
	WaitP50S      float64        `json:"hostile_wait_p50_s"`
	WaitP95S      float64        `json:"hostile_wait_p95_s"`
	WaitMaxS      float64        `json:"hostile_wait_max_s"`
	NotDone       int            `json:"not_done"` // waits cut at CapS
	CapS          float64        `json:"cap_s"`
	GuestCommands int64          `json:"guest_commands"`
	// HostileCommands is what the hostile guests cost: commands sent to
	// them over the whole run.
	HostileCommands int64   `json:"hostile_commands"`
	TookS           float64 `json:"took_s"`
}

// hostileGuest wraps a simulated qemu-ga with one of the hostile behaviours.
type hostileGuest struct {
	kind  string
	inner guest.Agent
	cmds  *int64
	mu    *sync.Mutex
}

func (g hostileGuest) Command(ctx context.Context, cmd []byte, timeout time.Duration) ([]byte, error) {
	g.mu.Lock()
	*g.cmds++
	g.mu.Unlock()
	var c struct {
		Execute string `json:"execute"`
	}
	_ = json.Unmarshal(cmd, &c)
	switch {
	case c.Execute == "guest-exec-status" && g.kind != hostileMany:
		// Never answered: libvirt's timeout (whole seconds, at least one)
		// ends it.
		secs := max((timeout+time.Second-1)/time.Second, 1)
		if err := sleepCtx(ctx, secs*time.Second); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: guest agent did not answer within %v", virt.ErrTimeout, secs*time.Second)
	case g.kind == hostileMany && c.Execute != "guest-info" && c.Execute != "guest-get-osinfo" && c.Execute != "guest-network-get-interfaces":
		// Answered just before the timeout.
		if err := sleepCtx(ctx, timeout-50*time.Millisecond); err != nil {
			return nil, err
		}
	}
	return g.inner.Command(ctx, cmd, timeout)
}

// addHostile prepares a hostile domain's guest.
func (h *host) addHostile(name, mac, kind string, interfaces int, cmds *int64, mu *sync.Mutex) {
	h.addGuest(name, mac, queues, 1)
	g := h.guest(name)
	if kind == hostileMany {
		ifs := []guesttest.Interface{{Name: "lo"}}
		for i := range interfaces {
			ifs = append(ifs, guesttest.Interface{Name: fmt.Sprintf("veth%d", i), MAC: mac})
		}
		e := &guesttest.Ethtool{NICs: map[string]*guest.Channels{"veth0": {Max: queues, Current: 1}}}
		gg := &guesttest.Guest{
			Interfaces: ifs,
			Programs: map[string]guesttest.Program{
				"/usr/sbin/ethtool": e.Run,
				"/usr/bin/readlink": guesttest.Links(nil), // no device link: none of them is the NIC
			},
			Polls: 1,
		}
		g.agent = gg.Agent()
	}
	g.agent = hostileGuest{kind: kind, inner: g.agent, cmds: cmds, mu: mu}
}

// runHostile runs the hostile scenario with the agent's default Config
// (concurrency, guest timeout, guest options) against the fakes.
func runHostile(o options, ho hostileOptions) (hostileResult, error) {
	res := hostileResult{Hostile: map[string]int{hostileStall: ho.Stall, hostileMany: ho.Many, hostileReconnect: ho.Reconnect}, Good: ho.Good, CapS: ho.Cap.Seconds()}
	h := newHost(o)
	a, stop, err := startAgent(h, 10*time.Second, agent.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return res, err
	}
	defer stop()

	type dom struct {
		name, kind string
		connected  time.Time
		done       time.Time
	}
	var hostile, good []*dom
	var hmu sync.Mutex
	var hostileCmds int64
	i := 0
	add := func(kind string) *dom {
		name := fmt.Sprintf("%s%02d", kind, i)
		mac := fmt.Sprintf("52:54:00:aa:%02x:%02x", i>>8&0xff, i&0xff)
		uuid := fmt.Sprintf("405711e0-0000-4000-8000-%012x", i)
		i++
		if kind == "good" {
			h.addGuest(name, mac, queues, 1)
		} else {
			h.addHostile(name, mac, kind, ho.ManyInterfaces, &hostileCmds, &hmu)
		}
		if _, err := h.fake.Define(domainXML(name, uuid, mac)); err != nil {
			panic(err)
		}
		return &dom{name: name, kind: kind}
	}
	for range ho.Stall {
		hostile = append(hostile, add(hostileStall))
	}
	for range ho.Many {
		hostile = append(hostile, add(hostileMany))
	}
	for range ho.Reconnect {
		hostile = append(hostile, add(hostileReconnect))
	}
	for range ho.Good {
		good = append(good, add("good"))
	}
	// Every domain rewritten (the storm bench measures that part), then
	// started: each runs with the wanted queues.
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		n := 0
		for _, d := range a.Snapshot().Domains {
			if d.State == status.StateRewritten {
				n++
			}
		}
		if n == len(hostile)+len(good) {
			break
		}
		if time.Since(start) > 30*time.Second {
			return res, errors.New("the domains were not rewritten")
		}
	}
	for _, d := range append(slices.Clone(hostile), good...) {
		if err := h.fake.Start(d.name); err != nil {
			return res, err
		}
	}
	time.Sleep(200 * time.Millisecond) // the STARTED events handled

	start := time.Now()
	connect := func(d *dom) error {
		h.guest(d.name).booted.Store(true)
		d.connected = time.Now()
		return h.fake.AgentConnect(d.name)
	}
	for _, d := range hostile {
		if err := connect(d); err != nil {
			return res, err
		}
	}
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	var wg sync.WaitGroup
	for _, d := range hostile {
		if d.kind != hostileReconnect {
			continue
		}
		wg.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-sctx.Done():
					return
				case <-t.C:
					_ = h.fake.AgentConnect(d.name)
				}
			}
		})
	}
	defer wg.Wait()
	defer scancel()

	next := 0
	nextAt := start.Add(time.Second)
	left := len(good)
	for left > 0 {
		time.Sleep(pollEvery)
		now := time.Now()
		if next < len(good) && !now.Before(nextAt) {
			if err := connect(good[next]); err != nil {
				return res, err
			}
			next++
			nextAt = nextAt.Add(ho.Every)
		}
		snap := a.Snapshot()
		for _, sd := range snap.Domains {
			for _, d := range good[:next] {
				if d.name == sd.Name && d.done.IsZero() && len(sd.NICs) == 1 && sd.NICs[0].GuestStep == "done" {
					d.done = now
					left--
				}
			}
		}
		for _, d := range good[:next] {
			if d.done.IsZero() && now.Sub(d.connected) > ho.Cap {
				d.done = d.connected.Add(ho.Cap)
				res.NotDone++
				left--
			}
		}
	}
	res.TookS = time.Since(start).Seconds()
	var waits []time.Duration
	for _, d := range good {
		w := d.done.Sub(d.connected)
		waits = append(waits, w)
		res.WaitsS = append(res.WaitsS, round2(w.Seconds()))
	}
	slices.Sort(waits)
	res.WaitP50S = waits[len(waits)/2].Seconds()
	res.WaitP95S = waits[(len(waits)*95+99)/100-1].Seconds()
	res.WaitMaxS = waits[len(waits)-1].Seconds()
	res.GuestCommands = h.guestCmds.Load()
	hmu.Lock()
	res.HostileCommands = hostileCmds
	hmu.Unlock()
	return res, nil
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func printHostile(w io.Writer, r hostileResult) {
	fmt.Fprintf(w, "hostile guests: %d stalling guest-exec-status, %d with the MAC on many interfaces (answers just before the timeout), %d reconnecting qemu-ga every 1 s; default agent Config\n",
		r.Hostile[hostileStall], r.Hostile[hostileMany], r.Hostile[hostileReconnect])
	fmt.Fprintf(w, "well-behaved domains: %d, guest step wait (agent connected → guest step done) s: %v\n", r.Good, r.WaitsS)
	if r.NotDone > 0 {
		fmt.Fprintf(w, "  %d of them not done after %.0f s (counted as %.0f s)\n", r.NotDone, r.CapS, r.CapS)
	}
	fmt.Fprintf(w, "p50 %.2f s, max %.2f s; guest agent commands %d, of which to the hostile guests %d; took %.1f s\n",
		r.WaitP50S, r.WaitMaxS, r.GuestCommands, r.HostileCommands, r.TookS)
	fmt.Fprintf(w, "hostile_wait_p95_s=%.2f\n", r.WaitP95S)
}
