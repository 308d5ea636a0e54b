# shellcheck shell=bash
# Live migration between two libvirt "hosts" on this machine, sourced by
# run.sh. The second host is a second libvirtd in its own mount and UTS
# namespaces: its own copy of /etc/libvirt (its own host_uuid: libvirt
# refuses to migrate to a peer with its own), its own /run/libvirt,
# /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt, its own
# hostname, the hook installed in its hooks dir, and a virtmq-agent of its
# own (state dir, status socket, metrics port). QEMU's migration stream runs
# over loopback TCP; the guest has no disk (kernel + initramfs), so --live
# needs no shared storage. The first scenario that needs the second host
# starts it, the next ones reuse it, and run.sh stops it (its domains, its
# agent, its libvirtd) when the suite ends.

H2=$VIRTMQ_E2E_STATE/host2 # the second host's private folders
H2_SOCK=$H2/run/libvirt-sock # its /run/libvirt
H2_URI="qemu+unix:///system?socket=$H2_SOCK"
H2_HOSTNAME=${P}host2
H2_HOST_UUID=7669726d-712d-6532-652d-686f73743200 # any UUID that is not host 1's
H2_RUN=$RUN/host2 # its agent's pid, state dir, status socket, policy, hook record
POLICY2=$H2_RUN/policy.yaml
HOOK2_RECORD=$H2_RUN/hook.record # one line per hook call: OP SUBOP and the bytes it printed

# on2 CMD...: CMD (a harness function) aimed at the second host: virsh,
# qemu-ga and QMP through its libvirtd, the agent functions at its agent.
on2() {
	VIRTMQ_E2E_URI=$H2_URI LIBVIRT_SOCK=$H2_SOCK POLICY=$POLICY2 STATUS_SOCK=$H2_RUN/status.sock \
		AGENT_LOG=$VIRTMQ_E2E_LOGDIR/agent2.log AGENT_PIDFILE=$H2_RUN/agent.pid \
		METRICS_LISTEN=$(cat "$H2_RUN/metrics.listen" 2>/dev/null) "$@"
}
h2_pid() { cat "$H2/libvirtd.pid" 2>/dev/null; }

# host2_start: the second libvirtd and its agent, with host 1's policy
# (POLICY2, a copy of POLICY); a running one is reused, its policy reset.
host2_start() {
	if on2 libvirt_ok && pid_alive "$(on2 agent_pid)"; then
		cp "${POLICY:?}" "$POLICY2"
		on2 agent_reload
		return 0
	fi
	host2_stop
	rm -rf "$H2" "$H2_RUN"
	mkdir -p "$H2"/{run,lib,cache,log/qemu} "$H2_RUN"
	cp -a /etc/libvirt "$H2/etc"
	# host 1's definitions and autostart links are not host 2's
	find "$H2/etc/qemu" -name '*.xml' -delete
	rm -rf "$H2/etc/hooks"
	mkdir -p "$H2/etc/hooks/qemu.d"
	# the hook as a package installs it, run through a recorder of what it
	# prints (libvirt reads stdout at migrate and restore)
	cat >"$H2/etc/hooks/qemu.d/50-virtmq" <<-SH
		#!/bin/sh
		out=\$(VIRTMQ_INCOMING_DIR=$H2_RUN/incoming $BIN/virtmq-hook --policy $POLICY2 "\$@")
		rc=\$?
		echo "\$2 \$3 \$(printf %s "\$out" | wc -c)" >>$HOOK2_RECORD
		printf %s "\$out"
		exit \$rc
	SH
	chmod 0755 "$H2/etc/hooks/qemu.d/50-virtmq"
	printf '\n# virtmq e2e: the second host\nhost_uuid = "%s"\n' "$H2_HOST_UUID" >>"$H2/etc/libvirtd.conf"
	# no virtlogd in this namespace: QEMU's stdio goes to files
	printf '\n# virtmq e2e: the second host\nstdio_handler = "file"\n' >>"$H2/etc/qemu.conf"
	cp -a /var/cache/libvirt/qemu "$H2/cache/" 2>/dev/null || true # QEMU capabilities: no probe
	cp "${POLICY:?}" "$POLICY2"
	# shellcheck disable=SC2016 # expanded by the inner sh
	unshare --mount --uts --propagation private -- sh -c '
		set -e
		mount --bind "$1/etc" /etc/libvirt
		mount --bind "$1/run" /run/libvirt
		mount --bind "$1/lib" /var/lib/libvirt
		mount --bind "$1/cache" /var/cache/libvirt
		mount --bind "$1/log" /var/log/libvirt
		mount --bind "$3" /etc/libvirt/qemu/networks/autostart
		hostname "$2"
		exec libvirtd -d -p "$1/libvirtd.pid"' sh "$H2" "$H2_HOSTNAME" "$VIRTMQ_E2E_STATE/empty" ||
		e2e_die "cannot start the second libvirtd"
	e2e_wait 30 on2 libvirt_ok || e2e_die "the second libvirtd does not answer on $H2_URI (log: $H2/log/libvirtd.log)"
	e2e_log "host 2: libvirtd pid $(h2_pid) on $H2_SOCK, hostname $H2_HOSTNAME"
	free_port | sed 's/^/127.0.0.1:/' >"$H2_RUN/metrics.listen"
	on2 agent_start
}

