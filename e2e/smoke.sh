#!/usr/bin/env bash
# Proves the harness on the real stack (no product code): setup, daemons, a
# 4-vCPU guest with <driver queues='4'/> added by hand, multi-queue seen from
# the guest, the host tap and QMP, reboot, save/restore, a guest whose qemu-ga
# blocks guest-exec and one without ethtool. Cleans up whatever it made.
#   smoke.sh [--record [DIR]]   also write the real replies as agent fixtures
#                               (default DIR: internal/testdata/recorded)
set -euo pipefail
shopt -s inherit_errexit
umask 022
# shellcheck source=e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $(id -u) == 0 ]] || e2e_die "run as root"

REC=
if [[ ${1:-} == --record ]]; then
	REC=${2:-$E2E_DIR/../internal/testdata/recorded}
	mkdir -p "$REC" && REC=$(cd "$REC" && pwd)
fi
D=${VIRTMQ_E2E_PREFIX}smoke            # 4 vCPUs, queues=4
DB=${VIRTMQ_E2E_PREFIX}smoke-noexec    # qemu-ga --block-rpcs=guest-exec
DN=${VIRTMQ_E2E_PREFIX}smoke-noethtool # no ethtool in the guest, queues=2
SAVE=$VIRTMQ_E2E_STATE/$D.save
T0=$SECONDS

on_exit() {
	local rc=$?
	if ((rc != 0)); then
		for d in "$D" "$DB" "$DN"; do
			[[ -s $(console_log "$d") ]] || continue
			e2e_log "console of $d ($(console_log "$d")), last lines:"
			tail -n 15 "$(console_log "$d")" >&2
		done
	fi
	rm -f "$SAVE"
	daemons_stop started # domains, and the daemons/bridge this run started
	e2e_log "smoke: $CHECK_PASSED checks passed, $((rc == 0 ? 0 : 1)) failed, $((SECONDS - T0))s"
	if ((rc == 0)); then echo "$CHECK_PASSED passed, 0 failed"; else echo "$CHECK_PASSED passed, 1 failed"; fi
}
trap on_exit EXIT

# shellcheck source=e2e/check.sh
source "$E2E_DIR/check.sh"

# rec FILE: stdin to the fixture FILE when recording
rec() { if [[ -n $REC ]]; then cat >"$REC/$1"; else cat >/dev/null; fi; }

# rec_exec NAME DOMAIN PATH ARGS...: run in the guest, record both replies
rec_exec() {
	local name=$1 out
	shift
	out=$(guest_exec_json "$@")
	head -n1 <<<"$out" | rec "guest-exec.$name.json"
	tail -n1 <<<"$out" | rec "guest-exec-status.$name.json"
	tail -n1 <<<"$out" | jq -r '.return["out-data"] // empty' | base64 -d
}

# tap_wait TAP "N D": QEMU follows the guest's queue change on the tap; allow it a moment
tap_wait() {
	local end=$((SECONDS + 5))
	until [[ $(tap_queues "$1") == "$2" ]] || ((SECONDS >= end)); do sleep 0.1; done
}
reboot_and_wait() { e2e_virsh reboot "$D" >/dev/null && wait_for_reboot "$D" "$1" 120; }
restore_and_wait() { e2e_virsh restore "$SAVE" >/dev/null && wait_for_agent "$D" 60; }
boot_degraded() { # both at once: 1 + 2 vCPUs on the 2 host cores
	local p rc=0
	boot_domain "$DB" --vcpus 1 --cmdline virtmq.qga_block=guest-exec &
	p=$!
	boot_domain "$DN" --vcpus 2 --queues 2 --cmdline virtmq.noethtool=1 || rc=$?
	wait "$p" || rc=$?
	return "$rc"
}

e2e_time "setup" "$E2E_DIR/setup.sh"
mkdir -p "$VIRTMQ_E2E_STATE"
e2e_time "daemons start" daemons_start
cleanup_domains # leftovers of an interrupted run

