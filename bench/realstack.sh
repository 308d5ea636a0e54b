#!/usr/bin/env bash
# The real-stack part of make bench (root; bench/run.sh calls it). On the e2e
# harness (libvirtd 9.0 + QEMU TCG + the tiny guest, e2e/lib.sh) it measures:
#   A. `virsh start` of the e2e guest without and with virtmq-hook in qemu.d/
#   B. the agent on the real libvirtd: DEFINED -> redefined, and qemu-ga
#      connected -> guest queues set and verified
#   C. host->guest TCP throughput and 64-byte UDP packet rate with the same
#      domain at queues=1 and queues=N (N = vCPUs)
#   D. apply_at: next-reboot: a guest reboot of a domain pending a cold boot
#      (the agent pauses, destroys and starts it) against a plain guest
#      reboot of the same domain; prints next_reboot_ratio=<x>
#   E. the backlog a package upgrade leaves: the agent started on a host with
#      BENCH_STORM defined, shut-off domains that all need a rewrite, against
#      a loop of as many bare `virsh define`s of the same XML; prints
#      storm_real_ratio=<x>
# Prints each part and a summary table (markdown); writes
# bench/results/realstack.json. Nothing here asserts on a time: the checks
# only make sure each figure measures what it says (the hook did or did not
# run, the guest has the queues, ...). Cleans up whatever it made.
#
# Environment (defaults): BENCH_STARTS=20 (per arm), BENCH_DEFINES=20,
# BENCH_BOOTS=5 (B2, and D per arm), BENCH_NET_RUNS=3 (per test and queue count), BENCH_NET_SECONDS=5,
# BENCH_VCPUS=4, BENCH_VCPUS_LARGE=8 (0: skip; one run per test),
# BENCH_UDP_KPPS=200 (UDP offered, all streams together), BENCH_STORM=100 (E's domains),
# BENCH_PARTS="a b c d e" (a subset runs
# only those parts; the JSON then has null for the others), plus the
# e2e harness's VIRTMQ_E2E_* (e2e/README.md).
set -euo pipefail
shopt -s inherit_errexit
umask 022
cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=e2e/lib.sh
source e2e/lib.sh
# shellcheck source=e2e/fixtures.sh
source e2e/fixtures.sh
[[ $(id -u) == 0 ]] || e2e_die "run as root (libvirtd, QEMU and a bridge)"
for b in virtmq virtmq-hook virtmq-agent; do
	[[ -x bin/$b ]] || e2e_die "no bin/$b: run make build"
done
# Part A's floor: a static Go binary that reads stdin and exits, built as
# bench/run.sh builds it (so this script also runs alone).
PATH=/usr/local/go/bin:$PATH CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o bin/bench-floor ./bench/floor ||
	e2e_die "cannot build bin/bench-floor"

STARTS=${BENCH_STARTS:-20}
DEFINES=${BENCH_DEFINES:-20}
BOOTS=${BENCH_BOOTS:-5}
NET_RUNS=${BENCH_NET_RUNS:-3}
NET_SECONDS=${BENCH_NET_SECONDS:-5}
VCPUS=${BENCH_VCPUS:-4}
VCPUS_LARGE=${BENCH_VCPUS_LARGE:-8}
STORM=${BENCH_STORM:-100}
PARTS=" ${BENCH_PARTS:-a b c d e} "

RESULTS=$REPO/bench/results
BW=$VIRTMQ_E2E_STATE/bench  # the bench's own hooks dir, policy, sockets
HOOKS=$BW/hooks
HOOK_BIN=$REPO/bin/virtmq-hook
FLOOR_BIN=$REPO/bin/bench-floor
POLICY=$BW/policy.yaml
STATUS_SOCK=$BW/status.sock
AGENT_LOG=$VIRTMQ_E2E_LOGDIR/bench-agent.log
AGENT_PIDFILE=$BW/agent.pid
BIN=$REPO/bin
EVENTS=$VIRTMQ_E2E_LOGDIR/bench-events.log # `virsh event --timestamp`: the independent observer
P=${VIRTMQ_E2E_PREFIX}bench-
OBS_PID=''
T0=$SECONDS

log() { e2e_log "bench: $*"; }
now_us() { echo "${EPOCHREALTIME/./}"; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; } # µs interval → ms
ts_us() { date -d "$1" +%s%6N; }

