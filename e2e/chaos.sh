# shellcheck shell=bash
# Churn and faults on the real stack, sourced by run.sh: a seeded
# pseudo-random sequence of what happens to running VMs on a real host
# (chaos), each crash point of the next-reboot path on purpose
# (next_reboot_failpoints), and a state folder that is full or read-only
# and a libvirtd restart while virtmq holds a domain paused (host_faults).
# All run under the shipped policy (policy/default.yaml: apply_at:
# next-reboot). A failing chaos run prints its seed; it replays with
#   make chaos SEED=... STEPS=...      (or CHAOS_SEED=... CHAOS_STEPS=... e2e/run.sh chaos)

CHAOS_VMS=${CHAOS_VMS:-3}
FP_AGENT=$RUN/virtmq-agent-fp # the failpoints build (agent/failpoint_on.go)

# shipped_policy [MODE]: policy/default.yaml as the package installs it,
# in MODE (default its own, apply), in force.
shipped_policy() {
	sed "s/^mode: apply$/mode: ${1:-apply}/" "$REPO/policy/default.yaml" >"$POLICY"
	agent_reload
	check "policy mode" "$(status_json | jq -r .policy.mode)" "${1:-apply}"
}

# fp_agent_build: the failpoints build of virtmq-agent, once per run.
fp_agent_build() {
	[[ -x $FP_AGENT ]] && return 0
	(cd "$REPO" && CGO_ENABLED=0 go build -tags failpoints -o "$FP_AGENT" ./cmd/virtmq-agent) || fail "go build -tags failpoints failed"
}

# fp_agent_start FAILPOINTS: the failpoints build in place of the agent,
# with VIRTMQ_FAILPOINTS=FAILPOINTS.
fp_agent_start() {
	fp_agent_build
	agent_stop
	VIRTMQ_FAILPOINTS=$1 AGENT_BIN=$FP_AGENT agent_start
}

# agent_metric NAME: a value the agent exports on /metrics.
agent_metric() {
	local m
	m=$(curl -fsS "http://$METRICS_LISTEN/metrics") && awk -v n="$1" '$1 == n { print $2 }' <<<"$m"
}
agent_rss_mib() { awk '{ printf "%.1f", $1 / 1048576 }' <<<"$(agent_metric process_resident_memory_bytes)"; }

# stripped_definition DOMAIN: the definition without what virtmq writes
# (<driver queues>, its <virtmq:written> record, an emptied <metadata>).
stripped_definition() {
	e2e_virsh dumpxml --inactive --security-info "$1" |
		sed -e "/^ *<driver queues='[0-9]*'\/>$/d" -e '/<virtmq:written[^>]*\/>/d' -e '/<virtmq:written/,/<\/virtmq:written>/d' |
		awk '/^  <metadata>$/ { held = $0; next } held != "" { if ($0 != "  </metadata>") print held; held = ""; if ($0 == "  </metadata>") next } { print }'
}

vcpus_of() { e2e_virsh dumpxml --inactive "$1" | xmllint --xpath 'string(/domain/vcpu)' -; }
# pending DOMAIN: it runs with other queues than its definition.
is_pending() { [[ $(live_queues "$1") != "$(defined_queues "$1")" ]]; }

# --- the chaos engine -----------------------------------------------------------

# The operator's intent per VM (what each VM must be in within 150 s):
# running, "shut off" (powered off from inside, not started again yet).
declare -A WANT PAUSED_SINCE
CHAOS_RNG=1

# rnd N: a pseudo-random 0..N-1 in R (a 31-bit LCG: the same seed gives
# the same run, whatever else in the harness draws from $RANDOM).
rnd() {
	CHAOS_RNG=$(((CHAOS_RNG * 1103515245 + 12345) % 2147483648))
	R=$(((CHAOS_RNG / 65536) % $1))
}

chaos_vm() { echo "${P}ch$1"; }

# chaos_define NAME VCPUS: the operator (re)defines a VM; its baseline is
# libvirt's copy of what the operator gave, without virtmq's part.
chaos_define() {
	define_domain "$1" --vcpus "$2"
	stripped_definition "$1" >"$RUN/chaos/$1.base"
}