# host2_stop: its domains destroyed and undefined, its agent and libvirtd stopped.
host2_stop() {
	local pid
	if on2 libvirt_ok; then on2 cleanup_domains; fi
	on2 agent_stop
	pid=$(h2_pid) && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == libvirtd ]] && stop_pid "$pid" 30
	rm -f "$H2/libvirtd.pid"
}

# migrate DOMAIN FROM_URI TO_URI: virsh migrate --live --persistent
# --undefinesource, the stream on a free loopback port.
migrate() {
	local port
	port=$(free_port) || fail "no free port for the migration"
	e2e_time "migrate $1" virsh -q -c "$2" migrate --live --persistent --undefinesource "$1" "$3" \
		--migrateuri "tcp://127.0.0.1:$port" --listen-address 127.0.0.1 ||
		fail "virsh migrate $1 to $3 failed"
}

# events_start NAME URI: record libvirt's events on URI (virsh event) into
# $RUN/events.NAME until events_stop.
events_start() {
	virsh -q -c "$2" event --all --loop --timestamp >"$RUN/events.$1" 2>&1 &
	echo $! >"$RUN/events.$1.pid"
}
events_stop() { kill "$(cat "$RUN/events.$1.pid")" 2>/dev/null || true; }

# agent_events LOG DOMAIN FROM_LINE: the events the agent logged for DOMAIN
# (kind/detail, one a line) after line FROM_LINE of its log.
agent_events() {
	tail -n +"$(($3 + 1))" "$1" | grep 'msg=event ' | grep -F "domain=$2 " |
		sed -E 's/.* kind=([a-z-]+) detail=([0-9]+).*/\1\/\2/'
}

# recorded_events SIDE: the kind/detail sequence of SIDE (source,
# destination) in the unit tests' fixture.
recorded_events() { awk -v s="$1" '$1 == s { print $2 }' "$REPO/internal/virt/virttest/testdata/migration-events.txt" | paste -sd' '; }

# guest_state DOMAIN: what the migration must keep (on the current host):
# running XML queues, QMP num-vqs, the guest's Combined max/current.
guest_state() {
	echo "queues=$(live_queues "$1") vqs=$(qmp_vqs "$1") combined=$(ethtool_combined "$1" | tr ' ' /)"
}

redefines_of() { # AGENT_LOG DOMAIN FROM_LINE: lines where the agent redefined DOMAIN
	tail -n +"$(($3 + 1))" "$1" | grep -c -E "msg=\"?redefined.* domain=$2 " || true
}
words_sorted() { printf '%s\n' "$@" | LC_ALL=C sort | paste -sd' '; } # as jq's sort orders them
metric() { curl -fsS "http://$1/metrics" | grep -E "^$2" || true; }

