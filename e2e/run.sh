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
METRICS_LISTEN=${METRICS_LISTEN:-} # the agent's metrics endpoint; main picks a free port
P=${VIRTMQ_E2E_PREFIX}
T0=$SECONDS
PASSED=() FAILED=()

# shellcheck source=e2e/fixtures.sh
source "$E2E_DIR/fixtures.sh"

on_exit() {
	local rc=$?
	prometheus_stop
	host2_stop
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

# shellcheck source=e2e/check.sh
source "$E2E_DIR/check.sh"

# eventually TIMEOUT DESC WANT CMD...: until CMD prints WANT.
eventually() {
	local limit=$1 desc=$2 want=$3 got='' end=$((SECONDS + $1))
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

guest_current() { ethtool_combined "$1" | awk '{ print $2 }'; }
qmp_vqs() {
	qmp "$1" '{"execute":"x-query-virtio-status","arguments":{"path":"/machine/peripheral/net0/virtio-backend"}}' |
		jq -r '.return["num-vqs"]'
}
qmp_mq() {
	qmp "$1" '{"execute":"x-query-virtio-status","arguments":{"path":"/machine/peripheral/net0/virtio-backend"}}' |
		jq -r '[.return["guest-features"]["dev-features"][]? | select(startswith("VIRTIO_NET_F_MQ"))] | length > 0'
}
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
# apply lets it start and the agent reports it.
enforce_audit() {
	local d=${P}transient out
	write_policy enforce
	if out=$(domain_xml "$d" | e2e_virsh create /dev/stdin 2>&1); then
		e2e_virsh destroy "$d" >/dev/null 2>&1 || true
		fail "enforce mode let a non-compliant transient domain start"
	fi
	check_match "enforce refusal message" "$out" "virtmq: domain \"$d\" NIC $(guest_mac "$d") has queues=1, policy wants 4"
	write_policy apply
	domain_xml "$d" | e2e_virsh create /dev/stdin >/dev/null
	eventually 30 "agent reports the transient domain" transient status_of "$d" .state
	e2e_virsh destroy "$d" >/dev/null
}

# 5. define and start at once, before the agent can rewrite (the agent is
# frozen with SIGSTOP to make the race certain): pending cold boot, then
# compliant after shutdown + start.
race() {
	local d=${P}race out
	kill -STOP "$(agent_pid)"
	define_domain "$d"
	e2e_virsh start "$d" >/dev/null
	kill -CONT "$(agent_pid)"
	eventually 30 "definition rewritten after the start" 4 defined_queues "$d"
	check "running XML still has the old count" "$(live_queues "$d")" ""
	eventually 30 "agent state" pending-cold-boot status_of "$d" .state
	out=$("$BIN/virtmq" verify --json --policy "$POLICY" "$d" 2>/dev/null) && fail "virtmq verify passed on a domain running with 1 queue"
	check "verify: the running count is the failed check" "$(verify_checks "$out" running-queues)" "FAIL 1/4"
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

# 8. kill -9 the agent in the middle of redefining a batch of domains, several
# times, and restart it: every definition, libvirt's and the file libvirtd
# loads at its next start, passes virt-xml-validate and is byte for byte the
# old or the new one; the restarted agent converges, and a libvirtd restart
# loads every rewritten definition. The batch: the agent is frozen while K
# domains are (re)defined without queues, thawed, and killed as soon as
# libvirt reports (virsh event) a random 1..K/2 of them redefined.
kill9_redefine() {
	local k=${VIRTMQ_E2E_KILL9_DOMAINS:-12} tries=${VIRTMQ_E2E_KILL9_TRIES:-3} dir=$RUN/kill9
	local t i d pid target got rewritten q ev evpid mid=0 names=()
	rm -rf "$dir" && mkdir -p "$dir"
	for ((i = 1; i <= k; i++)); do names+=("${P}k9-$(printf %02d "$i")"); done
	# on failure: leave a running agent for the next scenario
	trap 'kill -CONT "$(agent_pid)" 2>/dev/null || true; pid_alive "$(agent_pid)" || agent_start' EXIT
	validate() { virt-xml-validate "$1" domain >"$dir/validate.out" 2>&1 || { cat "$dir/validate.out" >&2; return 1; }; }
	queues_in() { xml_queues "$1"; }
	# shellcheck disable=SC2317 # called through eventually
	status_count() { # k9 domains the agent reports compliant/rewritten with 4 defined queues
		status_json | jq --arg p "${P}k9-" '[.domains[] |
			select((.name | startswith($p)) and (.state == "rewritten" or .state == "compliant") and .nics[0].defined_queues == 4)] | length'
	}
	for ((t = 1; t <= tries; t++)); do
		pid=$(agent_pid)
		kill -STOP "$pid"
		for d in "${names[@]}"; do
			define_domain "$d" --vcpus 4 # the old definition: no <driver queues>
			e2e_virsh dumpxml --inactive "$d" >"$dir/$d.old"
			[[ -z $(queues_in "$dir/$d.old") ]] || fail "$d: defined with queues while the agent is frozen"
		done
		target=$((1 + RANDOM % (k / 2)))
		# libvirt's own account of each redefine, as it happens (the agent
		# redefines tens per second: no polling)
		exec {ev}< <(exec timeout 30 virsh -q -c "$VIRTMQ_E2E_URI" event --loop --event lifecycle)
		evpid=$!
		sleep 0.3 # registered before the agent runs
		kill -CONT "$pid"
		got=$(grep -c -m "$target" "for domain '${P}k9-[0-9]*': Defined Updated" <&"$ev") || true
		kill -KILL "$pid"
		kill "$evpid" 2>/dev/null || true
		exec {ev}<&-
		[[ $got == "$target" ]] || fail "try $t: the agent redefined $got domains in 30 s, want $target"
		e2e_wait 10 pid_gone "$pid" || fail "kill -9 did not end the agent"
		rewritten=0
		for d in "${names[@]}"; do
			e2e_virsh dumpxml --inactive "$d" >"$dir/$d.kill" || fail "$d: dumpxml --inactive failed after kill -9"
			validate "$dir/$d.kill" || fail "$d: the definition after kill -9 does not parse or validate"
			validate "/etc/libvirt/qemu/$d.xml" || fail "$d: /etc/libvirt/qemu/$d.xml (what libvirtd loads) does not validate"
			q=$(queues_in "$dir/$d.kill")
			case $q in
			'') ;;
			4) rewritten=$((rewritten + 1)) ;;
			*) fail "$d: queues '$q' after kill -9, want none (old) or 4 (new)" ;;
			esac
		done
		if compgen -G "/etc/libvirt/qemu/${P}k9-*.new" >/dev/null; then
			fail "libvirt left temporary definition files: $(echo /etc/libvirt/qemu/"${P}"k9-*.new)"
		fi
		((rewritten > 0 && rewritten < k)) && mid=$((mid + 1))
		e2e_log "ok: try $t: agent killed after libvirt reported $target redefines: $rewritten of $k definitions new, the others old; all validate"
		agent_start
		eventually 30 "try $t: domains the restarted agent reports with 4 queues" "$k" status_count
		for d in "${names[@]}"; do
			e2e_virsh dumpxml --inactive "$d" >"$dir/$d.new"
			[[ $(queues_in "$dir/$d.new") == 4 ]] || fail "$d: the agent reports 4 queues, libvirt has '$(queues_in "$dir/$d.new")'"
			cmp -s "$dir/$d.kill" "$dir/$d.old" || cmp -s "$dir/$d.kill" "$dir/$d.new" ||
				fail "$d: the definition after kill -9 is neither the old nor the new one: diff $dir/$d.kill $dir/$d.{old,new}"
		done
		e2e_log "ok: try $t: every definition after kill -9 was byte for byte the old or the new one"
	done
	((mid > 0)) || fail "no try killed the agent with part of the batch redefined (all $tries tries: none or all)"
	e2e_log "ok: $mid of $tries tries killed the agent in the middle of the batch"
	libvirtd_restart
	check "definitions with queues 4 after libvirtd reloaded them from disk" \
		"$(for d in "${names[@]}"; do defined_queues "$d" || true; echo; done | grep -c '^4$')" "$k"
	for d in "${names[@]}"; do e2e_virsh undefine "$d" >/dev/null; done
}

