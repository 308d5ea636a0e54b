// Command scale runs virtmq-agent's real code (agent.New, Agent.Run) in
// process against the in-memory libvirt (internal/virt/virttest) and one
// simulated qemu-guest-agent per domain (internal/guest/guesttest), with a
// fixed latency on every libvirt call and every guest agent command, and
// measures a boot storm: N domains defined and started at once.
//
// For each N it reports the time until every domain is reconciled as the
// agent's status snapshot says (definition rewritten, running with the
// wanted queues, guest step done, verified over QMP with multiqueue
// negotiated), the process's peak RSS (VmHWM) and CPU seconds (user+sys).
// With -idle it then leaves the converged agent alone and reports its CPU
// use over that time.
//
// Each domain is started as soon as the agent's redefine landed, then its
// guest agent connects -boot later: a domain started before the redefine
// runs with one queue until a cold boot (pending-cold-boot), and gets no
// guest step. Every N runs in a child process of its own, so that RSS and
// CPU figures do not mix. They cover the whole process: the agent, the
// fake libvirt and guests (about as much memory as the agent holds: one
// copy of every domain's XML), and this program's polling of the status
// snapshot every 10 ms. The policy is the shipped default.
//
//	go run ./bench/scale                              # 100 and 500 domains, idle 60 s at 100
//	go run ./bench/scale -domains 100 -idle 0 -cpuprofile /tmp/storm
//	go run ./bench/scale -hostile -json bench/results/hostile.json
//
// With -hostile it runs another scenario instead: hostile guests (qemu-ga
// stalling guest-exec-status, listing the NIC's MAC on thousands of
// interfaces, reconnecting every second) keep the agent busy while
// well-behaved domains' guest agents connect one by one, with the agent's
// default Config; it prints each well-behaved domain's guest step wait and
// ends with hostile_wait_p95_s=X.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/virtmq/virtmq/agent"
	"github.com/virtmq/virtmq/internal/guest"
)

// options are the scenario's knobs, passed from the parent to each child.
type options struct {
	LibvirtLatency time.Duration `json:"-"`
	GuestLatency   time.Duration `json:"-"`
	Boot           time.Duration `json:"-"`
	PollInterval   time.Duration `json:"-"`
	Polls          int           `json:"exec_status_polls"`
	Concurrency    int           `json:"concurrency"`
	Workers        int           `json:"libvirt_max_workers"`
	ClientRequests int           `json:"libvirt_max_client_requests"`
	Timeout        time.Duration `json:"-"`

	LibvirtLatencyMS float64 `json:"libvirt_latency_ms"`
	GuestLatencyMS   float64 `json:"guest_latency_ms"`
	BootMS           float64 `json:"boot_ms"`
	PollIntervalMS   float64 `json:"poll_interval_ms"`
}

// storm is one N's result.
type storm struct {
	Domains        int     `json:"domains"`
	AllRewrittenS  float64 `json:"all_rewritten_s"`  // last redefine returned
	AllReconciledS float64 `json:"all_reconciled_s"` // last domain fully reconciled
	DomainP50S     float64 `json:"domain_p50_s"`     // define → reconciled, per domain
	DomainP95S     float64 `json:"domain_p95_s"`
	// RewriteP50S and RewriteP95S are define → the agent's redefine
	// returned, per domain: the part of DomainP50S before the start and
	// the guest step.
	RewriteP50S    float64 `json:"rewrite_p50_s"`
	RewriteP95S    float64 `json:"rewrite_p95_s"`
	CPUS           float64 `json:"cpu_s"`        // user+sys, storm start → all reconciled
	PollCPUS       float64 `json:"poll_cpu_s"`   // of which this program's status polling (its wall time: an upper bound)
	PeakRSSMiB     float64 `json:"peak_rss_mib"` // VmHWM after the storm
	PeakGoroutines int     `json:"peak_goroutines"`
	LibvirtCalls   int64   `json:"libvirt_calls"` // RPCs, guest agent commands included
	// LibvirtByRPC counts each RPC, e.g. DomainGetXMLDesc.
	LibvirtByRPC  map[string]int64 `json:"libvirt_calls_by_rpc"`
	GuestCommands int64            `json:"guest_commands"`
	Idle          *idle            `json:"idle,omitempty"`
}