# chaos_settle: until every VM is in the power state its operator left it
# (150 s at most), sampling how long virtmq keeps any VM paused (30 s at
# most); then every definition is the operator's plus virtmq's part.
chaos_settle() {
	local end=$((SECONDS + 150)) d st bad now since
	while :; do
		bad=
		now=$SECONDS
		for d in "${VMS[@]}"; do
			st=$(e2e_virsh domstate "$d" 2>/dev/null) || st=unknown
			if [[ $st == paused ]]; then
				since=${PAUSED_SINCE[$d]:-$now}
				PAUSED_SINCE[$d]=$since
				((now - since <= 30)) || fail "invariant: $d paused for $((now - since)) s (> 30 s) (seed $CHAOS_SEED)"
			else
				PAUSED_SINCE[$d]=
			fi
			[[ $st == "${WANT[$d]}" ]] || bad+=" $d=$st(want ${WANT[$d]})"
		done
		[[ -z $bad ]] && break
		((SECONDS < end)) || fail "invariant: power state after 150 s:$bad (seed $CHAOS_SEED)"
		sleep 0.5
	done
	for d in "${VMS[@]}"; do
		stripped_definition "$d" | cmp -s - "$RUN/chaos/$d.base" ||
			fail "invariant: $d's definition changed beyond <driver queues> and virtmq's record: diff <(stripped) $RUN/chaos/$d.base (seed $CHAOS_SEED)"
	done
	pid_alive "$(agent_pid)" || fail "the agent is not running (seed $CHAOS_SEED)"
}

# chaos_ready DOMAIN: running with qemu-ga answering (for a guest command).
chaos_ready() { [[ ${WANT[$1]} == running ]] && wait_for_agent "$1" 120; }

# chaos_pending DOMAIN: make it pending a cold boot as an operator does:
# redefine it with the other vCPU count (2 <-> 3); the agent rewrites it.
chaos_pending() {
	local d=$1 v
	v=$(($(vcpus_of "$d") == 2 ? 3 : 2))
	chaos_define "$d" "$v"
	eventually 30 "$d rewritten to $v queues" "$v" defined_queues "$d"
}

# op VIRSH-ARGS...: an operator's virsh command. It may meet a state
# virtmq is changing at that moment (a cold boot under way): that is
# logged, not a failure; the invariants judge what follows.
op() { e2e_virsh "$@" >/dev/null 2>&1 || e2e_log "chaos:   virsh $* failed (a concurrent change): $(e2e_virsh domstate "${@: -1}" 2>&1)"; }

# The steps. Each takes a VM (picked by the engine).
step_guest_reboot() { chaos_ready "$1" && guest_run "$1" /bin/busybox reboot; }
step_virsh_reboot() { chaos_ready "$1" && op reboot "$1"; }
step_pause_resume() {
	rnd 5
	op suspend "$1"
	sleep "$((1 + R))"
	op resume "$1"
}
step_destroy_start() { op destroy "$1" && op start "$1"; }
step_poweroff() { chaos_ready "$1" && guest_run "$1" /bin/busybox poweroff && WANT[$1]="shut off"; }
step_managedsave() { op managedsave "$1" && op start "$1"; }
step_make_pending() { chaos_pending "$1"; }
step_kill9() {
	rnd 30
	sleep "$((R / 10)).$((R % 10))"
	kill -KILL "$(agent_pid)" && e2e_wait 10 pid_gone "$(agent_pid)"
	rnd 5
	sleep "$R"
	agent_start
}
# step_kill9_reboot: a pending VM reboots and the agent dies during its
# cold boot: at a failpoint (between pause and destroy, between destroy
# and start, ...) or after a random delay.
step_kill9_reboot() {
	local d=$1 fp pid
	chaos_ready "$d" || return 0
	is_pending "$d" || chaos_pending "$d"
	rnd 6
	if ((R < 4)); then
		fp=$(sed -n "$((R + 1))p" <<<$'reboot-intent-written\nreboot-paused\nreboot-destroyed\nreboot-started')
		e2e_log "chaos:   agent crashes at failpoint $fp"
		fp_agent_start "$fp=crash"
		pid=$(agent_pid)
		guest_run "$d" /bin/busybox reboot
		e2e_wait 60 pid_gone "$pid" || fail "the agent did not crash at $fp (seed $CHAOS_SEED)"
		agent_stop # a failpoints build no more
	else
		rnd 40
		guest_run "$d" /bin/busybox reboot
		sleep "$((R / 10)).$((R % 10))"
		e2e_log "chaos:   agent killed $((R / 10)).$((R % 10)) s after the reboot"
		kill -KILL "$(agent_pid)"
		e2e_wait 10 pid_gone "$(agent_pid)"
	fi
	agent_start
}
step_libvirtd_restart() { libvirtd_restart; }
# step_observe: the policy goes to observe; a pending VM reboots and is
# left alone (the same QEMU); then back to apply.
step_observe() {
	local d=$1 id
	shipped_policy observe
	if chaos_ready "$d" && is_pending "$d"; then
		id=$(e2e_virsh domid "$d")
		guest_run "$d" /bin/busybox reboot
		sleep 5
		check "observe: $d not cold booted (domain id)" "$(e2e_virsh domid "$d")" "$id"
	fi
	shipped_policy apply
}
step_other_domain() {
	local o=${P}ch-other
	define_domain "$o" --vcpus 2
	eventually 30 "the agent rewrote $o" 2 defined_queues "$o"
	e2e_virsh undefine "$o" >/dev/null
}
# step_start_off: the operator starts the VMs that powered off.
step_start_off() {
	local d
	for d in "${VMS[@]}"; do
		if [[ ${WANT[$d]} == "shut off" ]]; then
			eventually 90 "$d off" "shut off" e2e_virsh domstate "$d"
			e2e_virsh start "$d" >/dev/null
			WANT[$d]=running
		fi
	done
}

