#!/usr/bin/env bash
# make bench: the hook's cost on the VM start path against a trivial static
# Go binary (same run, interleaved), the agent at scale (boot storms and
# idle CPU against the fake libvirt and guests, bench/scale), then the Go
# benchmarks (parser, policy, agent reaction and boot storm against the fake
# libvirt), and as root the real stack (bench/realstack.sh: virsh start with
# and without the hook, the agent on libvirtd, the network at queues=1 and N,
# next-reboot, a backlog of rewrites at the agent's start).
# Prints tables; writes JSON under bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
results=bench/results
mkdir -p "$results" bin
runs=${BENCH_RUNS:-200}

CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o bin/bench-floor ./bench/floor
go build -o bin/hookbench ./bench/hookbench

policy=$(mktemp); trap 'rm -f "$policy"' EXIT
cp policy/default.yaml "$policy"   # the shipped default policy, from a file as on a host

echo "== hook: virtmq-hook DOM prepare begin - (${runs} runs each, $(nproc) cores)"
bin/hookbench -hook bin/virtmq-hook -floor bin/bench-floor -policy "$policy" -runs "$runs" \
  -json "$results/hook.json" hooks/testdata/web1.xml internal/domxml/testdata/bench-4nic.xml

echo
bench/scale.sh

echo
echo "== Go benchmarks (go test -bench)"
go test -run '^$' -bench . -benchmem -count 1 ./internal/... ./policy ./agent/... | tee "$results/go-bench.txt" \
  | grep -E '^(Benchmark|ok|FAIL)' || true

echo
if [[ $(id -u) == 0 ]]; then
  echo "== real stack: virsh start with/without the hook, agent reaction on libvirtd, network at queues=1 and N, next-reboot, a backlog of rewrites (bench/realstack.sh, ~11 min)"
  bench/realstack.sh
else
  echo "*** SKIPPING the real-stack bench (bench/realstack.sh): it needs root to run libvirtd, QEMU and a bridge."
  echo "*** Run it with: sudo make bench (or sudo bench/realstack.sh)"
fi
