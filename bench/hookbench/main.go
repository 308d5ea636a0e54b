// Command hookbench measures the wall time of `virtmq-hook DOMAIN prepare
// begin -` with a domain XML on stdin, against a trivial static Go binary
// exec'd the same way in the same run, interleaved so both see the same
// machine load. It prints a table, a `hook_ratio=` line, and writes JSON.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"time"
)

type stats struct {
	Name     string  `json:"name"`
	Runs     int     `json:"runs"`
	MedianMS float64 `json:"median_ms"`
	P95MS    float64 `json:"p95_ms"`
}

func main() {
	hook := flag.String("hook", "bin/virtmq-hook", "hook binary")
	floor := flag.String("floor", "", "baseline binary")
	policy := flag.String("policy", "", "policy file for the hook (VIRTMQ_POLICY)")
	runs := flag.Int("runs", 200, "runs per case")
	out := flag.String("json", "", "write results as JSON to this file")
	flag.Parse()
	if *floor == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: hookbench -floor BIN [-hook BIN] [-policy FILE] [-runs N] [-json FILE] DOMAIN.xml...")
		os.Exit(2)
	}
	env := []string{"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	if *policy != "" {
		env = append(env, "VIRTMQ_POLICY="+*policy)
	}
	var results []stats
	var ratio float64
	for _, file := range flag.Args() {
		doc, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		var hookT, floorT []time.Duration
		for i := 0; i < *runs; i++ {
			floorT = append(floorT, timeRun(*floor, doc, env))
			hookT = append(hookT, timeRun(*hook, doc, env))
		}
		h, f := summarize(fmt.Sprintf("hook %s (%d B)", file, len(doc)), hookT), summarize("floor (static Go binary)", floorT)
		results = append(results, h, f)
		ratio = h.MedianMS / f.MedianMS
		fmt.Printf("%-60s median %6.2f ms  p95 %6.2f ms\n", h.Name, h.MedianMS, h.P95MS)
		fmt.Printf("%-60s median %6.2f ms  p95 %6.2f ms\n", f.Name, f.MedianMS, f.P95MS)
		fmt.Printf("%-60s %.2f\n", "ratio hook/floor (median)", ratio)
	}
	if *out != "" {
		b, _ := json.MarshalIndent(map[string]any{"cases": results, "hook_ratio": ratio}, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	// The last file is the reference case (the 4-NIC ~12 KB domain).
	fmt.Printf("hook_ratio=%.2f\n", ratio)
}

// timeRun execs bin as libvirt execs a hook and returns the wall time.
func timeRun(bin string, stdin []byte, env []string) time.Duration {
	cmd := exec.Command(bin, "bench", "prepare", "begin", "-")
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	start := time.Now()
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			fmt.Fprintf(os.Stderr, "%s: %v\n", bin, err)
			os.Exit(1)
		}
	}
	return time.Since(start)
}

func summarize(name string, ds []time.Duration) stats {
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return stats{Name: name, Runs: len(ds), MedianMS: ms(ds[len(ds)/2]), P95MS: ms(ds[len(ds)*95/100])}
}
