# shellcheck shell=bash
# The assertions of every shell suite (e2e/run.sh and its scenario files,
# e2e/smoke.sh, packaging/test.sh): one contract, one report format.
#
#   check DESC GOT WANT          GOT is WANT
#   check_match DESC TEXT REGEX  TEXT matches the extended REGEX
#   check_ok DESC CMD...         CMD succeeds (its output goes to $CHECK_LOG)
#   ok DESC / fail DESC          a check the caller decided itself
#
# A pass prints "ok: DESC" and counts in CHECK_PASSED. A failure prints
# "FAIL: DESC" with what was seen, counts in CHECK_FAILED, and ends the
# calling (sub)shell with exit 1 — unless CHECK_KEEP_GOING=1, for a suite
# that reports every failure and reads CHECK_FAILED at its end. Both lines go
# to stderr with a timestamp, like the rest of the harness's log.

CHECK_PASSED=0
CHECK_FAILED=0
: "${CHECK_KEEP_GOING:=0}"
: "${CHECK_LOG:=/dev/null}"

check_say() { printf '%s %s\n' "$(date +%T.%3N)" "$*" >&2; }

ok() {
	CHECK_PASSED=$((CHECK_PASSED + 1))
	check_say "ok: $*"
}

fail() {
	CHECK_FAILED=$((CHECK_FAILED + 1))
	check_say "FAIL: $*"
	[[ $CHECK_KEEP_GOING == 1 ]] || exit 1
}

check() {
	if [[ $2 == "$3" ]]; then ok "$1 = $3"; else fail "$1: got '$2', want '$3'"; fi
}

check_match() {
	if [[ $2 =~ $3 ]]; then ok "$1 ~ /$3/"; else fail "$1: '$2' does not match /$3/"; fi
}

check_ok() {
	local desc=$1
	shift
	if "$@" >>"$CHECK_LOG" 2>&1; then ok "$desc"; else fail "$desc (exit $?; output in $CHECK_LOG)"; fi
}