CHAOS_STEPS_ALL=(guest_reboot virsh_reboot pause_resume destroy_start poweroff managedsave make_pending
	kill9 kill9_reboot libvirtd_restart observe other_domain)

# chaos_run SEED STEPS: the engine. Every step and the seed are printed.
chaos_run() {
	local seed=$1 steps=$2 i d s v rss0 gor0 rss1 gor1 pid0 t0=$SECONDS
	CHAOS_SEED=$seed CHAOS_RNG=$seed
	VMS=()
	mkdir -p "$RUN/chaos"
	for ((i = 1; i <= CHAOS_VMS; i++)); do VMS+=("$(chaos_vm "$i")"); done
	# shellcheck disable=SC2064 # the VMs of this run
	trap "set +e; kill -CONT \$(agent_pid) 2>/dev/null; pid_alive \$(agent_pid) || agent_start
		write_policy apply; kill -HUP \$(agent_pid) 2>/dev/null
		for d in ${VMS[*]} ${P}ch-other; do e2e_virsh destroy \$d >/dev/null 2>&1; e2e_virsh undefine --managed-save \$d >/dev/null 2>&1; done; true" EXIT
	e2e_log "chaos: seed $seed, $steps steps, ${#VMS[@]} VMs (replay: make chaos SEED=$seed STEPS=$steps)"
	# Every VM runs pending a cold boot: defined and started while no agent ran.
	agent_stop
	for d in "${VMS[@]}"; do
		chaos_define "$d" 2
		e2e_virsh start "$d" >/dev/null
		WANT[$d]=running
	done
	agent_start
	shipped_policy apply
	for d in "${VMS[@]}"; do eventually 30 "$d state" pending-cold-boot status_of "$d" .state; done
	chaos_settle
	pid0=$(agent_pid) rss0=$(agent_rss_mib) gor0=$(agent_metric go_goroutines)
	e2e_log "chaos: start: agent pid $pid0, RSS $rss0 MiB, $gor0 goroutines"
	for ((i = 1; i <= steps; i++)); do
		rnd "${#CHAOS_STEPS_ALL[@]}"
		s=${CHAOS_STEPS_ALL[R]}
		rnd "${#VMS[@]}"
		d=${VMS[R]}
		if [[ ${WANT[$d]} == "shut off" ]]; then s=start_off; fi
		e2e_log "chaos: step $i/$steps (seed $seed): $s $d"
		"step_$s" "$d" || fail "step $i $s $d failed (seed $seed)"
		sleep 1 # let what the step set off begin
		chaos_settle
		e2e_log "ok: chaos step $i/$steps: invariants hold"
	done
	step_start_off
	chaos_settle
	# The end: every VM gets its queues (a pending one at a guest reboot).
	for d in "${VMS[@]}"; do
		wait_for_agent "$d" 120
		if is_pending "$d"; then
			e2e_log "chaos: $d still pending: a guest reboot"
			guest_run "$d" /bin/busybox reboot
		fi
	done
	for d in "${VMS[@]}"; do
		v=$(vcpus_of "$d")
		eventually 150 "end: $d running queues" "$v" live_queues "$d"
		wait_for_agent "$d" 120
		eventually 90 "end: $d guest Combined current" "$v" guest_current "$d"
		eventually 60 "end: $d state" compliant status_of "$d" .state
	done
	chaos_settle
	[[ -z $(ls -A "$RUN/state/restart" 2>/dev/null) ]] || fail "restart intents left: $(ls "$RUN/state/restart")"
	rss1=$(agent_rss_mib) gor1=$(agent_metric go_goroutines)
	e2e_log "chaos: end: agent pid $(agent_pid)$([[ $(agent_pid) == "$pid0" ]] || echo " (restarted during the run; start pid $pid0)"), RSS $rss0 -> $rss1 MiB, goroutines $gor0 -> $gor1"
	awk -v a="$rss0" -v b="$rss1" 'BEGIN { exit !(b <= 2 * a + 8) }' || fail "agent RSS grew: $rss0 -> $rss1 MiB (seed $seed)"
	((gor1 <= gor0 + 10)) || fail "agent goroutines grew: $gor0 -> $gor1 (seed $seed)"
	e2e_log "ok: chaos: seed $seed, $steps steps, ${#VMS[@]} VMs: invariants held after every step; all VMs compliant; $((SECONDS - t0)) s"
}