# stats V...: {"n","median","p95","min","max"} of the values (p95: nearest rank,
# ceil(0.95 n), so with fewer than 20 values it is the maximum).
stats() {
	(($#)) || {
		echo null
		return
	}
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		n = NR; med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
		r = int(0.95 * n); if (r < 0.95 * n) r++
		printf "{\"n\":%d,\"median\":%.3f,\"p95\":%.3f,\"min\":%.3f,\"max\":%.3f}\n", n, med, v[r], v[1], v[n] }'
}
arr() { if (($#)) then printf '%s\n' "$@" | jq -s -c 'map(tonumber)'; else echo '[]'; fi; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "null" }'; }

# The rest of the machine: this is a shared machine, so every measured window
# (one start, one define, one boot, one network run) records how many cores
# the rest of the machine used meanwhile: the user+nice+system time of all
# CPUs (/proc/stat) minus the bench's (its process group, libvirtd, virtlogd
# and QEMU, with what they reaped) and the kernel threads'; and the steal time
# (the hypervisor running something else). No QEMU exits inside a window (its
# CPU would land in PID 1's, the reaper of daemonized QEMUs).
CLK_TCK=$(getconf CLK_TCK)
MY_PGID=$(ps -o pgid= $$ | tr -d ' ')
# cpu_snapshot: "TOTAL MINE KTHREADS STEAL" in clock ticks.
cpu_snapshot() {
	{
		head -n1 /proc/stat
		cat /proc/[0-9]*/stat 2>/dev/null
	} | awk -v me="$MY_PGID" '
		NR == 1 { total = $2 + $3 + $4; steal = $9; next }
		{
			pid = $1; c = $0; sub(/^[^(]*\(/, "", c); sub(/\) [^)]*$/, "", c)
			r = $0; sub(/^.*\) /, "", r); split(r, a, " ")
			if (a[2] == 2 || pid == 2) { kt += a[12] + a[13]; next }
			if (a[3] == me || c == "qemu-system-x86" || c == "libvirtd" || c == "virtlogd") mine += a[12] + a[13] + a[14] + a[15]
		}
		END { print total, mine, kt, steal }'
}
# other_cores BEFORE AFTER SECONDS: "OTHERS STEAL" in cores between two snapshots.
other_cores() {
	awk -v b="$1" -v a="$2" -v s="$3" -v hz="$CLK_TCK" 'BEGIN { split(b, x, " "); split(a, y, " ")
		o = (y[1] - x[1]) - (y[2] - x[2]) - (y[3] - x[3]); if (o < 0) o = 0
		if (s <= 0) s = 1
		printf "%.3f %.3f\n", o / hz / s, (y[4] - x[4]) / hz / s }'
}
# win_begin / win_end PART: one measured window; appends "OTHERS STEAL" to
# $BW/other-PART.list and prints it.
WIN_SNAP='' WIN_T0=''
win_begin() { WIN_SNAP=$(cpu_snapshot) WIN_T0=$(now_us); }
win_end() {
	other_cores "$WIN_SNAP" "$(cpu_snapshot)" "$(ms "$WIN_T0" "$(now_us)" | awk '{ print $1 / 1000 }')" >>"$BW/other-$1.list"
	tail -n1 "$BW/other-$1.list"
}
# other_json PART: {"others": stats, "steal": stats} over a part's windows.
other_json() {
	[[ -s $BW/other-$1.list ]] || {
		echo null
		return
	}
	# shellcheck disable=SC2046 # one value per word
	jq -n --argjson o "$(stats $(awk '{ print $1 }' "$BW/other-$1.list"))" \
		--argjson s "$(stats $(awk '{ print $2 }' "$BW/other-$1.list"))" '{others: $o, steal: $s}'
}

# --- the agent and the event observer -------------------------------------------------


observer_start() {
	: >"$EVENTS"
	virsh -q -c "$VIRTMQ_E2E_URI" event --all --loop --timestamp >>"$EVENTS" 2>&1 &
	OBS_PID=$!
	sleep 0.5 # registered before anything happens
}

observer_stop() {
	[[ -n $OBS_PID ]] || return 0
	kill "$OBS_PID" 2>/dev/null || true
	wait "$OBS_PID" 2>/dev/null || true
	OBS_PID=''
}

# obs_times NAME REGEX: µs timestamps of the observer's events for domain NAME
# whose text matches REGEX, in order. Lines look like
#   2026-11-25 22:59:45.394+0000: event 'lifecycle' for domain 'NAME': Defined Added
obs_times() {
	local l
	grep -F "for domain '$1': " "$EVENTS" | grep -E -- "$2" | while IFS= read -r l; do ts_us "${l%%: event *}"; done
}
# log_times NAME REGEX: µs timestamps of the agent's log lines for NAME matching REGEX.
log_times() {
	local t
	grep -F " domain=$1 " "$AGENT_LOG" | grep -E -- "$2" | sed -E 's/^time=([^ ]+) .*/\1/' |
		while read -r t; do ts_us "$t"; done
}
first_after() { awk -v t="$1" '$1 > t { print; exit }'; }
last_before() { awk -v t="$1" '$1 < t { v = $1 } END { if (v != "") print v }'; }

on_exit() {
	local rc=$?
	observer_stop
	agent_stop
	rm -f "$HOOKS/qemu.d/50-virtmq"
	[[ -z $LOG_OUTPUTS ]] || hook_log_off 2>/dev/null || true
	daemons_stop started # also destroys and undefines every $VIRTMQ_E2E_PREFIX* domain
	log "done in $((SECONDS - T0))s"
	exit "$rc"
}

# --- A. virsh start with and without the hook -------------------------------------------

# hook_set on|floor|off: make qemu.d/50-virtmq a symlink to the hook binary (as
# the packages install it) or to the floor binary (bin/bench-floor: a static Go
# binary that reads stdin and exits), or remove it; then SIGHUP libvirtd.
#
# Why the SIGHUP: libvirt 9.0 decides once whether a driver has any hook
# (virHookInitialize, at daemon start and on SIGHUP) and caches it; only when
# it has one does every hook call list qemu.d/ again. So a hook added to an
# empty qemu.d/ is not run until SIGHUP (measured: a start right after adding
# it ran nothing), while a removed one stops running at once but libvirt keeps
# formatting the domain XML and listing qemu.d/ on every start until the next
# SIGHUP. With the SIGHUP, "without" is exactly a host without any qemu hook.
# The reload runs in a libvirtd thread: give it a second before the next start.
hook_set() {
	case $1 in
	on) ln -sfn "$HOOK_BIN" "$HOOKS/qemu.d/50-virtmq" ;;
	floor) ln -sfn "$FLOOR_BIN" "$HOOKS/qemu.d/50-virtmq" ;;
	*) rm -f "$HOOKS/qemu.d/50-virtmq" ;;
	esac
	kill -HUP "$(daemon_pid libvirtd)"
	sleep 1
}

# start_once ARM: one timed `virsh start` (process start to return), then destroy.
# Which binary ran is read from the hook's and the floor's atime (set to
# 2000-01-01 before the start; exec reads the file, and relatime updates an
# atime older than mtime), which costs nothing on the timed path. HOOK_MS is
# libvirtd's time in qemu.d/50-virtmq, whichever binary it points to.
START_MS='' HOOK_MS=''
start_once() {
	local arm=$1 d=${P}start t0 t1 ran=no n0 calls
	touch -a -d @946684800 "$HOOK_BIN" "$FLOOR_BIN"
	n0=$(wc -l <"$HOOK_LOG")
	win_begin
	t0=$(now_us)
	e2e_virsh start "$d" >/dev/null
	t1=$(now_us)
	win_end a >/dev/null
	(($(stat -c %X "$HOOK_BIN") > 946684800)) && ran=hook
	(($(stat -c %X "$FLOOR_BIN") > 946684800)) && ran=${ran/no/}floor
	# libvirtd's own account of the hook calls of this start (prepare, start,
	# started): "Calling hook" -> that thread's next virCommandRun result.
	read -r calls HOOK_MS < <(tail -n +"$((n0 + 1))" "$HOOK_LOG" | awk '
		function t(s) { split(s, a, ":"); return a[1] * 3600 + a[2] * 60 + a[3] }
		/ virRunScript:.* Calling hook .*50-virtmq / { tid = $3; t0 = t($2); next }
		tid != "" && $3 == tid && / virCommandRun:.* Result / {
			d = t($2) - t0; if (d < 0) d += 86400; sum += d; n++; tid = "" }
		END { printf "%d %.1f\n", n, sum * 1000 }')
	e2e_virsh destroy "$d" >/dev/null
	case $arm/$ran/$calls in
	on/hook/3 | floor/floor/3 | off/no/0) ;;
	*) e2e_die "virsh start, arm $arm: ran: $ran, libvirtd logged $calls hook calls (want on/hook/3, floor/floor/3 or off/no/0)" ;;
	esac
	START_MS=$(ms "$t0" "$t1")
}

