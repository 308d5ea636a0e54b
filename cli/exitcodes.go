package cli

import (
	"strconv"
	"strings"
)

// ExitChanges is the exit code of plan and apply with --detailed-exitcode
// when some definition differs from the policy (terraform's convention:
// 0 no change, 1 error, 2 changes). Without the flag they exit 0 then, so
// scripts that test for success keep working.
const ExitChanges = 2

// detailedUsage is the help line of --detailed-exitcode.
const detailedUsage = "exit 2 when a definition changes (apply: was or, with --dry-run, would be redefined), 0 when none does, 1 on any error (usage errors included)"

// wantsDetailed reports whether args ask for --detailed-exitcode. It is
// read before the flags are parsed so that a usage error can exit 1: with
// the flag, 2 means changes.
func wantsDetailed(args []string) bool { return boolArg(args, "detailed-exitcode") }

// boolArg reports whether args set the boolean flag name (-name, --name,
// or with =VALUE as the flag package reads it), before the flags are
// parsed; the last one given wins, and "--" ends the flags.
func boolArg(args []string, name string) bool {
	set := false
	for _, a := range args {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		flag, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if flag != name {
			continue
		}
		set = true
		if hasValue {
			set, _ = strconv.ParseBool(value)
		}
	}
	return set
}

// detailedExit is code as --detailed-exitcode reports it, when detailed:
// a usage error is 1, success with changes is ExitChanges.
func detailedExit(detailed bool, code int, changes bool) int {
	switch {
	case !detailed:
		return code
	case code == ExitUsage:
		return ExitFailure
	case code == ExitOK && changes:
		return ExitChanges
	}
	return code
}

// planChanges reports whether any planned definition changes.
func planChanges(out []planOutput) bool {
	for _, d := range out {
		if d.Changes {
			return true
		}
	}
	return false
}
