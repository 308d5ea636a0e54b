#!/usr/bin/env bash
# The real-stack suite (make e2e): virtmq-hook installed in libvirt's hooks
# dir (qemu.d), virtmq-agent running with a test policy, real libvirtd, QEMU
# (TCG) and Linux guests with qemu-ga. Each scenario asserts; the last line
# is "N passed, N failed". Cleans up whatever it made, also on failure.
#   run.sh [SCENARIO...]   e.g. run.sh zero_touch reboot (default: all)
set -euo pipefail
shopt -s inherit_errexit
umask 022
# shellcheck source=e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $(id -u) == 0 ]] || e2e_die "run as root"
REPO=$(cd "$E2E_DIR/.." && pwd)
BIN=$REPO/bin
for b in virtmq virtmq-hook virtmq-agent; do
	[[ -x $BIN/$b ]] || e2e_die "no $BIN/$b: run make build"
done

RUN=$VIRTMQ_E2E_STATE/run
POLICY=$RUN/policy.yaml
STATUS_SOCK=$RUN/status.sock
AGENT_LOG=$VIRTMQ_E2E_LOGDIR/agent.log
AGENT_PIDFILE=$RUN/agent.pid # a file: scenarios run in subshells and restart the agent
P=${VIRTMQ_E2E_PREFIX}
T0=$SECONDS
PASSED=() FAILED=()

# --- fixtures --------------------------------------------------------------------

# write_policy MODE: the test policy. combined 2 makes the guest step do real
# work: the kernel alone would enable min(vCPUs, N) = 4 pairs.
write_policy() {
	cat >"$POLICY" <<-YAML
		version: 1
		mode: $1
		on_error: allow
		defaults:
		  queues: vcpus
		  max: 8
		  combined: 2
	YAML
}

# install_hook: libvirtd sees $RUN/hooks as /etc/libvirt/hooks (lib.sh), with
# the hook in qemu.d/ as a package installs it, reading the test policy.
install_hook() {
	mkdir -p "$RUN/hooks/qemu.d"
	cat >"$RUN/hooks/qemu.d/50-virtmq" <<-SH
		#!/bin/sh
		exec $BIN/virtmq-hook --policy $POLICY "\$@"
	SH
	chmod 0755 "$RUN/hooks/qemu.d/50-virtmq"
}

agent_start() {
	"$BIN/virtmq-agent" --policy "$POLICY" --socket "$LIBVIRT_SOCK" --status-socket "$STATUS_SOCK" \
		--log-level debug >>"$AGENT_LOG" 2>&1 &
	echo $! >"$AGENT_PIDFILE"
	e2e_wait 10 test -S "$STATUS_SOCK" || fail "virtmq-agent did not open its status socket (log: $AGENT_LOG)"
}

agent_pid() { cat "$AGENT_PIDFILE" 2>/dev/null; }
pid_gone() { ! pid_alive "$1"; } # zombies count as gone: PID 1 reaps slowly here

agent_stop() {
	local pid
	pid=$(agent_pid) || return 0
	kill -CONT "$pid" 2>/dev/null || true
	kill -TERM "$pid" 2>/dev/null || true
	e2e_wait 10 pid_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
	rm -f "$AGENT_PIDFILE"
}