# libvirtd's debug log of hook and command runs (util.hook, util.command) goes
# to HOOK_LOG during part A, in both arms; warnings keep going where they went.
HOOK_LOG=$BW/libvirtd-hooks.log
ADMIN=(virt-admin -q -c libvirtd:///system)
LOG_FILTERS='' LOG_OUTPUTS=''
hook_log_on() {
	LOG_FILTERS=$("${ADMIN[@]}" daemon-log-filters | xargs)
	LOG_OUTPUTS=$("${ADMIN[@]}" daemon-log-outputs | xargs)
	: >"$HOOK_LOG"
	"${ADMIN[@]}" daemon-log-filters "1:util.hook 1:util.command"
	"${ADMIN[@]}" daemon-log-outputs "1:file:$HOOK_LOG $LOG_OUTPUTS"
}
hook_log_off() {
	"${ADMIN[@]}" daemon-log-filters "$LOG_FILTERS"
	"${ADMIN[@]}" daemon-log-outputs "$LOG_OUTPUTS"
}

# Three arms: off (no qemu hook), on (virtmq-hook) and floor (bench-floor in
# its place, measured the same way from libvirtd's log), interleaved in a
# rotating order. start_hook_ratio = median of libvirtd's time in virtmq-hook
# per start / the same for the floor: what the hook costs over the cheapest
# possible hook, as libvirtd sees it.
part_a() {
	local i arm order orders=("on floor off" "floor off on" "off on floor") with=() without=() floor=() inhook=() infloor=() hr
	log "A. virsh start of the e2e guest (${VCPUS} vCPUs, queues=${VCPUS}) without a hook, with virtmq-hook and with the floor binary in qemu.d, $STARTS each, interleaved"
	define_domain "${P}start" --vcpus "$VCPUS" --queues "$VCPUS"
	hook_log_on
	for arm in off on floor; do # warm-up, untimed
		hook_set "$arm"
		start_once "$arm"
	done
	: >"$BW/other-a.list"
	for ((i = 1; i <= STARTS; i++)); do
		order=${orders[i % 3]}
		for arm in $order; do
			hook_set "$arm"
			start_once "$arm"
			case $arm in
			on) with+=("$START_MS") inhook+=("$HOOK_MS") ;;
			floor) floor+=("$START_MS") infloor+=("$HOOK_MS") ;;
			*) without+=("$START_MS") ;;
			esac
		done
		log "  start $i: with hook ${with[-1]} ms (libvirtd in the hook: ${inhook[-1]} ms), with floor ${floor[-1]} ms (in the floor: ${infloor[-1]} ms), without ${without[-1]} ms"
	done
	hook_log_off
	hook_set off
	e2e_virsh undefine "${P}start" >/dev/null
	hr=$(ratio "$(stats "${inhook[@]}" | jq .median)" "$(stats "${infloor[@]}" | jq .median)")
	log "  start_hook_ratio=$hr (libvirtd's time in virtmq-hook / in the floor binary per start, medians)"
	jq -n --argjson w "$(stats "${with[@]}")" --argjson wo "$(stats "${without[@]}")" \
		--argjson sw "$(arr "${with[@]}")" --argjson swo "$(arr "${without[@]}")" \
		--argjson h "$(stats "${inhook[@]}")" --argjson sh "$(arr "${inhook[@]}")" \
		--argjson wf "$(stats "${floor[@]}")" --argjson swf "$(arr "${floor[@]}")" \
		--argjson f "$(stats "${infloor[@]}")" --argjson sf "$(arr "${infloor[@]}")" --argjson hr "$hr" \
		--arg policy "$(if [[ -f /etc/virtmq/policy.yaml ]]; then echo /etc/virtmq/policy.yaml; else echo "built-in default (= policy/default.yaml, apply)"; fi)" \
		'{what: "wall time of `virsh start` (process start to return; QEMU started and resumed, not the guest boot) of the e2e guest, domain destroyed between starts; with = qemu.d/50-virtmq -> bin/virtmq-hook (the packaged symlink), floor = qemu.d/50-virtmq -> bin/bench-floor (a static Go binary that reads stdin and exits), without = no qemu hook at all; the three interleaved, SIGHUP to libvirtd at every switch",
		  hook_policy: $policy, runs_each: ($sw | length),
		  without_hook_ms: $wo, with_hook_ms: $w, with_floor_ms: $wf,
		  ratio_median: (if $wo.median > 0 then ($w.median / $wo.median) else null end),
		  delta_median_ms: ($w.median - $wo.median),
		  libvirtd_in_hook_ms: $h, libvirtd_in_floor_ms: $f,
		  libvirtd_in_hook_how: "per start with the hook (or the floor): sum over its 3 calls (prepare, start, started) of libvirtd'"'"'s debug log: Calling hook -> virCommandRun result (fork, exec, the hook reading the XML and deciding, exit; 1 ms resolution)",
		  start_hook_ratio: $hr,
		  start_hook_ratio_how: "libvirtd_in_hook_ms.median / libvirtd_in_floor_ms.median",
		  samples_ms: {without: $swo, with: $sw, with_floor: $swf, libvirtd_in_hook: $sh, libvirtd_in_floor: $sf}}' >"$BW/a.json"
}

# --- B. agent reaction on the real libvirtd ---------------------------------------------

# B1: DEFINED -> redefine complete. Each domain is fresh (new name, UUID, MAC),
# defined with `virsh define` while the agent runs; the next one only after
# the rewrite landed. Measured from the observer's timestamps: libvirt's
# "Defined Added" event (the user's define) to its "Defined Updated" event
# (the agent's redefine, emitted once libvirt has stored the new definition).
# Both reach the same independent client the same way, so the delivery delay
# cancels out. The agent's own log gives the split: event received ->
# DefineXML returned.
part_b1() {
	local i d added upd ev red e2e=() agent=()
	log "B1. DEFINED -> redefined on the real libvirtd, $DEFINES fresh domains"
	for ((i = 1; i <= DEFINES; i++)); do
		d=${P}def-$(printf %02d "$i")
		win_begin
		define_domain "$d" --vcpus 4
		e2e_wait 30 defined_queues_are "$d" 4 ||
			e2e_die "the agent did not rewrite $d (log: $AGENT_LOG)"
		win_end b >/dev/null
		sleep 0.3 # the agent's reconcile of its own redefine event; then the next one
	done
	sleep 0.5
	for ((i = 1; i <= DEFINES; i++)); do
		d=${P}def-$(printf %02d "$i")
		added=$(obs_times "$d" 'Defined Added' | head -n1)
		upd=$(obs_times "$d" 'Defined Updated' | first_after "$added")
		ev=$(log_times "$d" 'msg=event .*kind=defined detail=0' | head -n1)
		red=$(log_times "$d" 'msg="redefined the domain' | head -n1)
		[[ -n $added && -n $upd && -n $ev && -n $red ]] || e2e_die "B1: missing events for $d ($EVENTS, $AGENT_LOG)"
		e2e+=("$(ms "$added" "$upd")")
		agent+=("$(ms "$ev" "$red")")
		e2e_virsh undefine "$d" >/dev/null
	done
	log "  events: ${e2e[*]} ms; agent log: ${agent[*]} ms"
	jq -n --argjson e "$(stats "${e2e[@]}")" --argjson a "$(stats "${agent[@]}")" \
		--argjson se "$(arr "${e2e[@]}")" --argjson sa "$(arr "${agent[@]}")" \
		'{what: "fresh 4-vCPU domains defined one at a time with virsh define while the agent runs",
		  defined_to_redefined_ms: $e,
		  defined_to_redefined_how: "libvirt lifecycle events seen by an independent `virsh event --timestamp` client: Defined Added (virsh define) -> Defined Updated (the agent'"'"'s redefine stored)",
		  agent_event_to_define_returned_ms: $a,
		  agent_event_to_define_returned_how: "agent debug log: event kind=defined received -> redefined (DefineXML returned), 1 ms resolution",
		  samples_ms: {defined_to_redefined: $se, agent_event_to_define_returned: $sa}}' >"$BW/b1.json"
}

