package agent

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/virtmq/virtmq/internal/status"
)

// states lists every domain state, for metrics and counts.
var states = []string{
	status.StateCompliant,
	status.StateRewritten,
	status.StatePendingColdBoot,
	status.StateTransient,
	status.StateUnmanaged,
	status.StateRetrying,
	status.StateError,
	status.StateWouldRedefine,
}

// record is what the agent knows about one domain.
type record struct {
	st status.Domain
	// view is what the last reconcile that got through learned (a failed
	// one keeps the previous view): the guest jobs run on it.
	view *domainView
	// rewritten is set when the agent redefined the domain and cleared
	// once it runs with the definition.
	rewritten bool
	// redefines counts redefines in a row that did not make the
	// definition compliant (a loop guard).
	redefines int
}

// store holds the agent's state behind one mutex; every method is safe
// for concurrent use.
type store struct {
	mu      sync.Mutex
	domains map[string]*record // by UUID
	libvirt status.Libvirt
	policy  status.Policy
	version string
	now     func() time.Time
}

func newStore(version string, now func() time.Time) *store {
	return &store{domains: map[string]*record{}, version: version, now: now}
}

// update runs f on the domain's record, creating it when missing.
func (s *store) update(uuid string, f func(r *record)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.domains[uuid]
	if r == nil {
		r = &record{st: status.Domain{UUID: uuid}}
		s.domains[uuid] = r
	}
	was := r.st.State
	f(r)
	if r.st.State != was {
		r.st.StateSince = s.now()
	}
}

// updateIfKnown runs f on the domain's record if it exists (unlike
// update, it creates none); f must not keep r.
func (s *store) updateIfKnown(uuid string, f func(r *record)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.domains[uuid]
	if r == nil {
		return false
	}
	f(r)
	return true
}

// redefines returns the domain's redefine loop guard count (0 when unknown).
func (s *store) redefines(uuid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.domains[uuid]; r != nil {
		return r.redefines
	}
	return 0
}

// lastView returns the domain's last view, or nil.
func (s *store) lastView(uuid string) *domainView {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.domains[uuid]; r != nil {
		return r.view
	}
	return nil
}

func (s *store) remove(uuid string) {
	s.mu.Lock()
	delete(s.domains, uuid)
	s.mu.Unlock()
}

// retain drops every domain whose UUID is not in keep.
func (s *store) retain(keep map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for u := range s.domains {
		if !keep[u] {
			delete(s.domains, u)
		}
	}
}

// resetRedefines clears every domain's redefine loop guard.
func (s *store) resetRedefines() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.domains {
		r.redefines = 0
	}
}

func (s *store) setLibvirt(f func(l *status.Libvirt)) {
	s.mu.Lock()
	f(&s.libvirt)
	s.mu.Unlock()
}

func (s *store) setPolicy(f func(p *status.Policy)) {
	s.mu.Lock()
	f(&s.policy)
	s.mu.Unlock()
}

// reloadFailed reports whether the last policy reload failed (the
// previous policy is in force).
func (s *store) reloadFailed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy.LastReloadError != ""
}

// counts returns how many domains are in each state.
func (s *store) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(map[string]int, len(states))
	for _, r := range s.domains {
		c[r.st.State]++
	}
	return c
}

// snapshot returns a deep copy of the state, domains sorted by name.
func (s *store) snapshot() status.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := status.Snapshot{
		FormatVersion: status.FormatVersion,
		Generated:     s.now(),
		Version:       s.version,
		Libvirt:       s.libvirt,
		Policy:        s.policy,
		Domains:       make([]status.Domain, 0, len(s.domains)),
	}
	snap.Policy.Sources = slices.Clone(s.policy.Sources)
	for _, r := range s.domains {
		d := r.st
		d.NICs = slices.Clone(r.st.NICs)
		if d.NICs == nil {
			d.NICs = []status.NIC{}
		}
		snap.Domains = append(snap.Domains, d)
	}
	slices.SortFunc(snap.Domains, func(a, b status.Domain) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.UUID, b.UUID)
	})
	return snap
}

// liveViews returns the last views of the domains that run.
func (s *store) liveViews() []*domainView {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*domainView
	for _, r := range s.domains {
		if r.view != nil && r.view.live != nil {
			out = append(out, r.view)
		}
	}
	return out
}
