#!/usr/bin/env bash
# make demo: the manual multi-queue procedure, before and after virtmq, on a
# real libvirt + QEMU guest. Boots a 4-vCPU VM the way most VMs are defined
# (no queues), shows what it gets, then lets virtmq-agent and virtmq-hook
# (default policy) fix it: the VM keeps running, and a reboot inside the
# guest brings it back with its queues (apply_at: next-reboot, the default)
# without anyone shutting it down. Shows the same checks again. Cleans up.
set -Eeuo pipefail
shopt -s inherit_errexit
umask 022
# shellcheck source=e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $(id -u) == 0 ]] || e2e_die "run as root (it starts libvirtd and QEMU)"
REPO=$(cd "$E2E_DIR/.." && pwd)
BIN=$REPO/bin
RUN=$VIRTMQ_E2E_STATE/demo
D=${VIRTMQ_E2E_PREFIX}demo
STATUS_SOCK=$RUN/status.sock
AGENT_PID=

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '   $ %s\n' "$*"; "$@" 2>&1 | sed 's/^/     /'; }

on_exit() {
	[[ -z $AGENT_PID ]] || { kill "$AGENT_PID" 2>/dev/null; wait "$AGENT_PID" 2>/dev/null || true; }
	daemons_stop started >/dev/null 2>&1 || true
	rm -rf "$RUN"
}
trap on_exit EXIT
trap 'e2e_log "demo failed at line $LINENO: $BASH_COMMAND"' ERR

# measure: one line of facts about the running demo domain.
declare -A M
measure() {
	local k=$1 tap mc
	M[$k.defined]=$(e2e_virsh dumpxml --inactive "$D" | grep -o "queues='[0-9]*'" | tr -dc 0-9 || true)
	: "${M[$k.defined]:=none}"
	M[$k.vqs]=$(qmp "$D" '{"execute":"x-query-virtio-status","arguments":{"path":"/machine/peripheral/net0/virtio-backend"}}' | jq -r '.return["num-vqs"]')
	mc=$(ethtool_combined "$D")
	M[$k.combined]="${mc#* } of max ${mc%% *}"
	tap=$(tap_of "$D")
	M[$k.tap]=$(tap_queues "$tap" 2>/dev/null | awk '{ print $1 " active, " $2 " disabled" }' || true)
	: "${M[$k.tap]:=single-queue tap}"
	M[$k.irq]=$(guest_exec "$D" /bin/cat /proc/interrupts | grep -Eo 'virtio[0-9]+-(input|output)\.[0-9]+' | sort -u | grep -c input || true)
	M[$k.vhost]=$(if [[ -e /dev/vhost-net ]]; then pgrep -c '^vhost-' || true; else echo "n/a (no /dev/vhost-net)"; fi)
}

mkdir -p "$RUN/hooks/qemu.d"
ln -sf "$BIN/virtmq-hook" "$RUN/hooks/qemu.d/50-virtmq" # as the package installs it
say "Starting libvirtd with virtmq-hook in its hooks dir, and a test bridge"
VIRTMQ_E2E_HOOKS_DIR=$RUN/hooks daemons_start
cleanup_domains

say "BEFORE: a 4-vCPU VM defined the usual way (virtio NIC, no <driver queues>)"
define_domain "$D"
show bash -c "virsh dumpxml --inactive $D | sed -n '/<interface/,/<\/interface>/p'"
e2e_virsh start "$D" >/dev/null
wait_for_agent "$D" 120
measure before
printf '   in the guest: ethtool -l eth0\n'
guest_exec "$D" /usr/sbin/ethtool -l eth0 | sed 's/^/     /'
printf '   in the guest: grep virtio /proc/interrupts\n'
guest_exec "$D" /bin/cat /proc/interrupts | grep -E 'virtio[0-9]+-(input|output)' | awk '{ print "     " $NF }'

say "What the policy (the default one virtmq ships) wants for it"
e2e_virsh dumpxml --inactive "$D" >"$RUN/$D.xml"
show "$BIN/virtmq" plan --policy "$REPO/policy/default.yaml" "$RUN/$D.xml"

say "Starting virtmq-agent: it rewrites the persistent definition (the VM keeps running)"
"$BIN/virtmq-agent" --policy "$REPO/policy/default.yaml" --socket "$LIBVIRT_SOCK" \
	--status-socket "$STATUS_SOCK" --state-dir "$RUN/state" >"$RUN/agent.log" 2>&1 &