# B2: qemu-ga connected -> guest queues set and verified, over BOOTS cold boots
# of one 4-vCPU domain (queues 4 after the agent's rewrite, policy combined 2:
# the guest step runs ethtool -L 4 -> 2). Start: the observer's agent-lifecycle
# "connected" event (libvirt saw qemu-ga open its channel), the last one before
# the step. End: the NIC's guest_at in `virtmq status --json` (stamped when the
# agent recorded guest_step done with guest_current 2: ethtool -L and its read-
# back are done), and the agent log's next "QMP verification ... mq=true".
part_b2() {
	local d=${P}ga i t0 at conn qmp st done_ms=() qmp_ms=() end
	log "B2. qemu-ga connected -> guest queues set and verified, $BOOTS boots"
	define_domain "$d" --vcpus 4
	e2e_wait 30 defined_queues_are "$d" 4 ||
		e2e_die "the agent did not rewrite $d"
	for ((i = 1; i <= BOOTS; i++)); do
		win_begin
		t0=$(now_us)
		e2e_virsh start "$d" >/dev/null
		end=$((SECONDS + 240)) at=''
		while ((SECONDS < end)); do
			st=$(status_json | jq -r --arg d "$d" '.domains[] | select(.name == $d) | .nics[0] |
				select(.guest_step == "done" and .guest_current == 2) | .guest_at' 2>/dev/null) || true
			if [[ -n $st ]] && (($(ts_us "$st") > t0)); then
				at=$(ts_us "$st")
				break
			fi
			sleep 0.5
		done
		[[ -n $at ]] || e2e_die "B2: no guest step done for $d after 240 s (log: $AGENT_LOG)"
		win_end b >/dev/null
		qmp='' end=$((SECONDS + 30))
		while [[ -z $qmp ]] && ((SECONDS < end)); do
			sleep 0.2
			qmp=$(log_times "$d" 'msg="QMP verification".*mq=true' | first_after "$((at - 1000))")
		done
		conn=$(obs_times "$d" "agent-lifecycle.*state: 'connected'" | awk -v a="$t0" '$1 > a' | last_before "$at")
		[[ -n $conn && -n $qmp ]] || e2e_die "B2: boot $i: missing events (connected '$conn', QMP '$qmp')"
		[[ $(ethtool_combined "$d") == "4 2" ]] || e2e_die "B2: the guest does not show Combined 4/2"
		done_ms+=("$(ms "$conn" "$at")")
		qmp_ms+=("$(ms "$conn" "$qmp")")
		log "  boot $i: connected -> guest step done ${done_ms[-1]} ms, -> QMP verified ${qmp_ms[-1]} ms"
		e2e_virsh destroy "$d" >/dev/null
		sleep 1
	done
	e2e_virsh undefine "$d" >/dev/null
	jq -n --argjson g "$(stats "${done_ms[@]}")" --argjson q "$(stats "${qmp_ms[@]}")" \
		--argjson sg "$(arr "${done_ms[@]}")" --argjson sq "$(arr "${qmp_ms[@]}")" \
		'{what: "cold boots of a 4-vCPU TCG guest with queues 4; the agent sets Combined 4 -> 2 (policy combined 2) through qemu-ga guest-exec, then checks QMP",
		  connected_to_guest_step_done_ms: $g,
		  connected_to_qmp_verified_ms: $q,
		  how: "start: libvirt agent-lifecycle connected event seen by `virsh event --timestamp`; end: status guest_at (guest_step done, guest_current 2), and the agent log line QMP verification mq=true",
		  samples_ms: {guest_step_done: $sg, qmp_verified: $sq}}' >"$BW/b2.json"
}

# --- C. the network: queues=1 against queues=N ---------------------------------------------

# Two shapes of the same load, each with V = vCPUs streams, host -> guest:
#   single: iperf3 -c -P V to the guest's one iperf3 server (the spec's test;
#           iperf3 3.12 is single-threaded, so one guest thread receives all)
#   spread: V iperf3 clients at once to V servers, server i pinned to vCPU i
#           (-A i): parallel receivers, the case multiqueue is made for
# TCP: receiver bits/s. UDP: 64-byte datagrams, the packets the receivers got
# (packets - lost) per second. UDP is paced, UDP_KPPS offered in all, split
# over the V streams, instead of -b 0: V unpaced senders would spin on the
# host's cores and starve QEMU, and 8 floods into one queue starve the
# clients' TCP control connections. The offered rate (in the table and the
# JSON) stays several times above what any configuration here receives.
UDP_KPPS=${BENCH_UDP_KPPS:-200}
udp_rate() { echo "$((UDP_KPPS * 1000 * 64 * 8 / $1))"; } # -b per stream (bits/s of payload) for V streams

# net_boot VCPUS QUEUES: (re)define the bench domain with that many queues
# (same name, UUID, MAC and address each time), cold boot it, check the guest
# runs Combined = QUEUES (the guest kernel enables min(vCPUs, queues) itself),
# start the pinned servers.
net_boot() {
	local d=${P}net v=$1 q=$2 got i
	e2e_virsh destroy "$d" >/dev/null 2>&1 || true
	define_domain "$d" --vcpus "$v" --queues "$q"
	e2e_virsh start "$d" >/dev/null
	wait_for_agent "$d" 300 || e2e_die "C: the guest did not come up"
	got=$(ethtool_combined "$d")
	if [[ $got != "$q $q" ]]; then
		guest_exec "$d" /usr/sbin/ethtool -L eth0 combined "$q" >/dev/null
		got=$(ethtool_combined "$d")
	fi
	[[ $got == "$q $q" ]] || e2e_die "C: guest Combined max/current is '$got', want '$q $q'"
	((q == 1)) || [[ $(live_queues "$d") == "$q" ]] || e2e_die "C: running XML has no queues=$q"
	for ((i = 0; i < v; i++)); do
		guest_exec "$d" /bin/iperf3 -s -D -p $((5202 + i)) -A "$i" >/dev/null || e2e_die "C: cannot start iperf3 server $i in the guest"
	done
}

# iperf PORT ARGS...: one iperf3 client from the host to the bench guest, JSON out.
iperf() {
	local port=$1
	shift
	timeout $((NET_SECONDS + 60)) iperf3 -c "$NET_IP" -p "$port" --connect-timeout 5000 -t "$NET_SECONDS" -J "$@"
}

# rx_snapshot: the guest's rx packets per queue (ethtool -S), space-separated.
rx_snapshot() {
	guest_exec "${P}net" /usr/sbin/ethtool -S eth0 | sed -nE 's/^ *rx_queue_([0-9]+)_packets: ([0-9]+)$/\1 \2/p' |
		sort -n | awk '{ printf "%s ", $2 }'
}

