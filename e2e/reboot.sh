# shellcheck shell=bash
# The apply_at: next-reboot scenarios of the e2e suite, sourced by run.sh:
# a running domain pending a cold boot gets its queues at its next guest reboot; a poweroff stays off; a killed agent
# finishes the job when it starts again.

# next_reboot_policy: the test policy with apply_at: next-reboot, in force.
next_reboot_policy() {
	write_policy apply next-reboot
	agent_reload
}

# pending_domain NAME: NAME runs with one queue while its definition (the
# agent's rewrite) has 4: defined and started while no agent ran.
pending_domain() {
	local d=$1
	agent_stop
	define_domain "$d"
	e2e_virsh start "$d" >/dev/null
	agent_start
	eventually 30 "agent rewrote $d: queues" 4 defined_queues "$d"
	eventually 30 "$d state" pending-cold-boot status_of "$d" .state
	check "$d running queues (none: one pair)" "$(live_queues "$d")" ""
	wait_for_agent "$d" 120
}

# came_back_cold NAME OLD_ID: NAME runs a new QEMU (a cold boot) with its
# definition's 4 queues, the guest at M=2, and virtmq verify passes.
came_back_cold() {
	local d=$1 old=$2 t0=$SECONDS
	eventually 120 "$d running queues after the reboot (a cold boot)" 4 live_queues "$d"
	[[ $(e2e_virsh domid "$d") != "$old" ]] || fail "$d has the same domain id: no cold boot"
	wait_for_agent "$d" 120
	eventually 90 "$d guest Combined current" 2 guest_current "$d"
	eventually 30 "$d state" compliant status_of "$d" .state
	"$BIN/virtmq" verify --policy "$POLICY" "$d" >"$RUN/verify.out" 2>&1 || { cat "$RUN/verify.out" >&2; fail "virtmq verify $d failed"; }
	e2e_log "ok: virtmq verify $d passes; back in $((SECONDS - t0))s"
	[[ -z $(ls -A "$RUN/state/restart" 2>/dev/null) ]] || fail "restart intents left: $(ls "$RUN/state/restart")"
}

# (a) a guest `reboot` of a pending domain brings it back with its queues.
next_reboot_guest() {
	local d=${P}nr-guest id
	next_reboot_policy
	pending_domain "$d"
	check_match "$d problem" "$(status_of "$d" .problem)" "applies at the guest's next reboot"
	id=$(e2e_virsh domid "$d")
	guest_run "$d" /bin/busybox reboot
	came_back_cold "$d" "$id"
	# Nothing left pending or armed: the next reboot is a plain one.
	id=$(e2e_virsh domid "$d")
	check "$d live on_reboot" "$(e2e_virsh dumpxml "$d" | xmllint --xpath 'string(/domain/on_reboot)' -)" restart
	local boot
	boot=$(guest_boot_id "$d")
	guest_run "$d" /bin/busybox reboot
	wait_for_reboot "$d" "$boot" 120
	check "$d domain id after a plain reboot (same QEMU)" "$(e2e_virsh domid "$d")" "$id"
	e2e_virsh destroy "$d" >/dev/null
	e2e_virsh undefine "$d" >/dev/null
}

# (b) the same with `virsh reboot` (through qemu-ga).
next_reboot_virsh() {
	local d=${P}nr-virsh id
	next_reboot_policy
	pending_domain "$d"
	id=$(e2e_virsh domid "$d")
	e2e_virsh reboot "$d" >/dev/null
	came_back_cold "$d" "$id"
	e2e_virsh destroy "$d" >/dev/null
	e2e_virsh undefine "$d" >/dev/null
}

# (c) a pending domain powered off from inside the guest, and one shut down
# with `virsh shutdown`, stay off.
next_reboot_poweroff() {
	local d1=${P}nr-off1 d2=${P}nr-off2 d
	next_reboot_policy
	pending_domain "$d1"
	pending_domain "$d2"
	guest_run "$d1" /bin/busybox poweroff
	e2e_virsh shutdown "$d2" >/dev/null
	for d in "$d1" "$d2"; do
		eventually 90 "$d state after poweroff" "shut off" e2e_virsh domstate "$d"
	done
	sleep 5
	for d in "$d1" "$d2"; do
		check "$d stays off" "$(e2e_virsh domstate "$d")" "shut off"
		check_match "$d agent state" "$(status_of "$d" .state)" "^(rewritten|compliant)$"
		e2e_virsh undefine "$d" >/dev/null
	done
}

# (d) the agent is killed (SIGKILL, from libvirt's release hook) right after
# a pending domain stopped for its reboot: the restarted agent starts it.
next_reboot_kill9() {
	local d=${P}nr-kill id pid
	next_reboot_policy
	pending_domain "$d"
	id=$(e2e_virsh domid "$d")
	pid=$(agent_pid)
	touch "${AGENT_PIDFILE%/*}/kill-agent-at-release.$d"
	guest_run "$d" /bin/busybox reboot
	e2e_wait 60 pid_gone "$pid" || fail "the agent was not killed at $d's release"
	e2e_log "ok: agent killed at $d's stop"
	check "$d after the agent died" "$(e2e_virsh domstate "$d")" "shut off"
	check "restart intent left for $d" "$(ls "$RUN/state/restart")" "$(e2e_virsh domuuid "$d").json"
	agent_start
	came_back_cold "$d" "$id"
	e2e_virsh destroy "$d" >/dev/null
	e2e_virsh undefine "$d" >/dev/null
}
