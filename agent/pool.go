package agent

import (
	"sync"

	"github.com/virtmq/virtmq/internal/virt"
)

// reconcileWorkers bounds the reconciles in flight at once. They share the
// loop's one connection: go-libvirt sends the calls of concurrent
// reconciles without waiting for each other's replies, and libvirtd runs up
// to max_client_requests (5 by default) of one connection's calls at once on
// its worker threads, queueing the rest. A few workers more than that keep
// the connection busy while others parse and decide.
const reconcileWorkers = 8

// forEachDomain calls f for each of doms, at most n at once, and returns
// when every call has returned. The domains of one key (domainKey) are
// handled one after the other, in the order given, never two at once;
// different domains proceed independently. i is d's index in doms.
//
// When a call returns an error (the connection is lost, ctx ended), no
// further call starts and the first such error is returned; calls already
// running finish first.
//
// The loop calls it and waits, so two calls of forEachDomain never overlap:
// a domain is never reconciled twice at once, and what the loop does
// after it (scheduling guest jobs, the next batch) sees every reconcile
// done.
func forEachDomain(n int, doms []virt.Domain, f func(i int, d virt.Domain) error) error {
	if len(doms) == 0 {
		return nil
	}
	// The domains' indexes, grouped by key in order of first appearance.
	var groups [][]int
	byKey := make(map[string]int, len(doms))
	for i, d := range doms {
		k := domainKey(d)
		g, ok := byKey[k]
		if !ok {
			g = len(groups)
			byKey[k] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	n = max(1, min(n, len(groups)))
	if n == 1 {
		for _, g := range groups {
			for _, i := range g {
				if err := f(i, doms[i]); err != nil {
					return err
				}
			}
		}
		return nil
	}

	var (
		mu    sync.Mutex
		next  int   // the next group to take
		first error // the first error returned
		wg    sync.WaitGroup
	)
	take := func() ([]int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if first != nil || next == len(groups) {
			return nil, false
		}
		g := groups[next]
		next++
		return g, true
	}
	stop := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	stopped := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil
	}
	for range n {
		wg.Go(func() {
			for {
				g, ok := take()
				if !ok {
					return
				}
				for _, i := range g {
					if stopped() {
						return
					}
					if err := f(i, doms[i]); err != nil {
						stop(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	return first
}