# 9. libvirtd stops for VIRTMQ_E2E_OUTAGE seconds (default 60) while domains
# are defined: the agent is frozen (SIGSTOP) while two domains are defined,
# libvirtd stops, the agent is thawed and sees the disconnect. A running
# domain's QEMU keeps running without libvirtd (libvirtd_stop is a SIGTERM:
# libvirtd leaves domains running and reconnects to them at its next start).
# When libvirtd returns, the agent reconnects, its resync rewrites the two
# domains and does the running domain's guest step, and new defines work.
libvirtd_outage() {
	local outage=${VIRTMQ_E2E_OUTAGE:-60} dr=${P}out-run da=${P}out-a db=${P}out-b dc=${P}out-c
	local hooks qpid pid rc0
	hooks=$(cat "$VIRTMQ_E2E_STATE/libvirtd.hooks")
	trap 'kill -CONT "$(agent_pid)" 2>/dev/null || true; libvirt_ok || libvirtd_start "'"$hooks"'"' EXIT
	define_domain "$dr" --vcpus 2
	eventually 30 "agent rewrote $dr before the outage" 2 defined_queues "$dr"
	e2e_virsh start "$dr" >/dev/null
	qpid=$(cat "/run/libvirt/qemu/$dr.pid")
	rc0=$(status_json | jq .libvirt.reconnects)
	pid=$(agent_pid)
	kill -STOP "$pid"
	define_domain "$da"
	define_domain "$db" --vcpus 2
	check "$da while the agent is frozen: queues" "$(defined_queues "$da")" ""
	libvirtd_stop
	libvirt_ok && fail "libvirtd still answers after libvirtd_stop"
	kill -CONT "$pid"
	eventually 30 "agent status: libvirt connected" false \
		bash -c "'$BIN/virtmq' status --json --status-socket '$STATUS_SOCK' | jq .libvirt.connected"
	e2e_log "libvirtd down; waiting ${outage}s"
	sleep "$outage"
	pid_alive "$qpid" || fail "the QEMU of $dr (pid $qpid) did not survive libvirtd's stop"
	e2e_log "ok: the QEMU of $dr kept running without libvirtd"
	libvirtd_start "$hooks"
	eventually 60 "agent reconnected (connected, reconnects > $rc0)" true \
		bash -c "'$BIN/virtmq' status --json --status-socket '$STATUS_SOCK' | jq '.libvirt.connected and .libvirt.reconnects > $rc0'"
	eventually 30 "resync rewrote $da, defined before the outage" 4 defined_queues "$da"
	eventually 30 "resync rewrote $db, defined before the outage" 2 defined_queues "$db"
	check "$dr after the outage: state" "$(e2e_virsh domstate "$dr")" running
	check "$dr after the outage: same QEMU" "$(cat "/run/libvirt/qemu/$dr.pid")" "$qpid"
	define_domain "$dc"
	eventually 30 "agent rewrote $dc, defined after the outage" 4 defined_queues "$dc"
	eventually 120 "guest step of $dr after the outage (step, guest current)" "done 2" \
		status_of "$dr" '.nics[0] | "\(.guest_step) \(.guest_current)"'
	check "agent status: reconnects >= 1" \
		"$(status_json | jq '.libvirt.reconnects >= 1')" true
	e2e_virsh destroy "$dr" >/dev/null
	for d in "$dr" "$da" "$db" "$dc"; do e2e_virsh undefine "$d" >/dev/null; done
}