# iperf_run DIR V TEST: the clients of one run of TEST, JSON in DIR/*.json;
# fails when any client failed or reported an error.
iperf_run() {
	local dir=$1 v=$2 test=$3 i rc=0 pids=() u=()
	rm -f "$dir"/*.json
	case $test in
	tcp_single) iperf 5201 -P "$v" >"$dir/0.json" || rc=1 ;;
	udp_single) iperf 5201 -P "$v" -u -l 64 -b "$(udp_rate "$v")" >"$dir/0.json" || rc=1 ;;
	tcp_spread | udp_spread)
		[[ $test == udp_spread ]] && u=(-u -l 64 -b "$(udp_rate "$v")")
		for ((i = 0; i < v; i++)); do
			iperf $((5202 + i)) "${u[@]}" >"$dir/$i.json" &
			pids+=($!)
		done
		for i in "${pids[@]}"; do wait "$i" || rc=1; done
		;;
	esac
	jq -se 'all(.[]; .error == null and .end.sum_received != null)' "$dir"/*.json >/dev/null || rc=1
	return "$rc"
}

# net_test V TEST RUN: one run of TEST (tcp|udp × single|spread), tried up
# to 3 times (a client's control connection can time out when the guest is
# flooded); appends a JSON line {test, run, value, offered_kpps, rx_delta,
# attempts, other_cores, steal_cores, error} to $NET_SAMPLES. A run that
# fails 3 times is recorded with value null and its error, not fatal.
RX_PREV=''
net_test() {
	local v=$1 test=$2 run=$3 attempt dir value=null offered=null rx delta other steal err=null
	dir=$(mktemp -d "$BW/iperf.XXXXXX")
	for attempt in 1 2 3; do
		win_begin
		if iperf_run "$dir" "$v" "$test"; then
			err=null
			break
		fi
		err=$(jq -s 'map(.error // empty) | unique | join("; ")' "$dir"/*.json 2>/dev/null || echo '"no JSON"')
		log "  $test run $run: attempt $attempt failed: $err"
		sleep 2
	done
	read -r other steal < <(win_end c)
	if [[ $err == null && $test == tcp_* ]]; then
		value=$(jq -s '[.[].end.sum_received.bits_per_second] | add / 1e9' "$dir"/*.json)
	elif [[ $err == null ]]; then
		value=$(jq -s '[.[].end.sum_received | (.packets - .lost_packets) / .seconds] | add / 1e3' "$dir"/*.json)
		offered=$(jq -s '[.[].end.sum_sent | .packets / .seconds] | add / 1e3' "$dir"/*.json)
	fi
	rm -rf "$dir"
	rx=$(rx_snapshot)
	delta=$(jq -nc --arg a "$RX_PREV" --arg b "$rx" '[$a, $b] | map(split(" ") | map(select(. != "") | tonumber)) |
		[range(.[1] | length) as $i | .[1][$i] - (.[0][$i] // 0)]')
	RX_PREV=$rx
	jq -nc --arg t "$test" --argjson r "$run" --argjson v "$value" --argjson o "$offered" --argjson d "$delta" \
		--argjson a "$attempt" --argjson oc "$other" --argjson st "$steal" --argjson e "$err" \
		'{test: $t, run: $r, value: $v, offered_kpps: $o, rx_delta: $d, attempts: $a, other_cores: $oc, steal_cores: $st, error: $e}' >>"$NET_SAMPLES"
	if [[ $err != null ]]; then
		log "  $test run $run: FAILED 3 times ($err): recorded as missing"
	else
		log "  $test run $run: $(printf %.3f "$value") $([[ $test == tcp_* ]] && echo Gbit/s || echo "kpps received, $(printf %.1f "$offered") kpps offered"), rx packets per queue +[$(jq -r 'join(" ")' <<<"$delta")]; rest of the machine $other cores, steal $steal"
	fi
	sleep 0.5
}

# net_case VCPUS QUEUES RUNS: RUNS rounds of the four tests, alternating.
net_case() {
	local v=$1 q=$2 runs=$3 r t
	log "C. ${v} vCPUs, queues=${q}: booting"
	net_boot "$v" "$q"
	NET_IP=$(guest_ip "${P}net") NET_IP=${NET_IP%/*}
	NET_SAMPLES=$BW/net-$v-$q.jsonl
	: >"$NET_SAMPLES"
	timeout 30 iperf3 -c "$NET_IP" -t 1 -P "$v" >/dev/null || true # warm-up
	RX_PREV=$(rx_snapshot)
	for ((r = 1; r <= runs; r++)); do
		for t in tcp_single udp_single tcp_spread udp_spread; do net_test "$v" "$t" "$r"; done
	done
	e2e_virsh destroy "${P}net" >/dev/null
	# Per test: stats of the values, the offered rate, and the share of the
	# guest's rx packets each queue carried (summed over the runs).
	jq -s -c --argjson v "$v" --argjson q "$q" 'def st:
		sort as $s | ($s | length) as $n | {n: $n,
			median: (if $n % 2 == 1 then $s[($n - 1) / 2] else ($s[$n / 2 - 1] + $s[$n / 2]) / 2 end),
			p95: $s[((0.95 * $n) | ceil) - 1], min: $s[0], max: $s[-1]};
		{vcpus: $v, queues: $q, tests: (group_by(.test) | map({key: .[0].test, value: {
			value: (map(.value | values) | if length > 0 then st else null end), samples: map(.value),
			offered_kpps: (map(.offered_kpps | values) | if length > 0 then st else null end),
			retried_runs: map(select(.attempts > 1)) | length, failed_runs: map(select(.error != null)) | length,
			other_cores_max: (map(.other_cores) | max), steal_cores_max: (map(.steal_cores) | max),
			rx_share_per_queue: ([.[].rx_delta] | transpose | map(add) | (add) as $t |
				map(if $t > 0 then (. / $t * 1000 | round / 1000) else 0 end))}}) | from_entries)}' "$NET_SAMPLES"
}

part_c() {
	local cases=() v runs c1 cn
	for v in "$VCPUS" "$VCPUS_LARGE"; do
		[[ $v != 0 ]] || continue
		runs=$NET_RUNS
		[[ $v == "$VCPUS" ]] || runs=1
		c1=$(net_case "$v" 1 "$runs") # one per assignment: set -e sees each
		cn=$(net_case "$v" "$v" "$runs")
		cases+=("$c1" "$cn")
		[[ $VCPUS_LARGE != "$VCPUS" ]] || break
	done
	e2e_virsh undefine "${P}net" >/dev/null
	printf '%s\n' "${cases[@]}" | jq -s --argjson s "$NET_SECONDS" --argjson kpps "$UDP_KPPS" '{
		what: "iperf3 3.12, host (bridge 169.254.77.1) -> guest; same domain redefined with queues=1 or queues=N (= vCPUs) and cold booted, guest Combined = queues. tcp/udp_single: iperf3 -c -P vCPUs to the guest'"'"'s one server; tcp/udp_spread: vCPUs clients at once to vCPUs servers, server i pinned to vCPU i. TCP: receiver Gbit/s; UDP: -l 64, paced at udp_offered_kpps split over the streams, kpps the receivers got (packets - lost)",
		seconds_per_run: $s, udp_offered_kpps: $kpps, cases: .,
		ratios: [group_by(.vcpus)[] | select(length == 2) | sort_by(.queues) | . as $c |
			{vcpus: $c[0].vcpus, queues: $c[1].queues} +
			($c[1].tests | keys | map(. as $t | {key: $t, value: (if $c[1].tests[$t].value == null or $c[0].tests[$t].value == null then null
				else $c[1].tests[$t].value.median / $c[0].tests[$t].value.median end)}) | from_entries)]}' >"$BW/c.json"
}

# --- D. apply_at: next-reboot against a plain reboot ---------------------------------------

# D: one 4-vCPU domain, the agent running with apply_at: next-reboot. Two
# arms, alternating, BOOTS each:
#   armed: the domain runs with one queue while its definition (the agent's
#          rewrite) has 4 (pending-cold-boot; made so, untimed, by defining
#          and starting it while the agent is stopped, as e2e/reboot.sh does);
#          a guest `reboot` -> the agent pauses it at the reset, destroys it
#          and starts it from its definition
#   plain: the same domain right after, compliant (4 queues running): a
#          guest `reboot` is an ordinary reset of the same QEMU
# Timed, the same way for both: from the guest-exec of `/bin/busybox reboot`
# (its reply may never come) until the running XML has 4 queues and qemu-ga
# answers from a new boot (the guest's boot_id changed), polled every 0.2 s.
# next_reboot_ratio = median armed / median plain. Only the plain windows
# record the rest of the machine's load: an armed one sees its QEMU exit.
REBOOT_MS=''
# reboot_once ARM: one timed guest reboot of ${P}reboot; checks the arm did
# what it says (armed: a new QEMU, the domain id changed; plain: the same one).
reboot_once() {
	local arm=$1 d=${P}reboot boot id t0 t1 now end
	boot=$(guest_boot_id "$d") || e2e_die "D: no boot id from $d"
	id=$(e2e_virsh domid "$d")
	[[ $arm == armed ]] || win_begin
	t0=$(now_us)
	guest_run "$d" /bin/busybox reboot
	end=$((SECONDS + 240)) t1=''
	while ((SECONDS < end)); do
		if [[ $(live_queues "$d" 2>/dev/null) == 4 ]] &&
			now=$(GUEST_EXEC_TIMEOUT=5 guest_boot_id "$d" 2>/dev/null) && [[ -n $now && $now != "$boot" ]]; then
			t1=$(now_us)
			break
		fi
		sleep 0.2
	done
	[[ $arm == armed ]] || win_end d >/dev/null
	[[ -n $t1 ]] || e2e_die "D: $arm reboot of $d: not back with 4 queues and a new boot after 240 s (log: $AGENT_LOG, console: $(console_log "$d"))"
	case $arm/$(e2e_virsh domid "$d") in
	armed/"$id") e2e_die "D: the armed reboot of $d kept domain id $id: no cold boot" ;;
	armed/* | plain/"$id") ;;
	*) e2e_die "D: the plain reboot of $d changed the domain id: a cold boot" ;;
	esac
	REBOOT_MS=$(ms "$t0" "$t1")
}

state_is() { [[ $(status_of "$1" .state) == "$2" ]]; }

# reboot_pending: ${P}reboot runs with one queue, its definition has 4, the
# agent says pending-cold-boot and armed for the next reboot, qemu-ga answers.
reboot_pending() {
	local d=${P}reboot st
	agent_stop
	e2e_virsh destroy "$d" >/dev/null 2>&1 || true
	define_domain "$d" --vcpus 4
	e2e_virsh start "$d" >/dev/null
	agent_start
	e2e_wait 30 defined_queues_are "$d" 4 || e2e_die "D: the agent did not rewrite $d"
	e2e_wait 30 state_is "$d" pending-cold-boot || e2e_die "D: $d is not pending-cold-boot (state: $(status_of "$d" .state))"
	[[ -z $(live_queues "$d") ]] || e2e_die "D: $d runs with queues $(live_queues "$d"), want one pair"
	wait_for_agent "$d" 120 || e2e_die "D: no qemu-ga in $d"
	st=$(status_of "$d" .problem)
	[[ $st == *"next reboot"* ]] || e2e_die "D: $d is not armed for its next reboot (problem: $st)"
}

part_d() {
	local d=${P}reboot i armed=() plain=() r
	log "D. apply_at: next-reboot: guest reboot of a pending domain (paused, destroyed, started) against a plain guest reboot of the same domain, $BOOTS each, alternating"
	write_policy audit next-reboot
	rm -rf "$BW/state"
	: >"$BW/other-d.list"
	for ((i = 1; i <= BOOTS; i++)); do
		reboot_pending
		reboot_once armed
		armed+=("$REBOOT_MS")
		e2e_wait 60 state_is "$d" compliant || e2e_die "D: $d is not compliant after its armed reboot (state: $(status_of "$d" .state))"
		wait_for_agent "$d" 120 || e2e_die "D: no qemu-ga in $d"
		reboot_once plain
		plain+=("$REBOOT_MS")
		log "  round $i: armed reboot ${armed[-1]} ms, plain reboot ${plain[-1]} ms"
	done
	[[ -z $(ls -A "$BW/state/restart" 2>/dev/null) ]] || e2e_die "D: restart intents left: $(ls "$BW/state/restart")"
	agent_stop
	e2e_virsh destroy "$d" >/dev/null
	e2e_virsh undefine "$d" >/dev/null
	rm -rf "$BW/state"
	write_policy audit
	r=$(ratio "$(stats "${armed[@]}" | jq .median)" "$(stats "${plain[@]}" | jq .median)")
	log "  next_reboot_ratio=$r (armed / plain guest reboot, medians)"
	jq -n --argjson a "$(stats "${armed[@]}")" --argjson p "$(stats "${plain[@]}")" \
		--argjson sa "$(arr "${armed[@]}")" --argjson sp "$(arr "${plain[@]}")" --argjson r "$r" \
		'{what: "guest `/bin/busybox reboot` (through qemu-ga guest-exec) of one 4-vCPU TCG domain, the agent running with apply_at: next-reboot; armed = the domain pending a cold boot (runs with 1 queue, defined with 4): the agent pauses it at the reset, destroys it and starts it from its definition; plain = the same domain, compliant, right after: an ordinary reset of the same QEMU; the arms alternate",
		  how: "from the guest-exec of reboot until the running XML has queues 4 and qemu-ga answers from a new boot (the guest boot_id changed), polled every 0.2 s; armed checked to have a new domain id, plain the same one",
		  armed_reboot_ms: $a, plain_reboot_ms: $p,
		  next_reboot_ratio: $r, next_reboot_ratio_how: "armed_reboot_ms.median / plain_reboot_ms.median",
		  samples_ms: {armed: $sa, plain: $sp}}' >"$BW/d.json"
}

# --- E. a backlog of definitions to rewrite -----------------------------------------------

# E: what a package upgrade leaves: STORM shut-off 4-vCPU domains defined
# without queues while no agent runs, then the agent starts and rewrites them
# all. Timed: from just before the agent's exec to the last "Defined Updated"
# event of the domains (the observer, as in B1: libvirt stored the agent's
# redefine). The floor is the loop that defined them: STORM bare `virsh
# define`s of the same XML, one after the other, each a new virsh process
# and connection, the way a person or a script redefines a fleet.
# storm_real_ratio = agent / floor: below 1 the agent rewrites a backlog
# faster than such a loop defines it. One run.
part_e() {
	local dir=$BW/storm i d t0 t1 floor_ms agent_ms last n r
	log "E. a backlog: the agent started on $STORM shut-off domains that all need a rewrite, against $STORM bare virsh defines of the same XML in one loop"
	agent_stop
	rm -rf "$dir"
	mkdir -p "$dir"
	for ((i = 1; i <= STORM; i++)); do
		d=${P}storm-$(printf %03d "$i")
		domain_xml "$d" --vcpus 4 >"$dir/$d.xml"
	done
	t0=$(now_us)
	for ((i = 1; i <= STORM; i++)); do
		e2e_virsh define "$dir/${P}storm-$(printf %03d "$i").xml" >/dev/null
	done
	t1=$(now_us)
	floor_ms=$(ms "$t0" "$t1")
	log "  floor: $STORM virsh defines in $floor_ms ms"
	for ((i = 1; i <= STORM; i++)); do
		defined_queues_are "${P}storm-$(printf %03d "$i")" "" || e2e_die "E: ${P}storm-$i has queues before the agent runs"
	done
	observer_start
	win_begin
	t0=$(now_us)
	agent_start
	storm_rewritten() {
		n=$(status_json | jq --arg p "${P}storm-" '[.domains[] | select((.name | startswith($p)) and .state == "rewritten")] | length')
		[[ $n == "$STORM" ]]
	}
	e2e_wait 300 storm_rewritten || e2e_die "E: $n of $STORM domains rewritten after 300 s (log: $AGENT_LOG)"
	win_end e >/dev/null
	sleep 0.5 # the observer's last events
	observer_stop
	last=$(grep -E "for domain '${P}storm-[0-9]+': Defined Updated" "$EVENTS" | sed 's/: event .*//' | sort | tail -n1)
	[[ -n $last ]] || e2e_die "E: no Defined Updated event seen ($EVENTS)"
	t1=$(ts_us "$last")
	agent_ms=$(ms "$t0" "$t1")
	for ((i = 1; i <= STORM; i++)); do
		d=${P}storm-$(printf %03d "$i")
		defined_queues_are "$d" 4 || e2e_die "E: $d defined with queues '$(defined_queues "$d")', want 4"
	done
	agent_stop
	for ((i = 1; i <= STORM; i++)); do
		e2e_virsh undefine "${P}storm-$(printf %03d "$i")" >/dev/null
	done
	rm -rf "$dir"
	r=$(ratio "$agent_ms" "$floor_ms")
	log "  agent: all $STORM rewritten $agent_ms ms after its start; storm_real_ratio=$r (agent / floor)"
	jq -n --argjson n "$STORM" --argjson f "$floor_ms" --argjson a "$agent_ms" --argjson r "$r" \
		'{what: "\($n) shut-off 4-vCPU domains defined without queues while no agent runs (what a package upgrade leaves), then the agent started: it rewrites them all",
		  domains: $n,
		  floor_ms: $f, floor_how: "\($n) bare `virsh define`s of the same XML in one shell loop, one after the other (each a new virsh process and connection)",
		  agent_ms: $a, agent_how: "from just before the agent is started to the last Defined Updated event of the domains (libvirt stored the agent'"'"'s redefine), seen by an independent `virsh event --timestamp` client",
		  storm_real_ratio: $r, storm_real_ratio_how: "agent_ms / floor_ms, one run"}' >"$BW/e.json"
}

