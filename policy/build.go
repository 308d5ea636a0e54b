package policy

import (
	"fmt"
)

// builtinPartial is builtinSettings as a fully set partial with zero
// locations, the bottom layer of every merge.
func builtinPartial() partial {
	s := builtinSettings()
	return partial{
		queues:     opt[QueuesSetting]{v: s.Queues, set: true},
		min:        opt[int]{v: s.Min, set: true},
		max:        opt[int]{v: s.Max, set: true},
		minVCPUs:   opt[int]{v: s.MinVCPUs, set: true},
		budget:     opt[int]{v: s.Budget, set: true},
		allowAbove: opt[bool]{v: s.AllowAboveVCPUs, set: true},
		guestStep:  opt[bool]{v: s.GuestStep, set: true},
		combined:   opt[CombinedSetting]{v: s.Combined, set: true},
		vhostUser:  opt[bool]{v: s.AllowVHostUser, set: true},
		handSet:    opt[HandSet]{v: s.HandSet, set: true},
		applyAt:    opt[ApplyAt]{v: s.ApplyAt, set: true},
	}
}

func over[T any](base *opt[T], o opt[T]) {
	if o.set {
		*base = o
	}
}

// overlay returns p with every field o sets replaced.
func (p partial) overlay(o partial) partial {
	over(&p.queues, o.queues)
	over(&p.min, o.min)
	over(&p.max, o.max)
	over(&p.minVCPUs, o.minVCPUs)
	over(&p.budget, o.budget)
	over(&p.allowAbove, o.allowAbove)
	over(&p.guestStep, o.guestStep)
	over(&p.combined, o.combined)
	over(&p.vhostUser, o.vhostUser)
	over(&p.handSet, o.handSet)
	over(&p.applyAt, o.applyAt)
	return p
}

// settings returns the values of a fully set partial.
func (p partial) settings() Settings {
	return Settings{
		Queues:          p.queues.v,
		Min:             p.min.v,
		Max:             p.max.v,
		MinVCPUs:        p.minVCPUs.v,
		Budget:          p.budget.v,
		AllowAboveVCPUs: p.allowAbove.v,
		GuestStep:       p.guestStep.v,
		Combined:        p.combined.v,
		AllowVHostUser:  p.vhostUser.v,
		HandSet:         p.handSet.v,
		ApplyAt:         p.applyAt.v,
	}
}

// build merges the parsed files (docs[0] is the main file, then the
// drop-ins in read order) and runs the checks that need the merged view:
// unique rule names and min ≤ max of every effective settings block.
func build(docs []*fileDoc) (*Policy, ErrorList) {
	var errs ErrorList
	errorAt := func(l loc, format string, args ...any) {
		errs = append(errs, &Error{File: l.file, Line: l.line, Column: l.col, Path: l.path, Msg: fmt.Sprintf(format, args...)})
	}
	p := &Policy{mode: DefaultMode, onError: OnErrorAllow}
	defaults := builtinPartial()
	for _, d := range docs {
		p.sources = append(p.sources, d.name)
		if d.mode.set {
			p.mode = d.mode.v
		}
		if d.onError.set {
			p.onError = d.onError.v
		}
		for _, e := range d.orchestrators {
			if p.orchestrators == nil {
				p.orchestrators = map[string]OrchestratorMode{}
			}
			p.orchestrators[e.name] = e.mode.v
		}
		defaults = defaults.overlay(d.defaults)
	}
	checkMinMax(defaults, nil, errorAt)
	p.defaults = defaults.settings()

	// A drop-in may replace a rule of the main file (or of an earlier
	// drop-in) by defining one of the same name: the later one is in
	// force, where it stands, and lint says so. Within one file a name is
	// unique.
	type named struct {
		doc, idx int
		at       loc
	}
	names := map[string]named{}
	overridden := map[[2]int]bool{}
	var overrides ErrorList
	for di, d := range docs {
		inFile := map[string]loc{}
		for ri, r := range d.rules {
			if r.name == "" {
				continue
			}
			if first, dup := inFile[r.name]; dup {
				errorAt(r.nameAt, "duplicate rule name %q (first at %s)", r.name, first)
				continue
			}
			inFile[r.name] = r.nameAt
			if prev, ok := names[r.name]; ok {
				overridden[[2]int{prev.doc, prev.idx}] = true
				overrides = append(overrides, &Error{File: r.nameAt.file, Line: r.nameAt.line, Column: r.nameAt.col, Path: r.nameAt.path,
					Msg: fmt.Sprintf("warning: rule %q replaces the rule of the same name at %s", r.name, prev.at)})
			}
			names[r.name] = named{di, ri, r.nameAt}
		}
	}
	// In force: every rule but the replaced ones, per file.
	live := make([]*fileDoc, len(docs))
	for di, d := range docs {
		c := *d
		c.rules = nil
		for ri, r := range d.rules {
			if !overridden[[2]int{di, ri}] {
				c.rules = append(c.rules, r)
			}
		}
		live[di] = &c
	}
	docs = live

	// Drop-ins are host-local exceptions: their rules come first.
	order := append(append([]*fileDoc(nil), docs[1:]...), docs[0])
	for _, d := range docs {
		p.warnings = append(p.warnings, d.warns...)
	}
	p.warnings = append(p.warnings, overrides...)
	p.warnings = append(p.warnings, lintRules(order)...)
	p.warnings.sortByFile(p.sources)
	for _, d := range order {
		for _, r := range d.rules {
			eff := defaults.overlay(r.set)
			if !r.exclude {
				checkMinMax(eff, &r.set, errorAt)
			}
			p.rules = append(p.rules, Rule{
				Name:          r.name,
				Source:        r.at.String(),
				Match:         r.match,
				Exclude:       r.exclude,
				Settings:      eff.settings(),
				excludeReason: "excluded by rule " + r.name,
			})
		}
	}
	return p, errs
}

// checkMinMax reports min > max in the effective settings eff. The error
// goes where scope (a rule's set; nil for the defaults) set one of the two,
// preferring max, and names where the other came from. A rule that sets
// neither inherits the defaults' problem, which is reported once, there.
func checkMinMax(eff partial, scope *partial, errorAt func(loc, string, ...any)) {
	if eff.min.v <= eff.max.v {
		return
	}
	at, other, otherName := eff.max, eff.min, "min"
	switch {
	case scope == nil:
		if !eff.max.at.isSet() {
			at, other, otherName = eff.min, eff.max, "max"
		}
	case scope.max.set:
	case scope.min.set:
		at, other, otherName = eff.min, eff.max, "max"
	default:
		return
	}
	from := "is the built-in default"
	if other.at.isSet() {
		from = "is set at " + other.at.String()
	}
	errorAt(at.at, "min %d > max %d (%s %s)", eff.min.v, eff.max.v, otherName, from)
}

func (l loc) isSet() bool { return l.file != "" }