# 10. console passwords survive every redefine: libvirt leaves <graphics
# passwd> out of any XML read without VIR_DOMAIN_XML_SECURE, so a redefine
# from such XML deletes it. Domains with VNC and SPICE passwords are
# rewritten by the agent and by "virtmq apply"; the definition read with
# --security-info must be byte for byte the one before, plus the queues.
passwords() {
	local d da=${P}pw-apply dir=$RUN/passwords pid gfx
	gfx="<graphics type='vnc' autoport='yes' passwd='s3cretvn' passwdValidTo='2099-01-01T00:00:00'/>"
	gfx+="<graphics type='spice' autoport='yes' passwd='sp1ceSecret'/>"
	mkdir -p "$dir"
	pid=$(agent_pid)
	kill -STOP "$pid"
	trap 'kill -CONT "$(agent_pid)" 2>/dev/null || true' EXIT
	for d in "${P}pw-agent" "$da"; do
		define_domain "$d" --devices-xml "$gfx"
		e2e_virsh dumpxml --inactive --security-info "$d" >"$dir/$d.before"
		check "$d defined with both passwords" "$(grep -c "passwd='s3cretvn'\|passwd='sp1ceSecret'" "$dir/$d.before")" 2
	done
	"$BIN/virtmq" apply --policy "$POLICY" "$da" >"$dir/apply.out" 2>&1 || { cat "$dir/apply.out" >&2; fail "virtmq apply $da failed"; }
	grep -q "s3cretvn\|sp1ceSecret" "$dir/apply.out" && fail "virtmq apply printed a console password"
	e2e_log "ok: virtmq apply printed no password"
	kill -CONT "$pid"
	eventually 30 "agent rewrote ${P}pw-agent: queues" 4 defined_queues "${P}pw-agent"
	for d in "${P}pw-agent" "$da"; do
		e2e_virsh dumpxml --inactive --security-info "$d" >"$dir/$d.after"
		check "$d queues after the rewrite" "$(grep -c "<driver queues='4'/>" "$dir/$d.after")" 1
		check "$d virtmq's record" "$(grep -c '<virtmq:nic mac=".*" queues="4"/>' "$dir/$d.after")" 1
		diff <(grep -v "<driver queues='4'/>" "$dir/$d.after" | sed '/^  <metadata>$/,/^  <\/metadata>$/d') "$dir/$d.before" >&2 ||
			fail "$d: the definition read with --security-info changed beyond <driver queues> and virtmq's record (diff above)"
		e2e_log "ok: $d: byte for byte the old definition plus <driver queues='4'/> and the record: both passwords kept"
		e2e_virsh undefine "$d" >/dev/null
	done
	grep -q "s3cretvn\|sp1ceSecret" "$AGENT_LOG" && fail "the agent logged a console password"
	e2e_log "ok: the agent logged no password"
}

# 11. a libvirt that answers slowly: with /dev/kvm back at a fresh machine's
# 0600 root:root, libvirt probes QEMU again on every call that needs its
# capabilities and a define takes about 50 s, far over the agent's call
# timeout (10 s). virtmq verify names the host problem; the agent shows the
# domain as retrying, and converges once libvirt is fast again.
slow_libvirt() {
	local dr=${P}slow-run dd=${P}slow-def out pid
	boot_rewritten "$dr" --vcpus 2
	pid=$(agent_pid)
	trap 'chgrp kvm /dev/kvm; chmod 0660 /dev/kvm; kill -CONT "$(agent_pid)" 2>/dev/null || true' EXIT
	kill -STOP "$pid"
	define_domain "$dd" # while libvirt is fast: the agent sees it once thawed
	chgrp root /dev/kvm
	chmod 0600 /dev/kvm
	out=$("$BIN/virtmq" verify --json --policy "$POLICY" "$dr" 2>/dev/null) && fail "virtmq verify passed on a host where libvirt is slow"
	check "virtmq verify fails host-kvm" "$(verify_checks "$out" host-kvm)" FAIL
	check_match "host-kvm names the device and the user" "$(jq -r '.checks[] | select(.check == "host-kvm") | .message' <<<"$out")" "/dev/kvm is crw------- root:root and libvirt's QEMU user libvirt-qemu cannot open it"
	check_match "virtmq verify fails host-libvirt: a capabilities call over 1000 ms" "$(verify_checks "$out" host-libvirt)" '^FAIL [0-9]+/1000$'
	kill -CONT "$pid"
	eventually 90 "agent status of $dd while libvirt is slow" retrying status_of "$dd" .state
	e2e_log "agent: $dd: $(status_of "$dd" .problem)"
	chgrp kvm /dev/kvm
	chmod 0660 /dev/kvm
	eventually 180 "agent rewrote $dd once libvirt is fast again: queues" 4 defined_queues "$dd"
	eventually 60 "agent status of $dd" rewritten status_of "$dd" .state
	"$BIN/virtmq" verify --policy "$POLICY" "$dr" >"$RUN/verify.out" 2>&1 || { cat "$RUN/verify.out" >&2; fail "virtmq verify $dr failed once libvirt is fast"; }
	e2e_log "ok: virtmq verify $dr passes once libvirt is fast"
	e2e_virsh destroy "$dr" >/dev/null
	for d in "$dr" "$dd"; do e2e_virsh undefine "$d" >/dev/null; done
}

