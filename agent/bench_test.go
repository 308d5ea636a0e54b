package agent

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// BenchmarkDefinedToRedefined measures, against the fake libvirt, the time
// from a DEFINED event (a user defines a non-compliant domain) to the
// agent's redefine returning. Goal: p50 ≤ 50 ms.
func BenchmarkDefinedToRedefined(b *testing.B) {
	h := newHarness(b).start()
	done := make(chan string, 1)
	h.fake.OnCall(func(method string, d virt.Domain, err error) {
		if method == virttest.MethodDefineXML && err == nil {
			done <- d.Name
		}
	})
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("vm%d", i)
		doc := domainXML(name, 4, 0, mac(i))
		start := time.Now()
		if _, err := h.fake.Define(doc); err != nil {
			b.Fatal(err)
		}
		select {
		case got := <-done:
			if got != name {
				b.Fatalf("redefined %s, want %s", got, name)
			}
		case <-time.After(10 * time.Second):
			b.Fatal("no redefine")
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	h.fake.OnCall(nil)
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkBootStorm defines and starts 100 non-compliant domains at once
// against the fake libvirt and measures the time until the agent has
// reconciled them all: every definition rewritten and every domain's
// state known. Goal: ≤ 5 s.
func BenchmarkBootStorm(b *testing.B) {
	const n = 100
	docs := make([][]byte, n)
	for i := range docs {
		docs[i] = domainXML(fmt.Sprintf("storm%03d", i), 4, 0, mac(i))
	}
	var total time.Duration
	var heap uint64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		h := newHarness(b)
		h.cfg.GuestStep = newFakeGuestStep(func(_ context.Context, _, _ string, m int) (guest.Result, error) {
			return okResult(m), nil
		}).step
		h.start()
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				name := fmt.Sprintf("storm%03d", i)
				if _, err := h.fake.Define(docs[i]); err != nil {
					b.Error(err)
					return
				}
				if err := h.fake.Start(name); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		h.waitFor("storm reconciled", func(s status.Snapshot) bool {
			if len(s.Domains) != n || h.fake.Calls(virttest.MethodDefineXML) < n {
				return false
			}
			for _, d := range s.Domains {
				if !d.Active || (d.State != status.StateCompliant && d.State != status.StatePendingColdBoot) {
					return false
				}
				if doc, _ := h.fake.InactiveXML(d.Name); !bytes.Contains(doc, []byte("queues='4'")) {
					return false
				}
			}
			return true
		})
		total += time.Since(start)
		b.StopTimer()
		// Live heap the agent and the fake holding 100 domains add.
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = max(heap, ms.HeapAlloc-min(ms.HeapAlloc, before.HeapAlloc))
		h.stop()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/storm")
	b.ReportMetric(float64(heap)/(1<<20), "live-heap-MiB")
}
