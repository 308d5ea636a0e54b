#!/usr/bin/env bash
# make bench-scale (and part of make bench): the agent at scale against the
# fake libvirt and guests, in process, no root: boot storms and idle CPU,
# then well-behaved domains' guest step wait beside 8 hostile guests (ends
# with hostile_wait_p95_s=X; the goal is at most 5 s). Writes JSON under
# bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
results=bench/results
mkdir -p "$results" bin
go build -o bin/scalebench ./bench/scale

echo "== agent at scale: storms of ${BENCH_SCALE_DOMAINS:-100,500} domains, then ${BENCH_IDLE:-60s} idle (fake libvirt and guests, in process)"
bin/scalebench -domains "${BENCH_SCALE_DOMAINS:-100,500}" -idle "${BENCH_IDLE:-60s}" -json "$results/scale.json"

echo
echo "== hostile guests: 6 stalling guest-exec-status, 1 with the MAC on 5000 interfaces, 1 reconnecting qemu-ga; default agent Config"
bin/scalebench -hostile -json "$results/hostile.json"