# 12. a real Prometheus server scrapes the agent while a domain waits for a
# cold boot (made as in race): its HTTP API returns the domain with its
# state, since when, the NIC's queue counts by source, and the shipped
# recording rules' fleet total.
prometheus_view() {
	local d=${P}prom uuid mac q
	prometheus_start "$METRICS_LISTEN" "$REPO/packaging/monitoring/virtmq-rules.yml"
	eventually 30 "Prometheus scrapes the agent: up" 1 prom_query 'up{job="virtmq-agent"}' '.data.result[0].value[1]'
	kill -STOP "$(agent_pid)"
	define_domain "$d"
	e2e_virsh start "$d" >/dev/null
	kill -CONT "$(agent_pid)"
	eventually 30 "agent state" pending-cold-boot status_of "$d" .state
	uuid=$(status_of "$d" .uuid)
	mac=$(status_of "$d" '.nics[0].mac')
	q="virtmq_domain_state{job=\"virtmq-agent\",domain=\"$d\",state=\"pending-cold-boot\"}"
	eventually 30 "Prometheus: $q" "$uuid 1" prom_query "$q" '.data.result[] | "\(.metric.uuid) \(.value[1])"'
	check "Prometheus: the states $d is in" \
		"$(prom_query "virtmq_domain_state{domain=\"$d\"} == 1" '[.data.result[].metric.state] | join(",")')" pending-cold-boot
	check "Prometheus: $d pending for less than 10 minutes" \
		"$(prom_query "time() - virtmq_domain_state_since_timestamp_seconds{domain=\"$d\",state=\"pending-cold-boot\"} < 600" '.data.result | length')" 1
	check "Prometheus: queues of $d by source" \
		"$(prom_query "virtmq_interface_queues{domain=\"$d\"}" '[.data.result[] | "\(.metric.mac_address) \(.metric.source)=\(.value[1])"] | sort | join(" ")')" \
		"$mac defined=4 $mac running=1 $mac wanted=4"
	eventually 30 "Prometheus: the recording rule job_state:virtmq_domains:sum counts it" 1 \
		prom_query 'job_state:virtmq_domains:sum{state="pending-cold-boot"} >= 1' '.data.result | length'
	e2e_virsh destroy "$d" >/dev/null
	prometheus_stop
}

# e. a rolling cold boot of three pending domains, two at a time, graceful
# (no --force): each guest's acpid powers it off at the ACPI power button;
# all come back compliant, none is left off.
cold_boot_rolling() {
	local d ds=("${P}roll1" "${P}roll2" "${P}roll3") out rc=0
	kill -STOP "$(agent_pid)"
	for d in "${ds[@]}"; do
		define_domain "$d" --vcpus 2
		e2e_virsh start "$d" >/dev/null
	done
	kill -CONT "$(agent_pid)"
	for d in "${ds[@]}"; do
		eventually 30 "agent state of $d" pending-cold-boot status_of "$d" .state
	done
	for d in "${ds[@]}"; do wait_for_agent "$d" 120; done
	out=$("$BIN/virtmq" apply --cold-boot --dry-run --policy "$POLICY" --all 2>&1)
	check_match "dry run lists ${P}roll1" "$out" "${P}roll1: would restart: .* runs 1, wants 2"
	"$BIN/virtmq" apply --cold-boot --parallel 2 --shutdown-timeout 60s --boot-timeout 4m \
		--policy "$POLICY" --status-socket "$STATUS_SOCK" "${P}roll*" >"$RUN/coldboot.out" 2>&1 || rc=$?
	cat "$RUN/coldboot.out" >&2
	check "apply --cold-boot exit code" "$rc" 0
	[[ $(cat "$RUN/coldboot.out") != *"forcing it off"* ]] || fail "a domain was forced off"
	for d in "${ds[@]}"; do
		check "$d powered off by its power button" "$(grep -c 'ACPI power button -> poweroff' "$(console_log "$d")")" 1
		check "$d running" "$(e2e_virsh domstate "$d")" running
		check "$d running queues" "$(live_queues "$d")" 2
		check "$d agent state" "$(status_of "$d" .state)" compliant
	done
	for d in "${ds[@]}"; do
		e2e_virsh destroy "$d" >/dev/null
		e2e_virsh undefine "$d" >/dev/null
	done
}

# f. NIC hot-plug: --live --config single-queue → the persistent copy is
# rewritten and the domain is pending; a NIC plugged --live with queues gets
# the guest step (DEVICE_ADDED is the only event libvirt sends).
hotplug_nic() {
	local d=${P}hotnic m2=52:54:00:77:00:02 m3=52:54:00:77:00:03
	boot_rewritten "$d" --vcpus 2
	eventually 30 "agent state before" compliant status_of "$d" .state
	e2e_virsh attach-interface "$d" bridge "$VIRTMQ_E2E_BRIDGE" --model virtio --mac "$m2" --live --config >/dev/null
	eventually 30 "persistent copy of the plugged NIC rewritten: queues" 2 \
		bash -c "virsh -q -c '$VIRTMQ_E2E_URI' dumpxml --inactive '$d' | xmllint --xpath 'string(/domain/devices/interface[mac/@address=\"$m2\"]/driver/@queues)' -"
	eventually 30 "agent state after a single-queue plug" pending-cold-boot status_of "$d" .state
	e2e_virsh attach-device "$d" /dev/stdin --live >/dev/null <<-XML
		<interface type='bridge'><source bridge='$VIRTMQ_E2E_BRIDGE'/><mac address='$m3'/><model type='virtio'/><driver queues='2'/></interface>
	XML
	eventually 90 "guest step on the NIC plugged with queues" 'done' status_of "$d" ".nics[] | select(.mac == \"$m3\") | .guest_step"
	check "its guest combined" "$(status_of "$d" ".nics[] | select(.mac == \"$m3\") | .guest_current")" 2
	e2e_virsh destroy "$d" >/dev/null
	e2e_virsh undefine "$d" >/dev/null
}

