#!/bin/bash
# packaging/monitoring/test.sh — check the monitoring mixin with promtool
# (make monitoring-test):
#   promtool check rules  virtmq-rules.yml
#   promtool test rules   tests/virtmq-rules.test.yml (every alert, firing and not)
#   promtool check rules  of every query of virtmq-dashboard.json, each made
#                         a recording rule so that promtool parses its PromQL
# promtool comes with Debian's prometheus package: installed with apt-get when
# missing (as root; CI runs on a fresh Debian machine), like jq. That the
# queries only select metrics the agent exports is checked by go test
# ./agent (metrics_mixin_test.go).
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v jq >/dev/null || need+=(jq)
if ((${#need[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "monitoring-test: ${need[*]} missing: apt-get install ${need[*]} (as root)" >&2
		exit 1
	fi
	echo "monitoring-test: installing ${need[*]}"
	# shellcheck source=e2e/apt.sh
	source ../../e2e/apt.sh
	APT_NO_START=1 apt_install "${need[@]}"
fi
promtool --version 2>&1 | head -n 1

passed=0 failed=0
run() { # run DESC CMD...
	local desc=$1 out
	shift
	if out=$("$@" 2>&1); then
		passed=$((passed + 1))
		echo "ok   $desc"
	else
		failed=$((failed + 1))
		echo "FAIL $desc"
		printf '%s\n' "$out" | sed 's/^/     /'
	fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Grafana's variables become what they stand for in a query.
jq '{groups: [{name: "dashboard", rules: [
	[.. | objects | select(has("targets")) | .targets[] | .expr | select(. != null)]
	| to_entries[] | {record: "virtmq_dashboard_query_\(.key)",
		expr: (.value | gsub("\\$__rate_interval"; "5m") | gsub("\\$instance"; ".*"))}]}]}' \
	virtmq-dashboard.json >"$tmp/dashboard-queries.yml"

run "promtool check rules virtmq-rules.yml" promtool check rules virtmq-rules.yml
run "promtool test rules tests/virtmq-rules.test.yml" promtool test rules tests/virtmq-rules.test.yml
run "promtool check rules: the $(jq '.groups[0].rules | length' "$tmp/dashboard-queries.yml") queries of virtmq-dashboard.json" \
	promtool check rules "$tmp/dashboard-queries.yml"
echo "monitoring-test: $passed passed, $failed failed"
((failed == 0))