// idle is the converged agent left alone.
type idle struct {
	Domains      int     `json:"domains"`
	Seconds      float64 `json:"seconds"`
	CPUS         float64 `json:"cpu_s"`
	CPUPercent   float64 `json:"cpu_percent_of_one_core"`
	LibvirtCalls int64   `json:"libvirt_calls"`
	RSSMiB       float64 `json:"rss_mib"`
}

type report struct {
	Generated time.Time `json:"generated"`
	GoVersion string    `json:"go_version"`
	Cores     int       `json:"cores"`
	Settings  options   `json:"settings"`
	Storms    []storm   `json:"storms"`
	Idle      *idle     `json:"idle,omitempty"`
	Note      string    `json:"note"`
}

const note = "in-process agent against the fake libvirt and fake guest agents; RSS and CPU are the whole process's, fakes included"

func main() {
	var (
		o          options
		domains    = flag.String("domains", "100,500", "comma-separated domain counts, one storm each")
		idleFor    = flag.Duration("idle", 60*time.Second, "after the storm of -idle-domains, measure the agent's CPU over this long (0: skip)")
		idleN      = flag.Int("idle-domains", 100, "the storm after which the idle CPU is measured")
		jsonOut    = flag.String("json", "bench/results/scale.json", "write the results here (empty: don't)")
		cpuprofile = flag.String("cpuprofile", "", "write a CPU profile of each storm to PREFIX-N.pprof")
		memprofile = flag.String("memprofile", "", "write a heap profile after each storm to PREFIX-N.pprof")
		child      = flag.Int("child", 0, "internal: run one storm of N domains and print its result as JSON")
		hostile    = flag.Bool("hostile", false, "run the hostile-guest scenario instead of the storms")
		ho         hostileOptions
	)
	flag.IntVar(&ho.Stall, "hostile-stall", 6, "hostile guests stalling guest-exec-status until the timeout")
	flag.IntVar(&ho.Many, "hostile-many", 1, "hostile guests listing the NIC's MAC on many interfaces, answering just before each timeout")
	flag.IntVar(&ho.Reconnect, "hostile-reconnect", 1, "hostile guests stalling and reconnecting qemu-ga every second")
	flag.IntVar(&ho.ManyInterfaces, "hostile-interfaces", 5000, "interfaces listed by each -hostile-many guest")
	flag.IntVar(&ho.Good, "hostile-good", 12, "well-behaved domains, connecting one by one while the hostile guests are busy")
	flag.DurationVar(&ho.Every, "hostile-every", 2*time.Second, "between two well-behaved guests connecting")
	flag.DurationVar(&ho.Cap, "hostile-cap", 60*time.Second, "count a well-behaved guest's wait as this when longer")
	flag.DurationVar(&o.LibvirtLatency, "libvirt-latency", time.Millisecond, "latency of every libvirt RPC")
	flag.IntVar(&o.Workers, "libvirt-workers", 20, "libvirtd's worker threads (max_workers): RPCs in execution at once, all connections")
	flag.IntVar(&o.ClientRequests, "libvirt-client-requests", 5, "libvirtd's max_client_requests: RPCs of one connection in execution at once")
	flag.DurationVar(&o.GuestLatency, "guest-latency", 3*time.Millisecond, "latency added to every guest agent command (on top of the libvirt call's)")
	flag.DurationVar(&o.Boot, "boot", 0, "time from a domain's start to its guest agent connecting")
	flag.IntVar(&o.Polls, "exec-polls", 1, "guest-exec-status replies saying exited:false before the program's exit")
	flag.DurationVar(&o.PollInterval, "poll-interval", 0, "the agent's guest-exec-status polling interval (0: the agent's default, 100ms)")
	flag.IntVar(&o.Concurrency, "concurrency", 0, "the agent's concurrency (0: its default, 4)")
	flag.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "give up on a storm after this long")
	flag.Parse()
	o.LibvirtLatencyMS = ms(o.LibvirtLatency)
	o.GuestLatencyMS = ms(o.GuestLatency)
	o.BootMS = ms(o.Boot)
	o.PollIntervalMS = ms(o.PollInterval)

	if *hostile {
		res, err := runHostile(o, ho)
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale: hostile:", err)
			os.Exit(1)
		}
		printHostile(os.Stdout, res)
		if *jsonOut != "" {
			if err := writeJSON(*jsonOut, res); err != nil {
				fmt.Fprintln(os.Stderr, "scale:", err)
				os.Exit(1)
			}
		}
		return
	}
	if *child > 0 {
		var idleD time.Duration
		if *child == *idleN {
			idleD = *idleFor
		}
		res, err := runStorm(*child, o, idleD, profiles{cpu: *cpuprofile, mem: *memprofile})
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			os.Exit(1)
		}
		if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			os.Exit(1)
		}
		return
	}

	// Report the agent's effective settings.
	if o.Concurrency == 0 {
		o.Concurrency = agent.DefaultConcurrency
	}
	if o.PollInterval == 0 {
		o.PollIntervalMS = ms(guest.DefaultPollInterval)
	}
	rep := report{Generated: time.Now().UTC(), GoVersion: runtime.Version(), Cores: runtime.NumCPU(), Settings: o, Note: note}
	for _, f := range strings.Split(*domains, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "scale: bad -domains entry %q\n", f)
			os.Exit(2)
		}
		res, err := runChild(n)
		if err != nil {
			fmt.Fprintf(os.Stderr, "scale: storm of %d: %v\n", n, err)
			os.Exit(1)
		}
		if res.Idle != nil {
			rep.Idle = res.Idle
			res.Idle = nil
		}
		rep.Storms = append(rep.Storms, res)
	}
	printTable(os.Stdout, rep)
	if *jsonOut != "" {
		if err := writeJSON(*jsonOut, rep); err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			os.Exit(1)
		}
	}
}