# --- report -------------------------------------------------------------------------------

host_json() {
	jq -n --arg nproc "$(nproc)" --arg model "$(grep -m1 '^model name' /proc/cpuinfo | sed 's/.*: //')" \
		--arg kernel "$(uname -r)" --arg libvirt "$(libvirtd --version | awk '{ print $NF }')" \
		--arg qemu "$(qemu-system-x86_64 --version | head -n1 | awk '{ print $4 }')" \
		--arg load "$1" --arg mem "$(awk '/MemTotal/ { printf "%d", $2 / 1024 }' /proc/meminfo)" \
		--arg vhost "$([[ -e /dev/vhost-net ]] && echo true || echo false)" \
		'{nproc: ($nproc | tonumber), cpu_model: $model, mem_mib: ($mem | tonumber), kernel: $kernel,
		  libvirt: $libvirt, qemu: $qemu, accel: "tcg (domain type qemu)", vhost_net: ($vhost == "true"),
		  loadavg_at_start: $load}'
}

report() {
	jq -r '
		def f(x): if x == null then "-" elif (x | type) == "number" then (x * 100 | round / 100 | tostring) else x end;
		def row(name; s; unit): if s == null then empty else "| \(name) (\(unit)) | \(f(s.median)) | \(f(s.p95)) | \(s.n) |" end;
		. as $r | .host as $h |
		"host: \($h.nproc) cores (\($h.cpu_model)), \($h.mem_mib) MiB, kernel \($h.kernel); libvirt \($h.libvirt), QEMU \($h.qemu), \($h.accel), vhost-net: \($h.vhost_net); load average at start \($h.loadavg_at_start), at end \($h.loadavg_at_end); took \($r.took_seconds) s",
		def load(x): if x == null then "-" else "median \(f(x.others.median)), max \(f(x.others.max)) (steal max \(f(x.steal.max)))" end;
		"rest of the machine during the measured windows, in cores: virsh starts \(load($r.other_load_cores.virsh_start)); agent \(load($r.other_load_cores.agent)); network runs \(load($r.other_load_cores.network)); reboots \(load($r.other_load_cores.next_reboot)); backlog rewrite \(load($r.other_load_cores.storm_real))",
		# disturbed: a part whose typical window saw the rest of the machine at work,
		# or a network run (5 s: long enough for its maximum to mean something)
		([$r.other_load_cores[]? | objects | .others.median + .steal.median] + [$r.network.cases[]?.tests[] | .other_cores_max + .steal_cores_max] |
			max // 0) as $m |
			(if $m > 0.2 then "WARNING: the rest of the machine used \(f($m)) of the \($h.nproc) cores during the measurements: figures are disturbed (per-window values in the JSON)" else empty end),
		([$r.network.cases[]?.tests[] | .failed_runs] | add // 0) as $nf | (if $nf > 0 then "WARNING: \($nf) network run(s) failed 3 times and are missing (errors in the JSON)" else empty end),
		"",
		"| figure | median | p95 | n |",
		"| --- | ---: | ---: | ---: |",
		row("virsh start, no qemu hook"; .virsh_start.without_hook_ms; "ms"),
		row("virsh start, virtmq-hook in qemu.d"; .virsh_start.with_hook_ms; "ms"),
		row("virsh start, floor binary in qemu.d"; .virsh_start.with_floor_ms; "ms"),
		(.virsh_start // empty |
			"| virsh start ratio with/without hook (medians) | \(f(.ratio_median)) | | |",
			"| hook cost per start (difference of medians, ms) | \(f(.delta_median_ms)) | | |",
		row("libvirtd time in virtmq-hook per start, 3 calls (libvirtd debug log)"; .libvirtd_in_hook_ms; "ms"),
		row("libvirtd time in the floor binary per start, 3 calls (libvirtd debug log)"; .libvirtd_in_floor_ms; "ms"),
		"| start_hook_ratio: libvirtd in virtmq-hook / in the floor (medians) | \(f(.start_hook_ratio)) | | |"),
		row("agent: DEFINED → redefined (libvirt events)"; .agent_define.defined_to_redefined_ms; "ms"),
		row("agent: DEFINED received → DefineXML returned (agent log)"; .agent_define.agent_event_to_define_returned_ms; "ms"),
		row("agent: qemu-ga connected → guest Combined set (status)"; .agent_guest.connected_to_guest_step_done_ms; "ms"),
		row("agent: qemu-ga connected → QMP verified (agent log)"; .agent_guest.connected_to_qmp_verified_ms; "ms"),
		row("guest reboot → back with 4 queues and qemu-ga, plain (same QEMU)"; .next_reboot.plain_reboot_ms; "ms"),
		row("guest reboot → back with 4 queues and qemu-ga, armed (apply_at: next-reboot)"; .next_reboot.armed_reboot_ms; "ms"),
		(.next_reboot // empty | "| next_reboot_ratio: armed / plain reboot (medians) | \(f(.next_reboot_ratio)) | | |"),
		(.storm_real // empty |
			"| \(.domains) bare virsh defines in one loop (floor, ms) | \(f(.floor_ms)) | | 1 |",
			"| agent started on \(.domains) shut-off domains to rewrite → all rewritten (ms) | \(f(.agent_ms)) | | 1 |",
			"| storm_real_ratio: agent / floor | \(f(.storm_real_ratio)) | | |"),
		(.network // empty | "",
		"| host → guest, medians of \($r.network.cases[0].tests.tcp_single.value.n) runs (larger vCPU count: 1 run) of \($r.network.seconds_per_run) s | vCPUs | queues=1 | queues=N | N/1 | rx packets per queue at queues=N (%) |",
		"| --- | ---: | ---: | ---: | ---: | --- |",
		($r.network.cases | group_by(.vcpus)[] | select(length == 2) | sort_by(.queues) | . as $c |
			[["tcp_single", "TCP Gbit/s, iperf3 -P vCPUs, one server"],
			 ["udp_single", "UDP 64 B kpps received, -P vCPUs, one server"],
			 ["tcp_spread", "TCP Gbit/s, vCPUs clients → vCPUs servers pinned one per vCPU"],
			 ["udp_spread", "UDP 64 B kpps received, vCPUs clients → vCPUs pinned servers"]][] as [$t, $name] |
			"| \($name)\(if $c[1].tests[$t].offered_kpps then " (offered \(f($c[1].tests[$t].offered_kpps.median)))" else "" end) | \($c[0].vcpus) | \(f($c[0].tests[$t].value.median)) | \(f($c[1].tests[$t].value.median)) | \(f(if $c[0].tests[$t].value == null or $c[1].tests[$t].value == null then null else $c[1].tests[$t].value.median / $c[0].tests[$t].value.median end)) | \($c[1].tests[$t].rx_share_per_queue | map(. * 100 | round | tostring) | join(" ")) |"))
	' "$RESULTS/realstack.json"
}

main() {
	local load f
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	e2e/setup.sh # packages and the guest, once (cached)
	mkdir -p "$RESULTS" "$HOOKS/qemu.d" "$VIRTMQ_E2E_LOGDIR"
	rm -f "$HOOKS/qemu.d/"* "$BW"/*.json "$BW"/*.jsonl "$BW"/other-*.list
	: >"$AGENT_LOG"
	write_policy apply
	trap on_exit EXIT
	VIRTMQ_E2E_HOOKS_DIR=$HOOKS daemons_start
	cleanup_domains
	log "host: $(nproc) cores, load average $load"

	[[ $PARTS != *" a "* ]] || part_a
	if [[ $PARTS == *" b "* ]]; then
		hook_set on # B runs as installed: hook in qemu.d, agent running
		observer_start
		agent_start
		part_b1
		part_b2
		agent_stop # C: the agent would rewrite queues=1
		observer_stop
		hook_set off
	fi
	[[ $PARTS != *" c "* ]] || part_c
	[[ $PARTS != *" d "* ]] || part_d
	[[ $PARTS != *" e "* ]] || part_e

	for f in a b1 b2 c d e; do [[ -f $BW/$f.json ]] || echo null >"$BW/$f.json"; done
	jq -n --argjson host "$(host_json "$load")" --slurpfile a "$BW/a.json" --slurpfile b1 "$BW/b1.json" \
		--slurpfile b2 "$BW/b2.json" --slurpfile c "$BW/c.json" --slurpfile d "$BW/d.json" --slurpfile e "$BW/e.json" --arg at "$(date -u +%FT%TZ)" \
		--arg load_end "$(cut -d' ' -f1-3 /proc/loadavg)" --argjson took $((SECONDS - T0)) \
		--argjson oa "$(other_json a)" --argjson ob "$(other_json b)" --argjson oc "$(other_json c)" --argjson od "$(other_json d)" \
		--argjson oe "$(other_json e)" \
		'{generated: $at, took_seconds: $took, host: ($host + {loadavg_at_end: $load_end}),
		  other_load_cores: {what: "cores the rest of the machine used during each measured window (a start, a define, a boot, a network run): others = user+nice+system of /proc/stat minus the bench (its process group, libvirtd, virtlogd, QEMU) and kernel threads; steal = the hypervisor", virsh_start: $oa, agent: $ob, network: $oc, next_reboot: $od, storm_real: $oe},
		  virsh_start: $a[0], agent_define: $b1[0], agent_guest: $b2[0], network: $c[0], next_reboot: $d[0], storm_real: $e[0]}' \
		>"$RESULTS/realstack.json.tmp"
	mv "$RESULTS/realstack.json.tmp" "$RESULTS/realstack.json"
	echo
	echo "== real stack ($RESULTS/realstack.json)"
	report
	jq -r '.virsh_start // empty | "start_hook_ratio=\(.start_hook_ratio)"' "$RESULTS/realstack.json"
	jq -r '.next_reboot // empty | "next_reboot_ratio=\(.next_reboot_ratio)"' "$RESULTS/realstack.json"
	jq -r '.storm_real // empty | "storm_real_ratio=\(.storm_real_ratio)"' "$RESULTS/realstack.json"
}

main "$@"