on_exit() {
	local rc=$?
	agent_stop
	daemons_stop started
	if ((${#FAILED[@]})); then
		e2e_log "agent log (last lines of $AGENT_LOG):"
		tail -n 40 "$AGENT_LOG" >&2 || true
	fi
	e2e_log "e2e: passed: ${PASSED[*]:-none}; failed: ${FAILED[*]:-none}; $((SECONDS - T0))s"
	echo "${#PASSED[@]} passed, ${#FAILED[@]} failed"
	((${#FAILED[@]} == 0 && rc == 0)) || exit 1
}

# --- assertions ------------------------------------------------------------------

fail() {
	e2e_log "FAIL: $*"
	exit 1
}

# check DESC GOT WANT
check() {
	[[ $2 == "$3" ]] || fail "$1: got '$2', want '$3'"
	e2e_log "ok: $1 = $3"
}

# check_match DESC TEXT REGEX
check_match() {
	[[ $2 =~ $3 ]] || fail "$1: '$2' does not match /$3/"
	e2e_log "ok: $1 ~ /$3/"
}

# eventually TIMEOUT DESC WANT CMD...: until CMD prints WANT.
eventually() {
	local limit=$1 desc=$2 want=$3 got= end=$((SECONDS + $1))
	shift 3
	while :; do
		got=$("$@" 2>/dev/null) || true
		[[ $got == "$want" ]] && break
		((SECONDS < end)) || fail "$desc: still '$got' after ${limit}s, want '$want'"
		sleep 0.5
	done
	e2e_log "ok: $desc = $want"
}

# --- probes ----------------------------------------------------------------------

defined_queues() { e2e_virsh dumpxml --inactive "$1" | grep -o "queues='[0-9]*'" | head -n1 | tr -dc 0-9; }
defined_queues_are() { [[ $(defined_queues "$1") == "$2" ]]; }
live_queues() { e2e_virsh dumpxml "$1" | grep -o "queues='[0-9]*'" | head -n1 | tr -dc 0-9; }
guest_current() { ethtool_combined "$1" | awk '{ print $2 }'; }
qmp_vqs() {
	qmp "$1" '{"execute":"x-query-virtio-status","arguments":{"path":"/machine/peripheral/net0/virtio-backend"}}' |
		jq -r '.return["num-vqs"]'
}
qmp_mq() {
	qmp "$1" '{"execute":"x-query-virtio-status","arguments":{"path":"/machine/peripheral/net0/virtio-backend"}}' |
		jq -r '[.return["guest-features"]["dev-features"][]? | select(startswith("VIRTIO_NET_F_MQ"))] | length > 0'
}
# status_of DOMAIN JQ: a field of the agent's state for DOMAIN.
status_of() { "$BIN/virtmq" status --json --status-socket "$STATUS_SOCK" | jq -r --arg d "$1" ".domains[] | select(.name == \$d) | $2"; }
interrupt_lines() { guest_exec "$1" /bin/cat /proc/interrupts | grep -Eo 'virtio[0-9]+-input\.[0-9]+' | sort -u | wc -l; }

# boot_rewritten NAME [domain_xml options]: define, wait for the agent's
# rewrite (vCPUs queues), start, wait for qemu-ga.
boot_rewritten() {
	local vcpus
	vcpus=$(domain_xml "$@" | grep -o '<vcpu[^>]*>[0-9]*' | grep -o '[0-9]*$')
	define_domain "$@" &&
		e2e_wait 30 defined_queues_are "$1" "$vcpus" &&
		e2e_virsh start "$1" >/dev/null && wait_for_agent "$1" 120
}

# --- scenarios -------------------------------------------------------------------

# 1. define a 4-vCPU domain without queues: the agent rewrites it; it boots
# with 4 queue pairs; the guest runs 2 (M); the tap shows 2 active, 2 disabled.
zero_touch() {
	local d=${P}zt tap
	define_domain "$d"
	eventually 30 "agent rewrote the definition: queues" 4 defined_queues "$d"
	e2e_virsh start "$d" >/dev/null
	wait_for_agent "$d" 120
	check "running XML queues" "$(live_queues "$d")" 4
	check "QMP num-vqs (2N+1)" "$(qmp_vqs "$d")" 9
	check "QMP VIRTIO_NET_F_MQ negotiated" "$(qmp_mq "$d")" true
	eventually 90 "guest Combined current (the agent's ethtool -L)" 2 guest_current "$d"
	check "guest Combined max" "$(ethtool_combined "$d" | awk '{ print $1 }')" 4
	tap=$(tap_of "$d")
	eventually 10 "tap $tap numqueues/numdisabled" "2 2" tap_queues "$tap"
	check "guest virtio input interrupt lines" "$(interrupt_lines "$d")" 4
	eventually 30 "agent status state" compliant status_of "$d" .state
	check "agent status guest current" "$(status_of "$d" '.nics[0].guest_current')" 2
	"$BIN/virtmq" verify --policy "$POLICY" "$d" >"$RUN/verify.out" 2>&1 || { cat "$RUN/verify.out" >&2; fail "virtmq verify $d failed on a compliant domain"; }
	e2e_log "ok: virtmq verify $d passes"
}

# 2. a guest reboot brings the kernel default (4) back; the agent sets M again.
reboot() {
	local d=${P}zt id
	id=$(guest_boot_id "$d")
	e2e_virsh reboot "$d" >/dev/null
	wait_for_reboot "$d" "$id" 120
	eventually 90 "guest Combined current after reboot" 2 guest_current "$d"
}

# 3. the agent restarts while a domain boots, and libvirtd restarts while the
# agent runs: it reconnects, resyncs and converges.
restarts() {
	local d=${P}zt d2=${P}late
	agent_stop
	e2e_virsh destroy "$d" >/dev/null
	e2e_virsh start "$d" >/dev/null
	define_domain "$d2" # defined while no agent runs
	agent_start
	eventually 30 "agent resync rewrote $d2 defined while it was down" 4 defined_queues "$d2"
	wait_for_agent "$d" 120
	eventually 90 "guest Combined current after agent restart" 2 guest_current "$d"

	libvirtd_restart
	eventually 30 "agent reconnected to libvirt" true \
		bash -c "'$BIN/virtmq' status --json --status-socket '$STATUS_SOCK' | jq -r '.libvirt.connected and .libvirt.reconnects >= 1'"
	e2e_virsh undefine "$d2" >/dev/null
	define_domain "$d2"
	eventually 30 "agent rewrote a domain defined after libvirtd restarted" 4 defined_queues "$d2"
	e2e_virsh undefine "$d2" >/dev/null
}

# 4. enforce refuses a transient non-compliant domain with a clear message;
# audit lets it start and the agent reports it.
enforce_audit() {
	local d=${P}transient out
	write_policy enforce
	if out=$(domain_xml "$d" | e2e_virsh create /dev/stdin 2>&1); then
		e2e_virsh destroy "$d" >/dev/null 2>&1 || true
		fail "enforce mode let a non-compliant transient domain start"
	fi
	check_match "enforce refusal message" "$out" "virtmq: domain \"$d\" NIC $(guest_mac "$d") has queues=1, policy wants 4"
	write_policy audit
	domain_xml "$d" | e2e_virsh create /dev/stdin >/dev/null
	eventually 30 "agent reports the transient domain" transient status_of "$d" .state
	e2e_virsh destroy "$d" >/dev/null
}

# 5. define and start at once, before the agent can rewrite (the agent is
# frozen with SIGSTOP to make the race certain): pending cold boot, then
# compliant after shutdown + start.
race() {
	local d=${P}race
	kill -STOP "$(agent_pid)"
	define_domain "$d"
	e2e_virsh start "$d" >/dev/null
	kill -CONT "$(agent_pid)"
	eventually 30 "definition rewritten after the start" 4 defined_queues "$d"
	check "running XML still has the old count" "$(live_queues "$d")" ""
	eventually 30 "agent state" pending-cold-boot status_of "$d" .state
	if "$BIN/virtmq" verify --policy "$POLICY" "$d" >"$RUN/verify.out" 2>&1; then
		fail "virtmq verify passed on a domain running with 1 queue"
	fi
	check_match "verify says why" "$(cat "$RUN/verify.out")" "FAIL.*running queues 1"
	e2e_virsh destroy "$d" >/dev/null
	e2e_virsh start "$d" >/dev/null
	check "running XML after cold boot" "$(live_queues "$d")" 4
	eventually 30 "agent state after cold boot" compliant status_of "$d" .state
	e2e_virsh destroy "$d" >/dev/null
}

# 6. guests that cannot do the guest step: status says exactly why.
degraded_guests() {
	local dx=${P}noexec de=${P}noethtool p rc=0
	boot_rewritten "$dx" --vcpus 2 --cmdline virtmq.qga_block=guest-exec &
	p=$!
	boot_rewritten "$de" --vcpus 2 --cmdline virtmq.noethtool=1 || rc=$?
	wait "$p" || rc=$?
	((rc == 0)) || fail "degraded guests did not boot"
	eventually 60 "guest step of the guest without guest-exec" exec_disabled status_of "$dx" '.nics[0].guest_step'
	check_match "its problem" "$(status_of "$dx" '.nics[0].problem')" "guest-exec is disabled by the guest's qemu-ga policy"
	eventually 60 "guest step of the guest without ethtool" no_ethtool status_of "$de" '.nics[0].guest_step'
	check_match "its problem" "$(status_of "$de" '.nics[0].problem')" "ethtool not found in the guest"
	check "running queues of the guest without guest-exec" "$(live_queues "$dx")" 2
	e2e_virsh destroy "$dx" >/dev/null
	e2e_virsh destroy "$de" >/dev/null
}

# 7. save/restore with the hook installed: the hook prints nothing at
# restore, the domain resumes with its queues and the guest's M unchanged.
save_restore() {
	local d=${P}zt save=$VIRTMQ_E2E_STATE/zt.save tap
	eventually 90 "guest Combined current before save" 2 guest_current "$d"
	e2e_virsh save "$d" "$save" >/dev/null
	e2e_virsh restore "$save" >/dev/null
	rm -f "$save"
	wait_for_agent "$d" 60
	check "running XML queues after restore" "$(live_queues "$d")" 4
	check "QMP num-vqs after restore" "$(qmp_vqs "$d")" 9
	check "guest Combined current after restore" "$(guest_current "$d")" 2
	tap=$(tap_of "$d")
	eventually 10 "tap $tap after restore" "2 2" tap_queues "$tap"
}

ALL=(zero_touch reboot save_restore restarts enforce_audit race degraded_guests)

main() {
	local s rc
	(($#)) || set -- "${ALL[@]}"
	mkdir -p "$RUN" "$VIRTMQ_E2E_LOGDIR"
	: >"$AGENT_LOG"
	write_policy audit
	install_hook
	trap on_exit EXIT
	VIRTMQ_E2E_HOOKS_DIR=$RUN/hooks daemons_start
	cleanup_domains
	agent_start
	for s in "$@"; do
		e2e_log "=== scenario $s"
		set +e
		(
			set -e
			"$s"
		)
		rc=$?
		set -e
		if ((rc == 0)); then PASSED+=("$s"); else FAILED+=("$s"); fi
		e2e_log "=== scenario $s: $( ((rc == 0)) && echo passed || echo FAILED)"
	done
}

main "$@"