# --- 4 vCPUs, queues=4 -----------------------------------------------------------
e2e_time "boot $D" boot_domain "$D" --queues 4 || exit 1
tap=$(tap_of "$D")
check "guest ethtool -l eth0 (max cur)" "$(ethtool_combined "$D")" "4 4"
check "host tap $tap (numqueues numdisabled)" "$(tap_queues "$tap")" "4 0"
irq=$(rec_exec cat-proc-interrupts "$D" /bin/cat /proc/interrupts)
check "virtio input interrupts" "$(grep -cE 'virtio[0-9]+-input\.[0-9]+' <<<"$irq")" 4
status=$(qmp "$D" '{"execute":"x-query-virtio-status","arguments":{"path":"/machine/peripheral/net0/virtio-backend"}}')
rec x-query-virtio-status.net0.json <<<"$status"
check "x-query-virtio-status num-vqs" "$(jq '.return["num-vqs"]' <<<"$status")" 9
check "negotiated VIRTIO_NET_F_MQ" \
	"$(jq '[.return["guest-features"]["dev-features"][] | select(startswith("VIRTIO_NET_F_MQ:"))] | length' <<<"$status")" 1
mq=$(qmp "$D" '{"execute":"qom-get","arguments":{"path":"/machine/peripheral/net0","property":"mq"}}')
rec qom-get.net0.mq.json <<<"$mq"
check "qom-get net0 mq" "$(jq '.return' <<<"$mq")" true

if [[ -n $REC ]]; then
	for c in guest-info guest-get-osinfo guest-network-get-interfaces guest-get-host-name; do
		qga "$D" "{\"execute\":\"$c\"}" | rec "$c.json"
	done
	rec_exec ethtool-l "$D" /usr/sbin/ethtool -l eth0 >/dev/null
	e2e_virsh dumpxml "$D" | rec dumpxml-live.xml
	e2e_virsh dumpxml --inactive "$D" | rec dumpxml-inactive.xml
	virsh domiflist "$D" | rec domiflist.txt
fi

rec_exec ethtool-L-combined-2 "$D" /usr/sbin/ethtool -L eth0 combined 2 >/dev/null
check "guest ethtool -L eth0 combined 2 -> (max cur)" "$(ethtool_combined "$D")" "4 2"
tap_wait "$tap" "2 2"
check "host tap after combined 2" "$(tap_queues "$tap")" "2 2"
ip -d link show dev "$tap" | rec ip-d-link-show-tap.txt
out=$(guest_exec_json "$D" /usr/sbin/ethtool -L eth0 combined 5)
tail -n1 <<<"$out" | rec guest-exec-status.ethtool-L-combined-5.json
check "ethtool -L combined 5 over max 4 fails" "$(tail -n1 <<<"$out" | jq '.return.exitcode')" 1

# --- reboot: the guest probes again, all 4 queues come back ----------------------
boot_id=$(guest_boot_id "$D")
e2e_time "reboot (agent)" reboot_and_wait "$boot_id" || exit 1
check "after reboot: guest (max cur)" "$(ethtool_combined "$D")" "4 4"
tap_wait "$tap" "4 0"
check "after reboot: host tap" "$(tap_queues "$tap")" "4 0"

# --- save/restore keeps the running state ---------------------------------------
guest_exec "$D" /usr/sbin/ethtool -L eth0 combined 3
boot_id=$(guest_boot_id "$D")
e2e_time "virsh save" e2e_virsh save "$D" "$SAVE" >/dev/null
check "state after save" "$(e2e_virsh domstate "$D")" "shut off"
e2e_time "virsh restore" restore_and_wait || exit 1
check "restore is the same boot" "$(guest_boot_id "$D")" "$boot_id"
tap=$(tap_of "$D")
check "after restore: guest (max cur)" "$(ethtool_combined "$D")" "4 3"
check "after restore: host tap" "$(tap_queues "$tap")" "3 1"
e2e_virsh destroy "$D" >/dev/null