# chaos: the short seeded run of make e2e; CHAOS_SEED / CHAOS_STEPS (make
# chaos SEED= STEPS=) for others.
chaos() {
	chaos_run "${CHAOS_SEED:-20261206}" "${CHAOS_STEPS:-5}"
}

# --- each crash point of the next-reboot path -------------------------------------

# next_reboot_failpoints: for each step boundary of the next-reboot path
# (agent/failpoint.go), a pending domain reboots under the failpoints build,
# which crashes (SIGKILL) there; the domain is then as the boundary says
# and the intent is on disk; the normal agent, started again, finishes the
# cold boot: the domain runs with its queues, never left off or paused.
next_reboot_failpoints() {
	local d=${P}fp fp id v st want
	fp_agent_build
	VMS=("$d")
	mkdir -p "$RUN/chaos"
	trap 'set +e; pid_alive "$(agent_pid)" || agent_start; e2e_virsh destroy '"$d"' >/dev/null 2>&1; e2e_virsh undefine '"$d"' >/dev/null 2>&1; true' EXIT
	shipped_policy apply
	define_domain "$d" --vcpus 2
	eventually 30 "$d rewritten" 2 defined_queues "$d"
	e2e_virsh start "$d" >/dev/null
	for fp in reboot-intent-written reboot-paused reboot-destroyed reboot-started; do
		chaos_pending "$d"
		v=$(vcpus_of "$d")
		wait_for_agent "$d" 120
		eventually 30 "$d state" pending-cold-boot status_of "$d" .state
		fp_agent_start "$fp=crash"
		id=$(e2e_virsh domid "$d")
		guest_run "$d" /bin/busybox reboot
		e2e_wait 60 pid_gone "$(agent_pid)" || fail "the agent did not crash at $fp"
		st=$(e2e_virsh domstate "$d")
		case $fp in
		reboot-intent-written) want=running ;; # the reboot went on: not paused
		reboot-paused) want=paused ;;
		reboot-destroyed) want="shut off" ;;
		reboot-started) want=running ;;
		esac
		check "$fp: $d at the crash" "$st" "$want"
		check "$fp: the restart intent on disk" "$(ls "$RUN/state/restart")" "$(e2e_virsh domuuid "$d").json"
		agent_stop
		agent_start
		if [[ $fp == reboot-intent-written ]]; then
			# never stopped: the intent is dropped, the next reboot applies it
			check "$fp: the same QEMU" "$(e2e_virsh domid "$d")" "$id"
			eventually 30 "$fp: $d still pending" pending-cold-boot status_of "$d" .state
			wait_for_agent "$d" 120
			guest_run "$d" /bin/busybox reboot
		fi
		eventually 120 "$fp: $d running queues after the restarted agent" "$v" live_queues "$d"
		eventually 30 "$fp: $d runs" running e2e_virsh domstate "$d" # "paused" while starting up
		eventually 60 "$fp: $d state" compliant status_of "$d" .state
		check "$fp: no intent left" "$(ls -A "$RUN/state/restart")" ""
	done
	wait_for_agent "$d" 120
	eventually 90 "$d guest Combined current" "$v" guest_current "$d"
}

