#!/usr/bin/env bash
# make bench: the hook's cost on the VM start path against a trivial static
# Go binary (same run, interleaved), then the Go benchmarks (parser, policy,
# agent reaction and boot storm against the fake libvirt). Prints a table;
# writes JSON under bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
results=bench/results
mkdir -p "$results" bin
runs=${BENCH_RUNS:-200}

CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o bin/bench-floor ./bench/floor
go build -o bin/hookbench ./bench/hookbench

policy=$(mktemp); trap 'rm -f "$policy"' EXIT
cp packaging/policy.yaml "$policy"   # the shipped default policy, from a file as on a host

echo "== hook: virtmq-hook DOM prepare begin - (${runs} runs each, $(nproc) cores)"
bin/hookbench -hook bin/virtmq-hook -floor bin/bench-floor -policy "$policy" -runs "$runs" \
  -json "$results/hook.json" hooks/testdata/web1.xml internal/domxml/testdata/bench-4nic.xml

echo
echo "== Go benchmarks (go test -bench)"
go test -run '^$' -bench . -benchmem -count 1 ./internal/domxml ./policy ./agent/... | tee "$results/go-bench.txt" \
  | grep -E '^(Benchmark|ok|FAIL)' || true