# g. vCPU hot-plug 2 → 4 with combined: vcpus: no event; the agent's live
# vCPU check (every 15 s) runs the guest step again and Combined follows.
hotplug_vcpu() {
	local d=${P}hotcpu
	cat >"$POLICY" <<-YAML
		version: 1
		mode: apply
		on_error: allow
		defaults:
		  queues: vcpus
		  max: 8
		  combined: vcpus
	YAML
	kill -HUP "$(agent_pid)"
	trap 'write_policy apply; kill -HUP "$(agent_pid)"' EXIT
	boot_rewritten "$d" --vcpus 4 --current-vcpus 2
	eventually 90 "guest Combined with 2 vCPUs online" 2 guest_current "$d"
	e2e_virsh setvcpus "$d" 4 --live >/dev/null
	eventually 60 "guest Combined after setvcpus --live 4" 4 guest_current "$d"
	eventually 10 "agent status guest_wanted" 4 status_of "$d" '.nics[0].guest_wanted'
	e2e_virsh destroy "$d" >/dev/null
	e2e_virsh undefine "$d" >/dev/null
}

# agent_mode MODE: the suite's policy in MODE, the agent reloaded (SIGHUP).
agent_mode() {
	write_policy "$1"
	kill -HUP "$(agent_pid)"
	eventually 10 "agent policy mode" "$1" bash -c "'$BIN/virtmq' status --json --status-socket '$STATUS_SOCK' | jq -r .policy.mode"
}

# taints DOMAIN: the custom-ga-command (qemu-agent-command, so every
# guest-exec) and custom-monitor (QMP) taints in libvirt's log of DOMAIN.
taints() { grep -Eo 'tainted: custom-(ga-command|monitor)' "/var/log/libvirt/qemu/$1.log" 2>/dev/null | sort -u | tr '\n' ' ' || true; }

# qga_connected DOMAIN: libvirt sees qemu-ga's port open (read from the live
# XML: no guest agent command, no taint).
qga_connected() { e2e_virsh dumpxml "$1" | grep -q "name='org.qemu.guest_agent.0' state='connected'"; }

# 12. mode observe: a new user sees the plan in virtmq status without any VM
# changing: nothing is redefined, no guest agent command nor QMP reaches a
# booted domain (no taint in libvirt's log); then mode apply converges.
observe_mode() {
	local d=${P}obs b=${P}obsrun mac
	trap 'agent_mode apply >/dev/null 2>&1 || write_policy apply' EXIT
	agent_mode observe
	define_domain "$d" # 4 vCPUs, no queues: apply would redefine it
	rm -f "/var/log/libvirt/qemu/$b.log"
	define_domain "$b" --queues 4 --recorded # compliant definition virtmq wrote: apply would run the guest step (combined 2) and QMP
	e2e_virsh start "$b" >/dev/null
	eventually 30 "observe: $d state" would-redefine status_of "$d" .state
	check "observe: $d would" "$(status_of "$d" '.would | join(";")')" "redefine: $(guest_mac "$d") 1→4 queues"
	check "observe: $d definition untouched" "$(defined_queues "$d")" ""
	e2e_wait 120 qga_connected "$b" || fail "no qemu-ga port in $b after 120s; console: $(console_log "$b")"
	sleep 5 # the agent got the guest agent's connect event: what would it do?
	mac=$(guest_mac "$b")
	check "observe: $b would" "$(status_of "$b" '.would | join(";")')" "guest step: set combined 2 on $mac"
	check "observe: $b guest step, QMP" "$(status_of "$b" '[.nics[0].guest_step, .nics[0].qmp_virtqueues] | map(. // "-") | join(",")')" "-,-"
	check "observe: $b taints in libvirt's log (guest agent, QMP)" "$(taints "$b")" ""
	check "observe: $d definition still untouched" "$(defined_queues "$d")" ""

	agent_mode apply
	eventually 30 "apply: agent rewrote $d" 4 defined_queues "$d"
	eventually 30 "apply: $d state" rewritten status_of "$d" .state
	eventually 90 "apply: $b guest step" 'done' status_of "$b" '.nics[0].guest_step'
	eventually 30 "apply: $b taints (the agent's guest step and QMP)" "tainted: custom-ga-command tainted: custom-monitor " taints "$b"
	check "apply: $b would" "$(status_of "$b" '.would // [] | length')" 0
	check "apply: $b guest Combined current" "$(guest_current "$b")" 2
	e2e_virsh destroy "$b" >/dev/null
	for x in "$d" "$b"; do e2e_virsh undefine "$x" >/dev/null; done
}