# A. a running domain with 4 queues migrates live to host 2 and keeps its
# queues, its guest's Combined count and its network; the hook prints nothing
# at migrate; host 2's agent finds it compliant without redefining it and its
# guest step changes nothing; host 1's agent forgets it. Prometheus scrapes
# both agents and sees the domain move.
migrate_live() {
	local d=${P}mig before after l1 l2 tap m1 m2 e
	trap 'prometheus_stop; events_stop src; events_stop dst' EXIT
	host2_start
	boot_rewritten "$d"
	eventually 90 "$d guest Combined current before the migration" 2 guest_current "$d"
	eventually 30 "host 1: $d state" compliant status_of "$d" .state
	before=$(guest_state "$d")
	check "$d before the migration" "$before" "queues=4 vqs=9 combined=4/2"
	m1=$METRICS_LISTEN m2=$(cat "$H2_RUN/metrics.listen")
	prometheus_start "$m1,$m2" "$REPO/packaging/monitoring/virtmq-rules.yml"
	eventually 30 "Prometheus scrapes both agents: up" "$(words_sorted "$m1=1" "$m2=1")" \
		prom_query 'up{job="virtmq-agent"}' '[.data.result[] | "\(.metric.instance)=\(.value[1])"] | sort | join(" ")'
	eventually 30 "Prometheus: $d is compliant on host 1 only" "$m1" \
		prom_query "virtmq_domain_state{domain=\"$d\",state=\"compliant\"} == 1" '[.data.result[].metric.instance] | join(",")'

	l1=$(wc -l <"$AGENT_LOG") l2=$(wc -l <"$VIRTMQ_E2E_LOGDIR/agent2.log")
	: >"$HOOK2_RECORD"
	events_start src "$VIRTMQ_E2E_URI"
	events_start dst "$H2_URI"
	sleep 0.3
	migrate "$d" "$VIRTMQ_E2E_URI" "$H2_URI"
	check "host 2 runs $d" "$(on2 e2e_virsh domstate "$d")" running
	check "host 1 no longer has $d" "$(e2e_virsh domstate "$d" 2>/dev/null || echo gone)" gone
	on2 wait_for_agent "$d" 60
	after=$(on2 guest_state "$d")
	check "$d on host 2 (queues, num-vqs, guest Combined max/current)" "$after" "$before"
	check "$d definition on host 2" "$(on2 defined_queues "$d")" 4
	tap=$(on2 tap_of "$d")
	check "host 2 tap $tap numqueues/numdisabled" "$(tap_queues "$tap")" "2 2"
	timeout 20 iperf3 -c "$(guest_ip "$d" | cut -d/ -f1)" -t 1 -P 2 >"$RUN/iperf3.out" 2>&1 ||
		{ cat "$RUN/iperf3.out" >&2; fail "iperf3 to $d on host 2 failed"; }
	e2e_log "ok: iperf3 (2 streams) to $d on host 2: $(grep -E 'SUM.*receiver' "$RUN/iperf3.out" | grep -oE '[0-9.]+ [MGK]bits/sec')"
	check "the hook's calls on host 2 and the bytes it printed" "$(grep '^migrate' "$HOOK2_RECORD")" "migrate begin 0"
	eventually 30 "host 2: $d state" compliant on2 status_of "$d" .state
	eventually 60 "host 2: $d guest step" "done" on2 status_of "$d" '.nics[0].guest_step'
	check "host 2: $d last action (nothing changed in the guest)" "$(on2 status_of "$d" .last_action)" "guest step: eth0 combined 2 already"
	check "host 2: redefines of $d" "$(redefines_of "$VIRTMQ_E2E_LOGDIR/agent2.log" "$d" "$l2")" 0
	check "host 2: virtmq_rewrites_total" "$(metric "$m2" virtmq_rewrites_total)" "virtmq_rewrites_total 0"
	check "host 2: the guest's Combined current" "$(on2 guest_current "$d")" 2
	eventually 30 "host 1 forgot $d (status)" "" status_of "$d" .state
	check "host 1: metrics series of $d" "$(metric "$m1" "virtmq_[a-z_]*\\{[^}]*domain=\"$d\"")" ""
	eventually 30 "Prometheus: $d is compliant on host 2 only" "$m2" \
		prom_query "virtmq_domain_state{domain=\"$d\",state=\"compliant\"} == 1" '[.data.result[].metric.instance] | join(",")'
	check "Prometheus: hosts with build info" "$(prom_query 'count by (instance) (virtmq_build_info)' '[.data.result[].metric.instance] | sort | join(" ")')" "$(words_sorted "$m1" "$m2")"
	events_stop src
	events_stop dst
	for e in src dst; do e2e_log "libvirt events ($e): $(tr '\n' ';' <"$RUN/events.$e")"; done
	# the recorded sequences the unit tests replay (virttest.Migrate)
	check "the events host 1's agent saw (source)" \
		"$(agent_events "$AGENT_LOG" "$d" "$l1" | paste -sd' ')" "$(recorded_events source)"
	check "the events host 2's agent saw (destination)" \
		"$(agent_events "$VIRTMQ_E2E_LOGDIR/agent2.log" "$d" "$l2" | paste -sd' ')" "$(recorded_events destination)"
}