// runChild runs this program again with the same flags plus -child n.
func runChild(n int) (storm, error) {
	exe, err := os.Executable()
	if err != nil {
		return storm{}, err
	}
	cmd := exec.Command(exe, append(os.Args[1:], "-child", strconv.Itoa(n))...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return storm{}, err
	}
	var res storm
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if err := json.Unmarshal(sc.Bytes(), &res); err == nil && res.Domains == n {
			return res, nil
		}
	}
	return storm{}, fmt.Errorf("no result in the child's output %q", out)
}

func printTable(w io.Writer, rep report) {
	s := rep.Settings
	fmt.Fprintf(w, "agent at scale: fake libvirtd %g ms/RPC, %d workers, %d requests per connection; fake qemu-ga %g ms/command, %d exited:false poll(s) per guest-exec, boot %g ms; agent concurrency %d, poll interval %g ms; %d cores\n",
		s.LibvirtLatencyMS, s.Workers, s.ClientRequests, s.GuestLatencyMS, s.Polls, s.BootMS, s.Concurrency, s.PollIntervalMS, rep.Cores)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "domains\tall rewritten s\tall reconciled s\tper domain p50 s\tp95 s\tCPU s\t(polling)\tpeak RSS MiB\tgoroutines\tlibvirt calls\tper domain\tguest cmds\t")
	for _, r := range rep.Storms {
		fmt.Fprintf(tw, "%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t(%.2f)\t%.1f\t%d\t%d\t%.1f\t%d\t\n", r.Domains, r.AllRewrittenS, r.AllReconciledS,
			r.DomainP50S, r.DomainP95S, r.CPUS, r.PollCPUS, r.PeakRSSMiB, r.PeakGoroutines, r.LibvirtCalls, float64(r.LibvirtCalls)/float64(r.Domains), r.GuestCommands)
	}
	tw.Flush()
	for _, r := range rep.Storms {
		fmt.Fprintf(w, "%d domains: define → rewritten p50 %.2f s, p95 %.2f s; libvirt calls per domain:", r.Domains, r.RewriteP50S, r.RewriteP95S)
		for _, k := range slices.Sorted(maps.Keys(r.LibvirtByRPC)) {
			fmt.Fprintf(w, " %s %.2f", k, float64(r.LibvirtByRPC[k])/float64(r.Domains))
		}
		fmt.Fprintln(w)
	}
	if i := rep.Idle; i != nil {
		fmt.Fprintf(w, "idle after converging, %d domains, %.0f s: CPU %.3f s (%.3f%% of one core), %d libvirt calls, RSS %.1f MiB\n",
			i.Domains, i.Seconds, i.CPUS, i.CPUPercent, i.LibvirtCalls, i.RSSMiB)
	}
	fmt.Fprintln(w, "(RSS and CPU: the whole process, the fake libvirt and guests included; (polling): at most this much of it was this program reading the status every 10 ms)")
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err == nil {
		err = os.MkdirAll(filepath.Dir(path), 0o755)
	}
	if err == nil {
		err = os.WriteFile(path, append(b, '\n'), 0o644)
	}
	return err
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cpuTime is this process's user+sys CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procStatusMiB reads a kB field (VmHWM, VmRSS) of /proc/self/status.
func procStatusMiB(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