# --- degraded guests, booted side by side ------------------------------------------
e2e_time "boot $DB + $DN" boot_degraded || exit 1
info=$(qga "$DB" '{"execute":"guest-info"}')
rec guest-info.qga-block-guest-exec.json <<<"$info"
check "guest-info: guest-exec disabled" \
	"$(jq '.return.supported_commands[] | select(.name == "guest-exec") | .enabled' <<<"$info")" false
err=$(guest_exec "$DB" /bin/true 2>&1) && check "guest-exec refused" ok refused
rec guest-exec.blocked.error.txt <<<"$err"
check "guest-exec refused" "$(grep -c 'Command guest-exec has been disabled' <<<"$err")" 1
err=$(guest_exec "$DN" /usr/sbin/ethtool -l eth0 2>&1) && check "no ethtool" found missing
rec guest-exec.no-ethtool.error.txt <<<"$err"
check "ethtool missing" "$(grep -c 'No such file or directory' <<<"$err")" 1
check "no ethtool: /sys/class/net/eth0/queues" \
	"$(guest_exec "$DN" /bin/ls /sys/class/net/eth0/queues | paste -sd' ')" "rx-0 rx-1 tx-0 tx-1"

if [[ -n $REC ]]; then
	cat >"$REC/README.md" <<EOF
# Recorded replies (real stack)

Written by \`e2e/smoke.sh --record\` on $(date -u +%Y-%m-%d): libvirt $(virsh -c "$VIRTMQ_E2E_URI" version | sed -n 's/^Using library: libvirt //p'),
QEMU $(qemu-system-x86_64 --version | sed -n '1s/^QEMU emulator version //p'), TCG, userspace virtio-net (no vhost); guest: the e2e
busybox initramfs on Debian kernel $(sed -n 's/^kernel_release=//p' "$(guest_dir)/info"), qemu-ga $(qemu-ga --version | sed -n 's/^QEMU Guest Agent //p'), ethtool 6.1.
Files hold exactly what \`virsh qemu-agent-command\` / \`qemu-monitor-command\` printed.

| file | request |
| --- | --- |
| guest-info.json, guest-get-osinfo.json, guest-network-get-interfaces.json, guest-get-host-name.json | \`{"execute":"<name>"}\` on $D (4 vCPUs, \`<driver queues='4'/>\`) |
| guest-exec.NAME.json / guest-exec-status.NAME.json | \`guest-exec {path, arg, capture-output: true}\` → \`{pid}\`; final \`guest-exec-status {pid}\` (exited: true) |
| … ethtool-l | \`/usr/sbin/ethtool -l eth0\` (max 4, current 4) |
| … ethtool-L-combined-2 | \`/usr/sbin/ethtool -L eth0 combined 2\` |
| guest-exec-status.ethtool-L-combined-5.json | \`ethtool -L eth0 combined 5\` with max 4: exitcode 1, err-data |
| … cat-proc-interrupts | \`/bin/cat /proc/interrupts\` (virtio0-input.0..3) |
| x-query-virtio-status.net0.json | QMP \`x-query-virtio-status {path: /machine/peripheral/net0/virtio-backend}\` (num-vqs 9) |
| qom-get.net0.mq.json | QMP \`qom-get {path: /machine/peripheral/net0, property: mq}\` |
| dumpxml-live.xml, dumpxml-inactive.xml, domiflist.txt | \`virsh dumpxml [--inactive]\`, \`virsh domiflist\` |
| ip-d-link-show-tap.txt | \`ip -d link show <tap>\` after combined 2: \`numqueues 2 numdisabled 2\` |
| guest-info.qga-block-guest-exec.json | guest-info from qemu-ga \`--block-rpcs=guest-exec\` (enabled: false) |
| guest-exec.blocked.error.txt | virsh's error for guest-exec on that guest |
| guest-exec.no-ethtool.error.txt | virsh's error for guest-exec of a missing /usr/sbin/ethtool |
EOF
	chmod -R a+rX "$REC"
	e2e_log "fixtures written to $REC"
fi