# h. libvirt on another host, over ssh (qemu+ssh://): a private sshd on a
# loopback port with its own host key, root's login by an agent-held key,
# known_hosts in a temporary HOME. The remote dry run lists what the local
# one does; LIBVIRT_DEFAULT_URI is honoured; an unknown or changed host key
# is refused; a URI that does not connect fails instead of falling back to
# the local host; verify skips the host-local checks on a remote URI.
remote_ssh() {
	local d=${P}remote dir=$RUN/ssh port uri uri_re home out here rc sshd_pid mkrun='' k
	rm -rf "$dir"
	mkdir -p "$dir/home/.ssh" && chmod 0700 "$dir" "$dir/home" "$dir/home/.ssh"
	home=$dir/home
	[[ -x /usr/sbin/sshd ]] || fail "no /usr/sbin/sshd: run e2e/setup.sh (openssh-server)"
	port=$(free_port) || fail "no free port for sshd"
	uri="qemu+ssh://root@127.0.0.1:$port/system"
	uri_re=${uri//[.+?]/\\&}
	for k in host_key other_host_key client_key; do ssh-keygen -q -t ed25519 -N '' -C "virtmq-e2e $k" -f "$dir/$k"; done
	cp "$dir/client_key.pub" "$dir/authorized_keys"
	cat >"$dir/sshd_config" <<-EOF
		ListenAddress 127.0.0.1:$port
		HostKey $dir/host_key
		AuthorizedKeysFile $dir/authorized_keys
		PermitRootLogin prohibit-password
		PubkeyAuthentication yes
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		UsePAM no
		StrictModes no
		AllowStreamLocalForwarding yes
		PidFile none
		LogLevel VERBOSE
	EOF
	# sshd wants its privilege separation folder (openssh-server's
	# tmpfiles.d makes it at boot): make it when missing, remove it after.
	[[ -d /run/sshd ]] || { mkdir -m 0755 /run/sshd && mkrun=1; }
	/usr/sbin/sshd -D -e -f "$dir/sshd_config" 2>"$dir/sshd.log" &
	sshd_pid=$!
	eval "$(ssh-agent -s -a "$dir/agent.sock")" >/dev/null
	# shellcheck disable=SC2064 # expand now: the pids of this run
	trap "kill -CONT \$(agent_pid) 2>/dev/null || true; kill $sshd_pid 2>/dev/null || true; kill $SSH_AGENT_PID 2>/dev/null || true
		[[ -z '$mkrun' ]] || rmdir /run/sshd 2>/dev/null || true
		e2e_virsh destroy '$d' >/dev/null 2>&1 || true; e2e_virsh undefine '$d' >/dev/null 2>&1 || true" EXIT
	ssh-add -q "$dir/client_key" 2>/dev/null
	e2e_wait 10 bash -c "ss -Hltn 'sport = :$port' | grep -q ." || { cat "$dir/sshd.log" >&2; fail "sshd did not listen on 127.0.0.1:$port"; }
	echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/host_key.pub")" >"$home/.ssh/known_hosts"
	# The CLI as a remote admin runs it: HOME's known_hosts, the agent's key
	# (no key file in HOME), the harness's LIBVIRT_DEFAULT_URI unset.
	remote() { env -u LIBVIRT_DEFAULT_URI HOME="$home" SSH_AUTH_SOCK="$dir/agent.sock" "$@"; }

	# A domain the agent has not rewritten yet (frozen): a change to report.
	kill -STOP "$(agent_pid)"
	define_domain "$d" --vcpus 2
	here=$(remote "$BIN/virtmq" apply --dry-run --policy "$POLICY" --all 2>&1) || fail "local dry run: $here"
	out=$(remote "$BIN/virtmq" apply -c "$uri" --dry-run --policy "$POLICY" --all 2>&1) ||
		{ cat "$dir/sshd.log" >&2; fail "apply -c $uri --dry-run --all: $out"; }
	check_match "remote dry run lists $d" "$out" "$d \(shut off\):"
	check_match "remote dry run: $d would be redefined" "$out" "queues 1 -> 2"
	check "remote dry run = local dry run (the same libvirtd)" "$out" "$here"
	out=$(remote env LIBVIRT_DEFAULT_URI="$uri" "$BIN/virtmq" apply --dry-run --policy "$POLICY" --all 2>&1) ||
		fail "LIBVIRT_DEFAULT_URI=$uri apply --dry-run --all: $out"
	check "LIBVIRT_DEFAULT_URI=qemu+ssh dry run = local dry run" "$out" "$here"
	rc=0
	remote "$BIN/virtmq" apply -c "$uri" --dry-run --detailed-exitcode --policy "$POLICY" "$d" >/dev/null 2>&1 || rc=$?
	check "apply --dry-run --detailed-exitcode with a change: exit" "$rc" 2
	kill -CONT "$(agent_pid)"
	eventually 30 "agent rewrote $d" 2 defined_queues "$d"
	rc=0
	remote "$BIN/virtmq" apply -c "$uri" --dry-run --detailed-exitcode --policy "$POLICY" "$d" >/dev/null 2>&1 || rc=$?
	check "apply --dry-run --detailed-exitcode, compliant: exit" "$rc" 0

	# Refusals: never another host, never an unchecked key.
	rc=0
	out=$(env LIBVIRT_DEFAULT_URI='qemu+unix:///system?socket=/nonexistent' "$BIN/virtmq" apply --dry-run --policy "$POLICY" --all 2>&1) || rc=$?
	check "LIBVIRT_DEFAULT_URI to a missing socket: exit" "$rc" 1
	check_match "LIBVIRT_DEFAULT_URI to a missing socket: error" "$out" "connect to libvirt at qemu\+unix:///system\?socket=/nonexistent \(from \\\$LIBVIRT_DEFAULT_URI\)"
	[[ $out != *"$d"* ]] || fail "LIBVIRT_DEFAULT_URI to a missing socket listed local domains: $out"
	echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/other_host_key.pub")" >"$home/.ssh/known_hosts"
	rc=0
	out=$(remote "$BIN/virtmq" apply -c "$uri" --dry-run --policy "$POLICY" --all 2>&1) || rc=$?
	check "changed host key: exit" "$rc" 1
	check_match "changed host key: refused" "$out" "ssh host key not trusted: \[127.0.0.1\]:$port offered ssh-ed25519 key SHA256:.* the host key changed"
	: >"$home/.ssh/known_hosts"
	rc=0
	out=$(remote "$BIN/virtmq" apply -c "$uri" --dry-run --policy "$POLICY" --all 2>&1) || rc=$?
	check "unknown host: exit" "$rc" 1
	check_match "unknown host: refused" "$out" "ssh host key not trusted: \[127.0.0.1\]:$port is not in"
	echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/host_key.pub")" >"$home/.ssh/known_hosts"

	# verify through ssh: libvirt-side checks run, host-local ones SKIP.
	e2e_virsh start "$d" >/dev/null
	wait_for_agent "$d" 120
	eventually 90 "guest Combined current" 2 guest_current "$d"
	out=$(remote "$BIN/virtmq" verify --json -c "$uri" --policy "$POLICY" "$d" 2>/dev/null) || fail "verify -c $uri $d: $out"
	check "remote verify: QMP checked" "$(verify_checks "$out" qmp-virtqueues)" "OK 2/2"
	check "remote verify: guest checked" "$(verify_checks "$out" guest-combined)" "OK 2/2"
	check "remote verify: tap skipped" "$(verify_checks "$out" tap-queues)" SKIP
	check_match "remote verify: the skip names the remote host" "$(jq -r '.checks[] | select(.check == "tap-queues") | .message' <<<"$out")" "remote host \(${uri_re}\)"
	check "remote verify: /dev/kvm skipped" "$(verify_checks "$out" host-kvm)" SKIP
	check "remote verify: vhost skipped" "$(verify_checks "$out" vhost-workers)" SKIP
}

# Decisions that would break a start or undo a person. Each
# domain has the harness's bridge NIC (the agent rewrites it: it did decide)
# beside the NIC it must leave alone; none needs to start.

# nic_queues DOMAIN MAC: the definition's <driver queues> of that NIC.
nic_queues() {
	e2e_virsh dumpxml --inactive "$1" | xmllint --xpath "string(/domain/devices/interface[mac/@address=\"$2\"]/driver/@queues)" -
}
nic_status() { status_of "$1" ".nics[] | select(.mac == \"$2\") | $3"; }

# h. a type network NIC on a hostdev pool (<forward mode='hostdev'>, a VF
# pool on a PF that does not exist: libvirt defines it, never starts it):
# the agent reads the network through libvirt and gives the NIC no queues,
# and so does virtmq apply.
hostdev_network() {
	local d=${P}hostdev net=${P}hostdev m=52:54:00:77:01:01
	# shellcheck disable=SC2064 # $net now: the trap runs after the function
	trap "e2e_virsh net-undefine '$net' >/dev/null 2>&1 || true" EXIT
	e2e_virsh net-undefine "$net" >/dev/null 2>&1 || true
	e2e_virsh net-define /dev/stdin >/dev/null <<-XML
		<network><name>$net</name><forward mode='hostdev' managed='yes'><pf dev='eth-nonexistent'/></forward></network>
	XML
	define_domain "$d" --devices-xml "<interface type='network'><source network='$net'/><mac address='$m'/><model type='virtio'/></interface>"
	eventually 30 "the bridge NIC rewritten" 4 defined_queues "$d"
	check "hostdev-pool NIC queues" "$(nic_queues "$d" "$m")" ""
	check "hostdev-pool NIC managed" "$(nic_status "$d" "$m" .managed)" false
	check_match "status says why" "$(nic_status "$d" "$m" .reason)" "network $net is a hostdev pool"
	check "status: not managed" "$(nic_status "$d" "$m" .managed)" false
	# virtmq apply reads the network through libvirt too: it finds the
	# definition the agent wrote compliant and leaves the VF alone.
	local rc=0
	"$BIN/virtmq" apply --detailed-exitcode --policy "$POLICY" "$d" >/dev/null 2>&1 || rc=$?
	check "virtmq apply: no definition change (exit 0)" "$rc" 0
	check "hostdev-pool NIC queues after virtmq apply" "$(nic_queues "$d" "$m")" ""
	e2e_virsh undefine "$d" >/dev/null
}

# i. a vhost-user NIC whose socket nobody serves: no queues (QEMU would
# refuse a start asking more than the backend has).
vhostuser_nobody() {
	local d=${P}vhu m=52:54:00:77:02:01
	define_domain "$d" --devices-xml "<interface type='vhostuser'><mac address='$m'/><source type='unix' path='/run/virtmq-e2e/nobody.sock' mode='client'/><model type='virtio'/></interface>"
	eventually 30 "the bridge NIC rewritten" 4 defined_queues "$d"
	check "vhost-user NIC queues" "$(nic_queues "$d" "$m")" ""
	check_match "status says why" "$(nic_status "$d" "$m" .reason)" "^vhost-user: QEMU refuses to start"
	e2e_virsh undefine "$d" >/dev/null
}

# j. queues='2' set by hand (no record of virtmq's): kept, status says so;
# the record virtmq writes survives libvirt's reformatting of <metadata>.
# (A hand-set queues='1' cannot be kept: libvirt 9.0 drops it at define,
# <driver queues='1'/> reads back as no <driver> at all; checked here.)
hand_set_kept() {
	local d=${P}fw d2=${P}rec mac
	define_domain "$d" --queues 1
	check_match "libvirt keeps no queues='1' (none, or the agent's 4 already)" "$(defined_queues "$d")" '^(4)?$'
	e2e_virsh undefine "$d" >/dev/null
	define_domain "$d" --queues 2
	mac=$(guest_mac "$d")
	eventually 30 "$d state" unmanaged status_of "$d" .state
	check "$d NIC kept" "$(nic_status "$d" "$mac" .kept)" true
	check "$d status" "$(nic_status "$d" "$mac" .reason)" "kept: set by hand (rule defaults says keep)"
	check "status: kept" "$(nic_status "$d" "$mac" .kept)" true
	check "status: the deciding rule" "$(nic_status "$d" "$mac" .rule)" defaults
	sleep 2
	check "$d definition still queues=2" "$(defined_queues "$d")" 2
	# Written by virtmq: libvirt keeps the record, and the agent reads it back
	# (compliant, not kept, and not redefined again).
	define_domain "$d2"
	eventually 30 "$d2 rewritten" 4 defined_queues "$d2"
	check "$d2 record after libvirt's reformatting" \
		"$(e2e_virsh dumpxml --inactive "$d2" | xmllint --xpath 'string(//*[local-name()="written"]/*[local-name()="nic"]/@queues)' -)" 4
	check "$d2 record names the NIC by MAC and rank" \
		"$(e2e_virsh dumpxml --inactive "$d2" | xmllint --xpath 'string(//*[local-name()="written"]/*[local-name()="nic"]/@nth)' -)" 1
	eventually 30 "$d2 state" rewritten status_of "$d2" .state
	check "$d2 NIC kept" "$(status_of "$d2" '.nics[0].kept // false')" false
	for x in "$d" "$d2"; do e2e_virsh undefine "$x" >/dev/null; done
}

# j2. Two NICs with one MAC, which libvirt accepts in a definition: the
# first set by hand, the second virtmq's. The record names the second by
# its rank, so when the domain drops from 8 vCPUs to 4 (its definition
# edited, record kept) the agent lowers the count it wrote and keeps the
# person's.
duplicate_mac() {
	local d=${P}twin mac xml
	mac=$(guest_mac "$d")
	define_domain "$d" --vcpus 8 --queues 2 --no-agent --devices-xml \
		"<interface type='bridge'><source bridge='$VIRTMQ_E2E_BRIDGE'/><mac address='$mac'/><model type='virtio'/></interface>"
	eventually 30 "$d second NIC rewritten" 8 second_nic_queues "$d"
	check "$d first NIC kept" "$(defined_queues "$d")" 2
	check "$d record names the second NIC" \
		"$(e2e_virsh dumpxml --inactive "$d" | xmllint --xpath 'string(//*[local-name()="written"]/*[local-name()="nic"][@nth="2"]/@queues)' -)" 8
	xml=$(e2e_virsh dumpxml --inactive --security-info "$d" | sed "s|>8</vcpu>|>4</vcpu>|")
	e2e_virsh define /dev/stdin <<<"$xml" >/dev/null
	eventually 30 "$d second NIC lowered with the vCPUs" 4 second_nic_queues "$d"
	check "$d first NIC still kept" "$(defined_queues "$d")" 2
	e2e_virsh undefine "$d" >/dev/null
}
second_nic_queues() { e2e_virsh dumpxml --inactive "$1" | xmllint --xpath 'string(/domain/devices/interface[2]/driver/@queues)' -; }

# k. virtmq exclude on a defined domain: the agent stops managing it (a
# later define without queues stays so); virtmq include: managed again.
exclude_include() {
	local d=${P}excl
	define_domain "$d"
	eventually 30 "$d rewritten" 4 defined_queues "$d"
	"$BIN/virtmq" exclude --connect-socket "$LIBVIRT_SOCK" "$d" >/dev/null
	eventually 30 "$d state" unmanaged status_of "$d" .state
	check_match "$d problem" "$(status_of "$d" .problem)" "^excluded by the domain's virtmq label"
	define_domain "$d" --metadata-xml "<virtmq:exclude xmlns:virtmq='https://virtmq.dev/xmlns/exclude/1'/>" # no queues, label kept
	sleep 3
	check "$d excluded: definition without queues left alone" "$(defined_queues "$d")" ""
	"$BIN/virtmq" include --connect-socket "$LIBVIRT_SOCK" "$d" >/dev/null
	eventually 30 "$d included: rewritten" 4 defined_queues "$d"
	eventually 30 "$d state" rewritten status_of "$d" .state
	e2e_virsh undefine "$d" >/dev/null
}

# The go-libvirt adapter's own test against this libvirtd: the replies the
# fake libvirt (virttest) mirrors are checked on the real daemon (secrets
# left out without the secure flag, capabilities, metadata events, error
# mapping).
libvirt_adapter() {
	(cd "$REPO" && VIRTMQ_TEST_LIBVIRT_SOCKET=$LIBVIRT_SOCK go test -count=1 -run '^TestRealLibvirt$' -v ./internal/virt) >"$RUN/adapter.out" 2>&1 ||
		{ cat "$RUN/adapter.out" >&2; fail "TestRealLibvirt failed"; }
	grep -q -- '--- PASS: TestRealLibvirt' "$RUN/adapter.out" || { cat "$RUN/adapter.out" >&2; fail "TestRealLibvirt did not run"; }
	e2e_log "ok: TestRealLibvirt passed on the real libvirtd"
}

# shellcheck source=e2e/reboot.sh
source "$E2E_DIR/reboot.sh"
# shellcheck source=e2e/chaos.sh
source "$E2E_DIR/chaos.sh"
# shellcheck source=e2e/doc_commands.sh
source "$E2E_DIR/doc_commands.sh"
# shellcheck source=e2e/migration.sh
source "$E2E_DIR/migration.sh"
# shellcheck source=e2e/fleet.sh
source "$E2E_DIR/fleet.sh"

ALL=(libvirt_adapter zero_touch reboot save_restore restarts enforce_audit observe_mode race degraded_guests kill9_redefine libvirtd_outage passwords slow_libvirt
	prometheus_view cold_boot_rolling hotplug_nic hotplug_vcpu remote_ssh next_reboot_guest next_reboot_virsh next_reboot_poweroff next_reboot_kill9
	next_reboot_failpoints host_faults chaos
	hostdev_network vhostuser_nobody hand_set_kept duplicate_mac exclude_include migrate_live migrate_pending migrate_other_policy fleet_view orchestrator_nova metrics_tls doc_commands)

main() {
	local s rc
	(($#)) || set -- "${ALL[@]}"
	mkdir -p "$RUN" "$VIRTMQ_E2E_LOGDIR"
	: >"$AGENT_LOG"
	write_policy apply
	install_hook "$RUN/hooks"
	trap on_exit EXIT
	VIRTMQ_E2E_HOOKS_DIR=$RUN/hooks daemons_start
	cleanup_domains
	[[ -n $METRICS_LISTEN ]] || METRICS_LISTEN=127.0.0.1:$(free_port)
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
