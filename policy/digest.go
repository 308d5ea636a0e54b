package policy

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
)

// Digest identifies what the policy decides: a hash of the merged policy
// (mode, on_error, orchestrators, the defaults and each rule in
// evaluation order with its effective settings), not of the files. Two
// hosts whose files differ only in comments, layout, file names or how
// the values are split between the main file and drop-ins have the same
// digest; any change to a value that can change a decision changes it.
// It is 16 hexadecimal digits, short enough for a metric label
// (virtmq_policy_info) and wide enough that two policies of a fleet do
// not collide. The hash is FNV-1a: the digest tells policies apart, it
// does not have to resist a forger, and crypto/sha256 would add the
// crypto packages' start-up to the libvirt hook, which imports this
// package.
func (p *Policy) Digest() string {
	type rule struct {
		Name     string
		Match    Match
		Exclude  bool
		Settings Settings
	}
	view := struct {
		Mode          Mode
		OnError       OnError
		Orchestrators map[string]OrchestratorMode
		Defaults      Settings
		Rules         []rule
	}{Mode: p.mode, OnError: p.onError, Orchestrators: p.Orchestrators(), Defaults: p.defaults}
	for _, r := range p.rules {
		v := rule{Name: r.Name, Match: r.Match, Exclude: r.Exclude}
		if !r.Exclude {
			// An excluding rule's settings are never used.
			v.Settings = r.Settings
		}
		view.Rules = append(view.Rules, v)
	}
	// Only plain values, slices and string-keyed maps (which encoding/json
	// writes sorted by key): Marshal cannot fail, and the same policy
	// always gives the same bytes.
	b, err := json.Marshal(view)
	if err != nil {
		panic("policy: digest: " + err.Error())
	}
	h := fnv.New64a()
	h.Write(b)
	return fmt.Sprintf("%016x", h.Sum64())
}