# --- faults of the host ----------------------------------------------------------------

# never_paused DOMAIN SECONDS: DOMAIN is never seen paused for SECONDS.
never_paused() {
	local end=$((SECONDS + $2))
	while ((SECONDS < end)); do
		[[ $(e2e_virsh domstate "$1" 2>/dev/null) != paused ]] || fail "$1 was paused"
		sleep 0.2
	done
}

# host_faults: the agent's state folder (here the harness's $RUN/state) is
# a full tmpfs, then read-only: at a pending domain's reboot the intent
# cannot be written, so the domain is neither paused nor destroyed (the
# same QEMU reboots) and virtmq status says why; once writable, the next
# reboot cold boots it. Then libvirtd restarts while virtmq holds the
# domain paused at its reboot (the failpoints build stalls there): the
# agent reconnects and cold boots it; it never stays paused.
host_faults() {
	local d=${P}hf st=$RUN/state id v boot problem
	fp_agent_build
	mkdir -p "$RUN/chaos"
	trap 'set +e; umount "'"$st"'" 2>/dev/null; pid_alive "$(agent_pid)" || agent_start; e2e_virsh destroy '"$d"' >/dev/null 2>&1; e2e_virsh undefine '"$d"' >/dev/null 2>&1; true' EXIT
	shipped_policy apply
	define_domain "$d" --vcpus 2
	eventually 30 "$d rewritten" 2 defined_queues "$d"
	e2e_virsh start "$d" >/dev/null
	mkdir -p "$st"
	mount -t tmpfs -o size=16k,mode=0700 virtmq-e2e-state "$st"
	dd if=/dev/zero of="$st/fill" bs=4k 2>/dev/null || true
	for fault in full read-only; do
		if [[ $fault == read-only ]]; then
			rm -f "$st/fill"
			mount -o remount,ro "$st"
		fi
		is_pending "$d" || chaos_pending "$d"
		wait_for_agent "$d" 120
		id=$(e2e_virsh domid "$d")
		boot=$(guest_boot_id "$d")
		guest_run "$d" /bin/busybox reboot
		never_paused "$d" 8
		wait_for_reboot "$d" "$boot" 120
		check "$fault state folder: $d rebooted in the same QEMU (not destroyed)" "$(e2e_virsh domid "$d")" "$id"
		eventually 30 "$fault state folder: $d state" pending-cold-boot status_of "$d" .state
		problem=$(status_of "$d" .problem)
		check_match "$fault state folder: status says why" "$problem" \
			"apply_at: next-reboot cannot act: cannot write the restart intent in $st/restart \(($([[ $fault == full ]] && echo 'no space left on device' || echo 'read-only file system'))"
	done
	umount "$st"
	v=$(vcpus_of "$d")
	wait_for_agent "$d" 120
	guest_run "$d" /bin/busybox reboot
	eventually 120 "writable again: $d cold booted to" "$v" live_queues "$d"

	# libvirtd restarts while the agent holds the domain paused.
	chaos_pending "$d"
	v=$(vcpus_of "$d")
	wait_for_agent "$d" 120
	fp_agent_start "reboot-paused=sleep:8s"
	guest_run "$d" /bin/busybox reboot
	eventually 30 "$d paused by virtmq at its reboot" paused e2e_virsh domstate "$d"
	local t0=$SECONDS
	libvirtd_restart
	check "$d after libvirtd's restart" "$(e2e_virsh domstate "$d")" paused
	eventually 30 "$d no longer paused" running e2e_virsh domstate "$d"
	e2e_log "ok: paused for about $((SECONDS - t0)) s after libvirtd's restart"
	eventually 60 "$d running queues" "$v" live_queues "$d"
	eventually 60 "$d state" compliant status_of "$d" .state
	agent_stop
	agent_start
}