# B. a domain pending a cold boot (1 queue running, 4 defined) migrates to
# host 2 in mode enforce: the migration is taken (an enforce host can be
# drained into), host 2 keeps it pending, without redefining it, and
# converges it at its next guest reboot under apply_at: next-reboot.
migrate_pending() {
	local d=${P}mig-pend l2 id
	trap 'write_policy apply; kill -HUP "$(agent_pid)"' EXIT
	next_reboot_policy
	host2_start
	pending_domain "$d"
	check "$d running queues on host 1 (none: one pair)" "$(live_queues "$d")" ""
	# The hook at migrate marks the incoming domain; at prepare, where an
	# incoming QEMU looks like a boot, the marker says it is not one: its
	# queues travel unchanged, so enforce logs it instead of refusing it.
	sed -i 's/^mode: apply/mode: enforce/' "$POLICY2"
	on2 agent_reload
	l2=$(wc -l <"$VIRTMQ_E2E_LOGDIR/agent2.log")
	: >"$HOOK2_RECORD"
	migrate "$d" "$VIRTMQ_E2E_URI" "$H2_URI"
	check "$d after the migration to the enforce host: host 1, host 2" \
		"$(e2e_virsh domstate "$d" 2>/dev/null || echo none), $(on2 e2e_virsh domstate "$d")" "none, running"
	on2 wait_for_agent "$d" 60
	check "$d on host 2: running queues (none: one pair), definition" "$(on2 live_queues "$d"),$(on2 defined_queues "$d")" ",4"
	check "the hook's calls on host 2 up to started (libvirt's order), the bytes printed" \
		"$(grep -E '^(migrate|restore|prepare|start|started) ' "$HOOK2_RECORD" | paste -sd' ')" \
		"migrate begin 0 prepare begin 0 start begin 0 started begin 0"
	check "host 2: incoming markers left (the directory exists)" "$(ls -A "$H2_RUN/incoming" 2>&1)" ""
	eventually 30 "host 2: $d state" pending-cold-boot on2 status_of "$d" .state
	check_match "host 2: $d problem" "$(on2 status_of "$d" .problem)" "applies at the guest's next reboot"
	check "host 2: redefines of $d" "$(redefines_of "$VIRTMQ_E2E_LOGDIR/agent2.log" "$d" "$l2")" 0
	eventually 30 "host 1 forgot $d (status)" "" status_of "$d" .state
	id=$(on2 e2e_virsh domid "$d")
	on2 guest_run "$d" /bin/busybox reboot
	eventually 120 "host 2: $d running queues after the reboot (a cold boot)" 4 on2 live_queues "$d"
	[[ $(on2 e2e_virsh domid "$d") != "$id" ]] || fail "$d has the same domain id on host 2: no cold boot"
	on2 wait_for_agent "$d" 120
	eventually 90 "host 2: $d guest Combined current" 2 on2 guest_current "$d"
	eventually 30 "host 2: $d state" compliant on2 status_of "$d" .state
	on2 e2e_virsh destroy "$d" >/dev/null
	on2 e2e_virsh undefine "$d" >/dev/null
}

# C. a destination whose policy wants another count (2 for this domain): it
# is reported pending, the definition gets 2, and nothing is applied to the
# running domain (same QEMU, 4 queues, the guest's Combined count kept).
# The domain of migrate_live is reused: migrated back to host 1 first.
migrate_other_policy() {
	local d=${P}mig id before
	host2_start
	if [[ $(on2 e2e_virsh domstate "$d" 2>/dev/null) == running ]]; then
		migrate "$d" "$H2_URI" "$VIRTMQ_E2E_URI"
		wait_for_agent "$d" 60
		check "$d back on host 1: running queues" "$(live_queues "$d")" 4
		eventually 30 "host 1: $d state" compliant status_of "$d" .state
	else
		boot_rewritten "$d"
		eventually 90 "$d guest Combined current" 2 guest_current "$d"
	fi
	cat >>"$POLICY2" <<-YAML
		  - name: fewer-here
		    match: {domain: $d}
		    set: {queues: 2}
	YAML
	on2 agent_reload
	before=$(guest_state "$d")
	: >"$HOOK2_RECORD"
	migrate "$d" "$VIRTMQ_E2E_URI" "$H2_URI"
	on2 wait_for_agent "$d" 60
	id=$(on2 e2e_virsh domid "$d")
	check "the hook at migrate on host 2: bytes printed" "$(grep '^migrate' "$HOOK2_RECORD")" "migrate begin 0"
	eventually 30 "host 2: $d state" pending-cold-boot on2 status_of "$d" .state
	check "host 2: $d wanted, defined, running queues" \
		"$(on2 status_of "$d" '.nics[0] | "\(.wanted_queues) \(.defined_queues) \(.running_queues)"')" "2 2 4"
	eventually 30 "host 2: $d definition (the policy's count, for the next cold boot)" 2 on2 defined_queues "$d"
	sleep 3 # anything the agent would do to the running domain
	check "host 2: $d is the same QEMU" "$(on2 e2e_virsh domid "$d")" "$id"
	check "host 2: $d running (queues, num-vqs, guest Combined max/current)" "$(on2 guest_state "$d")" "$before"
	on2 e2e_virsh destroy "$d" >/dev/null
	on2 e2e_virsh undefine "$d" >/dev/null
}