AGENT_PID=$!
e2e_wait 30 bash -c "virsh dumpxml --inactive $D | grep -q queues=" || e2e_die "the agent did not rewrite $D; log: $RUN/agent.log"
show bash -c "virsh dumpxml --inactive $D | sed -n '/<interface/,/<\/interface>/p'"
sleep 1
show "$BIN/virtmq" status --status-socket "$STATUS_SOCK"

say "A reboot inside the guest: nobody shuts the VM down, it comes back with its queues"
printf '   the shipped policy says: %s\n' "$(grep -E '^ *apply_at:' "$REPO/policy/default.yaml" | xargs)"
printf '   a reboot keeps QEMU and its devices; virtmq-agent pauses the VM at the reset and cold boots it\n'
live() { local q; q=$(e2e_virsh dumpxml "$D" | grep -o "queues='[0-9]*'" | tr -dc 0-9 || true); echo "${q:-none (one pair)}"; }
combined() { local mc; mc=$(ethtool_combined "$D"); echo "${mc#* } of max ${mc%% *}"; }
printf '   before: running <driver queues> %s, guest Combined %s, QEMU domain id %s\n' "$(live)" "$(combined)" "$(e2e_virsh domid "$D")"
printf '   in the guest: reboot\n'
boot=$(guest_boot_id "$D") id=$(e2e_virsh domid "$D")
t0=$SECONDS
guest_run "$D" /bin/busybox reboot
e2e_wait 120 bash -c "virsh dumpxml $D | grep -q \"queues='4'\"" || e2e_die "$D did not come back with queues; log: $RUN/agent.log"
wait_for_reboot "$D" "$boot" 120 || e2e_die "$D did not come back from its reboot"
wait_for_agent "$D" 120
e2e_wait 60 bash -c "'$BIN/virtmq' status --json --status-socket '$STATUS_SOCK' | jq -e '.domains[] | select(.name == \"$D\") | .nics[0].guest_step == \"done\"'" ||
	e2e_log "the guest step did not report done in 60 s"
[[ $(e2e_virsh domid "$D") != "$id" ]] || e2e_die "$D kept its QEMU (domain id $id): the reboot was not made a cold boot"
printf '   after %ss: running <driver queues> %s, guest Combined %s, QEMU domain id %s (a new QEMU)\n' "$((SECONDS - t0))" "$(live)" "$(combined)" "$(e2e_virsh domid "$D")"
show "$BIN/virtmq" status --status-socket "$STATUS_SOCK"
printf '   (with apply_at: cold-boot it waits for a shutdown and a start; virtmq apply --cold-boot does those for a maintenance window)\n'
measure after
printf '   in the guest: ethtool -l eth0\n'
guest_exec "$D" /usr/sbin/ethtool -l eth0 | sed 's/^/     /'
printf '   in the guest: grep virtio /proc/interrupts\n'
guest_exec "$D" /bin/cat /proc/interrupts | grep -E 'virtio[0-9]+-(input|output)' | awk '{ print "     " $NF }'

say "An old guest kernel (or someone) leaves one channel on: the agent sets M again"
printf '   in the guest: ethtool -L eth0 combined 1\n'
guest_exec "$D" /usr/sbin/ethtool -L eth0 combined 1
printf '   now: Combined %s\n' "$(combined)"
printf '   $ kill -HUP virtmq-agent   (systemctl reload virtmq-agent: reload policy, resync every domain)\n'
kill -HUP "$AGENT_PID"
e2e_wait 60 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; ethtool_combined '$D') == '4 4' ]]" || e2e_log "the agent did not restore the channels in 60 s"
printf '   then: Combined %s\n' "$(combined)"

say "virtmq verify $D: the whole manual check, on demand"
show "$BIN/virtmq" verify --policy "$REPO/policy/default.yaml" "$D"

say "Before and after"
printf '   %-36s %-28s %s\n' "" "before virtmq" "after virtmq"
row() { printf '   %-36s %-28s %s\n' "$1" "${M[before.$2]}" "${M[after.$2]}"; }
row "<driver queues> in the definition" defined
row "virtqueues (QMP num-vqs = 2N+1)" vqs
row "guest ethtool -l Combined" combined
row "host tap queues (ip -d link)" tap
row "guest virtio input interrupts" irq
row "host vhost worker threads" vhost
printf '\n   (TCG guest on a %s-core host: this shows the configuration, not the speed; see make bench.)\n' "$(nproc)"
