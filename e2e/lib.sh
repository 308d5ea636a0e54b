# shellcheck shell=bash
# Shared functions of the virtmq real-stack harness. Source it:
#   source /path/to/e2e/lib.sh
# Everything is root-only and touches only: the daemons it starts itself, the
# bridge $VIRTMQ_E2E_BRIDGE, domains named $VIRTMQ_E2E_PREFIX*, and the
# cache/state/log folders below.

# shellcheck disable=SC2034 # used by the scripts that source this file
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${VIRTMQ_E2E_CACHE:=/var/cache/virtmq-e2e}" # guest kernel + initramfs
: "${VIRTMQ_E2E_STATE:=/run/virtmq-e2e}"       # ownership markers, save files
: "${VIRTMQ_E2E_LOGDIR:=/var/log/virtmq-e2e}"  # guest consoles: <domain>.console.log
: "${VIRTMQ_E2E_BRIDGE:=virtmqbr0}"
: "${VIRTMQ_E2E_HOST_IP:=169.254.77.1/24}" # link-local, routed nowhere
: "${VIRTMQ_E2E_PREFIX:=virtmq-e2e-}"
: "${VIRTMQ_E2E_URI:=qemu:///system}"
: "${VIRTMQ_E2E_HOOKS_DIR:=}" # non-empty: libvirtd sees it as /etc/libvirt/hooks
# Under TCG: lpj= skips the delay-loop calibration of every vCPU, no crypto self-tests.
GUEST_CMDLINE="console=ttyS0 quiet lpj=4000000 cryptomgr.notests"
export LIBVIRT_DEFAULT_URI=$VIRTMQ_E2E_URI

LIBVIRTD_PIDFILE=/run/libvirtd.pid
VIRTLOGD_PIDFILE=/run/virtlogd.pid
LIBVIRT_SOCK=/run/libvirt/libvirt-sock
E2E_STARTED=() # what daemons_start started in this shell: virtlogd libvirtd bridge

e2e_log() { printf '%s e2e: %s\n' "$(date +%T.%3N)" "$*" >&2; }
e2e_die() {
	e2e_log "FATAL: $*"
	exit 1
}
e2e_virsh() { virsh -q -c "$VIRTMQ_E2E_URI" "$@"; }

# e2e_time LABEL CMD...: run CMD, log how long it took, keep its exit code.
e2e_time() {
	local label=$1 t0 rc=0
	shift
	t0=$(date +%s%N)
	"$@" || rc=$?
	e2e_log "$(printf '%-28s %6.1fs%s' "$label" "$((($(date +%s%N) - t0) / 1000000))e-3" \
		"$([[ $rc == 0 ]] || echo " (exit $rc)")")"
	return "$rc"
}

# e2e_wait TIMEOUT_S CMD...: retry CMD every 0.2 s until it succeeds.
e2e_wait() {
	local end=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < end)) || return 1
		sleep 0.2
	done
}

# --- processes -----------------------------------------------------------------

# pid_alive PID: running and not a zombie (PID 1 here reaps exited daemons slowly).
pid_alive() {
	local stat
	[[ $1 =~ ^[0-9]+$ ]] && stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != [ZX] ]]
}

# daemon_pid NAME: the live pid of /run/NAME.pid if it is that program.
daemon_pid() {
	local pid
	pid=$(cat "/run/$1.pid" 2>/dev/null) || return 1 # no trailing newline: not read
	pid_alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] && echo "$pid"
}

# owned_pid NAME: the pid recorded when the harness started NAME, if still alive.
owned_pid() {
	local pid
	pid=$(cat "$VIRTMQ_E2E_STATE/$1.pid" 2>/dev/null) || return 1
	[[ $(daemon_pid "$1") == "$pid" ]] && echo "$pid"
}

# stop_pid PID [TIMEOUT_S]: SIGTERM, wait, SIGKILL.
stop_pid() {
	kill -TERM "$1" 2>/dev/null || return 0
	e2e_wait "${2:-30}" eval "! pid_alive $1" && return 0
	e2e_log "pid $1 ignored SIGTERM; killing it"
	kill -KILL "$1" 2>/dev/null || true
	e2e_wait 10 eval "! pid_alive $1"
}

libvirt_ok() { virsh -q -c "$VIRTMQ_E2E_URI" version >/dev/null 2>&1; }
libvirt_sock_ok() { [[ -S $LIBVIRT_SOCK ]] && libvirt_ok; }

# --- daemons --------------------------------------------------------------------

virtlogd_start() {
	local pid
	if pid=$(daemon_pid virtlogd); then
		owned_pid virtlogd >/dev/null || e2e_log "using virtlogd pid $pid (not started by the harness)"
		return 0
	fi
	rm -f "$VIRTLOGD_PIDFILE" /run/libvirt/virtlogd-sock /run/libvirt/virtlogd-admin-sock
	virtlogd -d || e2e_die "virtlogd -d failed"
	e2e_wait 10 daemon_pid virtlogd || e2e_die "virtlogd did not start"
	daemon_pid virtlogd >"$VIRTMQ_E2E_STATE/virtlogd.pid"
	E2E_STARTED+=(virtlogd)
}

virtlogd_stop() {
	local pid
	pid=$(owned_pid virtlogd) && stop_pid "$pid"
	rm -f "$VIRTMQ_E2E_STATE/virtlogd.pid"
	daemon_pid virtlogd >/dev/null ||
		rm -f "$VIRTLOGD_PIDFILE" /run/libvirt/virtlogd-sock /run/libvirt/virtlogd-admin-sock
}

# libvirtd_start [HOOKS_DIR]: libvirtd in a private mount namespace, where an
# empty folder hides /etc/libvirt/qemu/networks/autostart (no default network,
# no dnsmasq) and HOOKS_DIR, if given, is /etc/libvirt/hooks. Reuses a running
# libvirtd when it fits.
libvirtd_start() {
	local hooks=${1:-} pid had=
	[[ -z $hooks ]] || hooks=$(cd "$hooks" && pwd) || e2e_die "no hooks dir $1"
	if pid=$(daemon_pid libvirtd); then
		if owned_pid libvirtd >/dev/null; then
			had=$(cat "$VIRTMQ_E2E_STATE/libvirtd.hooks" 2>/dev/null || true)
			if [[ $had == "$hooks" ]]; then
				libvirt_ok && return 0
			fi
			e2e_log "restarting our libvirtd (pid $pid): hooks '${had}' -> '${hooks}'"
			libvirtd_stop
		elif [[ -n $hooks ]]; then
			e2e_die "libvirtd pid $pid was not started by the harness: it cannot get the hooks dir $hooks; stop it first"
		else
			e2e_log "using libvirtd pid $pid (not started by the harness; its hooks are the machine's)"
			e2e_wait 30 libvirt_ok || e2e_die "libvirtd pid $pid does not answer on $VIRTMQ_E2E_URI"
			return 0
		fi
	elif libvirt_ok; then
		[[ -z $hooks ]] || e2e_die "a libvirt daemon we did not start serves $VIRTMQ_E2E_URI; cannot give it hooks"
		e2e_log "using the libvirt daemon that already serves $VIRTMQ_E2E_URI"
		return 0
	fi
	rm -f "$LIBVIRTD_PIDFILE" "$LIBVIRT_SOCK" "$LIBVIRT_SOCK-ro" /run/libvirt/libvirt-admin-sock
	mkdir -p "$VIRTMQ_E2E_STATE/empty" /etc/libvirt/hooks
	# shellcheck disable=SC2016 # expanded by the inner sh
	unshare --mount --propagation private -- sh -c '
		set -e
		mount --bind "$1" /etc/libvirt/qemu/networks/autostart
		[ -z "$2" ] || mount --bind "$2" /etc/libvirt/hooks
		exec libvirtd -d' sh "$VIRTMQ_E2E_STATE/empty" "$hooks" || e2e_die "cannot start libvirtd"
	e2e_wait 30 daemon_pid libvirtd || e2e_die "libvirtd did not start"
	daemon_pid libvirtd >"$VIRTMQ_E2E_STATE/libvirtd.pid"
	printf '%s\n' "$hooks" >"$VIRTMQ_E2E_STATE/libvirtd.hooks"
	e2e_wait 30 libvirt_sock_ok ||
		e2e_die "libvirtd runs but $VIRTMQ_E2E_URI does not answer"
	E2E_STARTED+=(libvirtd)
}

libvirtd_stop() {
	local pid
	pid=$(owned_pid libvirtd) && stop_pid "$pid"
	rm -f "$VIRTMQ_E2E_STATE/libvirtd.pid" "$VIRTMQ_E2E_STATE/libvirtd.hooks"
	daemon_pid libvirtd >/dev/null ||
		rm -f "$LIBVIRTD_PIDFILE" "$LIBVIRT_SOCK" "$LIBVIRT_SOCK-ro" /run/libvirt/libvirt-admin-sock
}

# libvirtd_restart: stop ours and start it again with the same hooks dir
# (running domains survive: libvirtd reconnects to them).
libvirtd_restart() {
	local hooks
	owned_pid libvirtd >/dev/null || e2e_die "libvirtd was not started by the harness: not restarting it"
	hooks=$(cat "$VIRTMQ_E2E_STATE/libvirtd.hooks" 2>/dev/null || true)
	libvirtd_stop
	libvirtd_start "$hooks"
}

bridge_up() {
	local br=$VIRTMQ_E2E_BRIDGE
	if ! ip link show dev "$br" >/dev/null 2>&1; then
		ip link add name "$br" type bridge || return 1
		touch "$VIRTMQ_E2E_STATE/bridge.$br"
		E2E_STARTED+=(bridge)
	fi
	ip addr replace "$VIRTMQ_E2E_HOST_IP" dev "$br" && ip link set dev "$br" up
}

bridge_down() {
	local br=$VIRTMQ_E2E_BRIDGE
	[[ -e $VIRTMQ_E2E_STATE/bridge.$br ]] || return 0
	ip link del dev "$br" 2>/dev/null || true
	rm -f "$VIRTMQ_E2E_STATE/bridge.$br"
}

# --- the host, as a real Debian host is ----------------------------------------

# QEMU_USER: the user libvirt runs QEMU as (Debian: libvirt-qemu, group kvm).
QEMU_USER=libvirt-qemu

# kvm_problem: prints why libvirt's QEMU user cannot open /dev/kvm, if it
# cannot (nothing, exit 1, when it can or there is no /dev/kvm).
kvm_problem() {
	[[ -c /dev/kvm ]] || return 1
	id "$QEMU_USER" >/dev/null 2>&1 || return 1
	runuser -u "$QEMU_USER" -- test -r /dev/kvm -a -w /dev/kvm 2>/dev/null && return 1
	echo "/dev/kvm is $(stat -c '%A %U:%G' /dev/kvm): libvirt's QEMU user $QEMU_USER ($(id -Gn "$QEMU_USER" | tr ' ' ,)) cannot open it"
}

# host_prepare: what udev and systemd would have done on a real Debian host
# and a fresh machine of CI's kind has not. Each change is logged.
#  - /dev/kvm: Debian's udev rule (50-udev-default.rules) makes it
#    root:kvm 0660. A fresh machine has 0600 root:root (no udev ran), so
#    libvirt finds its cached QEMU capabilities invalid on every call ("KVM
#    was enabled when probing ..., but it is not available now") and probes
#    QEMU again, seconds per call: a define of a running domain took 52 s.
host_prepare() {
	local why
	if why=$(kvm_problem) && getent group kvm >/dev/null; then
		chgrp kvm /dev/kvm && chmod 0660 /dev/kvm || return 1
		e2e_log "host: $why; set it to root:kvm 0660 as Debian's udev rule does"
	fi
}

# libvirt_preflight: fail in seconds, naming the cause and the fix, when
# libvirt is unusably slow, instead of timeouts deep inside scenarios. The
# first capabilities call may probe QEMU (an empty cache): it is not timed;
# the next two must be fast (about 10 ms each on a healthy host).
libvirt_preflight() {
	local limit=${VIRTMQ_E2E_PREFLIGHT_S:-3} rc=0 why
	timeout 60 virsh -q -c "$VIRTMQ_E2E_URI" capabilities >/dev/null ||
		{ e2e_log "preflight: virsh capabilities failed"; return 1; }
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout "$limit" bash -c 'virsh -q -c "$1" capabilities && virsh -q -c "$1" capabilities' sh "$VIRTMQ_E2E_URI" >/dev/null || rc=$?
	((rc == 0)) && return 0
	((rc == 124)) || { e2e_log "preflight: virsh capabilities failed (exit $rc)"; return 1; }
	why=$(kvm_problem) && why="cause: $why; fix: chgrp kvm /dev/kvm; chmod 0660 /dev/kvm (what Debian's udev rule sets)" ||
		why="cause unknown: look for re-probes in libvirtd's log (virt-admin daemon-log-filters 1:qemu.qemu_capabilities)"
	e2e_log "preflight: libvirt is unusably slow: two back-to-back capabilities calls did not finish in ${limit} s (healthy: about 20 ms); $why"
	return 1
}

# daemons_start: virtlogd, libvirtd (with $VIRTMQ_E2E_HOOKS_DIR), the bridge,
# on a host prepared as a real one (host_prepare), and a preflight.
daemons_start() {
	mkdir -p "$VIRTMQ_E2E_STATE" "$VIRTMQ_E2E_LOGDIR"
	chmod 0755 "$VIRTMQ_E2E_LOGDIR"
	# chained: callers may run this where errexit is off (e2e_time, if, ||)
	host_prepare && virtlogd_start && libvirtd_start "$VIRTMQ_E2E_HOOKS_DIR" && bridge_up && libvirt_preflight
}

# daemons_stop [started]: remove the harness's domains, then stop what the
# harness started (with "started": only what daemons_start started in this shell).
daemons_stop() {
	local only=${1:-}
	cleanup_domains
	if [[ -z $only || " ${E2E_STARTED[*]} " == *" libvirtd "* ]]; then libvirtd_stop; fi
	if [[ -z $only || " ${E2E_STARTED[*]} " == *" virtlogd "* ]]; then virtlogd_stop; fi
	if [[ -z $only || " ${E2E_STARTED[*]} " == *" bridge "* ]]; then bridge_down; fi
	E2E_STARTED=()
}

daemons_status() {
	local name pid rc=0
	for name in virtlogd libvirtd; do
		if pid=$(owned_pid "$name"); then
			echo "$name: running, pid $pid, started by the harness"
		elif pid=$(daemon_pid "$name"); then
			echo "$name: running, pid $pid, NOT started by the harness"
		else
			echo "$name: not running"
		fi
	done
	[[ -n $(cat "$VIRTMQ_E2E_STATE/libvirtd.hooks" 2>/dev/null) ]] &&
		echo "hooks dir: $(cat "$VIRTMQ_E2E_STATE/libvirtd.hooks")"
	if libvirt_ok; then
		echo "$VIRTMQ_E2E_URI: answers ($(virsh -q -c "$VIRTMQ_E2E_URI" version 2>/dev/null | grep -i 'running hypervisor' | sed 's/.*: *//'))"
	else
		echo "$VIRTMQ_E2E_URI: does not answer"
		rc=3
	fi
	if ip -br addr show dev "$VIRTMQ_E2E_BRIDGE" 2>/dev/null; then :; else echo "bridge $VIRTMQ_E2E_BRIDGE: absent"; fi
	if ((rc == 0)); then
		e2e_virsh list --all | grep " $VIRTMQ_E2E_PREFIX" || true
	fi
	return "$rc"
}

# --- guest build -----------------------------------------------------------------

# guest_dir: the current guest build (kernel, initrd.img, info); setup.sh makes it.
guest_dir() {
	[[ -f $VIRTMQ_E2E_CACHE/guest/kernel ]] || e2e_die "no guest in $VIRTMQ_E2E_CACHE: run e2e/setup.sh"
	echo "$VIRTMQ_E2E_CACHE/guest"
}

# --- domains ---------------------------------------------------------------------

# guest_ip NAME: the default eth0 address of a domain (169.254.77.2-251/24 from the name).
guest_ip() { echo "169.254.77.$((2 + $(printf %s "$1" | cksum | cut -d' ' -f1) % 250))/24"; }
# guest_mac NAME: the default MAC of a domain's first NIC.
guest_mac() { printf %s "$1" | md5sum | sed -E 's/^(..)(..)(..).*/52:54:00:\1:\2:\3/'; }
console_log() { echo "$VIRTMQ_E2E_LOGDIR/$1.console.log"; }

# domain_xml NAME [options]: print a test domain (TCG, direct kernel boot).
#   --vcpus N           maximum vCPUs (default 4)     --current-vcpus N  vCPUs online at boot
#   --memory MIB        (default 512)                 --queues N   add <driver queues='N'/>
#   --model M           NIC model (default virtio)    --mac MAC    (default guest_mac NAME)
#   --ip ADDR/PFX|none  eth0 address (default guest_ip NAME)
#   --cmdline STR       extra kernel command line (virtmq.qga_block=guest-exec, virtmq.noethtool=1)
#   --no-nic            no <interface>             --no-agent   no qemu-ga channel
#   --devices-xml XML   appended inside <devices>  --metadata-xml XML  inside <metadata>
#   --uuid UUID         --recorded   virtmq's record of --queues in <metadata>:
#                       virtmq wrote the count (without it, a person did: kept)
domain_xml() {
	local name=$1 vcpus=4 cur='' mem=512 queues='' model=virtio mac='' ip='' extra=''
	local nic=1 agent=1 devs='' meta='' uuid='' g vcpu_attr='' channel='' iface='' driver='' recorded='' mx=''
	shift
	while (($#)); do
		case $1 in
		--vcpus) vcpus=$2 ;;
		--current-vcpus) cur=$2 ;;
		--memory) mem=$2 ;;
		--queues) queues=$2 ;;
		--model) model=$2 ;;
		--mac) mac=$2 ;;
		--ip) ip=$2 ;;
		--cmdline) extra=" $2" ;;
		--devices-xml) devs="    $2"$'\n' ;;
		--metadata-xml) mx=$2 ;;
		--uuid) uuid="  <uuid>$2</uuid>"$'\n' ;;
		--no-nic) nic='' && shift && continue ;;
		--no-agent) agent='' && shift && continue ;;
		--recorded) recorded=1 && shift && continue ;;
		*) e2e_die "domain_xml: unknown option $1" ;;
		esac
		shift 2
	done
	g=$(guest_dir)
	: "${mac:=$(guest_mac "$name")}" "${ip:=$(guest_ip "$name")}"
	[[ -z $cur ]] || vcpu_attr=" current='$cur'"
	[[ -z $queues ]] || driver="      <driver queues='$queues'/>"$'\n'
	[[ -z $recorded || -z $queues ]] ||
		mx+="<virtmq:written xmlns:virtmq='https://virtmq.dev/xmlns/written/1'><virtmq:nic mac='$mac' queues='$queues'/></virtmq:written>"
	[[ -z $mx ]] || meta="  <metadata>$mx</metadata>"$'\n'
	[[ -z $agent ]] || channel="    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
"
	[[ -z $nic ]] || iface="    <interface type='bridge'>
      <source bridge='$VIRTMQ_E2E_BRIDGE'/>
      <mac address='$mac'/>
      <model type='$model'/>
$driver    </interface>
"
	cat <<EOF
<domain type='qemu'>
  <name>$name</name>
$uuid$meta  <memory unit='MiB'>$mem</memory>
  <vcpu placement='static'$vcpu_attr>$vcpus</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$g/kernel</kernel>
    <initrd>$g/initrd.img</initrd>
    <cmdline>$GUEST_CMDLINE virtmq.ip=$ip virtmq.hostname=$name$extra</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='file'>
      <source path='$(console_log "$name")' append='on'/>
      <target port='0'/>
    </serial>
$channel$iface$devs    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}

# define_domain NAME [domain_xml options]: (re)define it persistently (keeps
# the UUID of an existing domain of that name, so a redefinition works).
define_domain() {
	local xml uuid
	if uuid=$(e2e_virsh domuuid "$1" 2>/dev/null) && [[ -n $uuid ]]; then
		xml=$(domain_xml "$@" --uuid "$uuid") || return 1
	else
		xml=$(domain_xml "$@") || return 1
		rm -f "$(console_log "$1")" # a new domain starts a new console log
	fi
	e2e_virsh define /dev/stdin <<<"$xml" >/dev/null
}

# boot_domain NAME [domain_xml options]: define, start, wait for qemu-ga (120 s).
boot_domain() {
	define_domain "$@" && e2e_virsh start "$1" >/dev/null && wait_for_agent "$1" 120
}

# cleanup_domains: destroy and undefine every domain named $VIRTMQ_E2E_PREFIX*.
cleanup_domains() {
	local d
	libvirt_ok || return 0
	for d in $(e2e_virsh list --all --name | grep "^$VIRTMQ_E2E_PREFIX" || true); do
		e2e_virsh destroy "$d" >/dev/null 2>&1 || true
		e2e_virsh undefine --managed-save "$d" >/dev/null 2>&1 || true
	done
	rm -f "$VIRTMQ_E2E_STATE"/*.save
}

# tap_of DOMAIN [N]: host tap device of the domain's Nth NIC (default 0).
tap_of() {
	e2e_virsh domiflist "$1" | awk -v n="${2:-0}" '$NF ~ /^[0-9a-f][0-9a-f](:[0-9a-f][0-9a-f])+$/ && i++ == n { print $1 }' | grep .
}

# --- qemu-guest-agent and QMP -------------------------------------------------------

# qga DOMAIN JSON [TIMEOUT_S]: raw guest agent command, prints the reply.
qga() { e2e_virsh qemu-agent-command --timeout "${3:-10}" "$1" "$2"; }
# qmp DOMAIN JSON: raw QMP command through libvirt, prints the reply.
qmp() { e2e_virsh qemu-monitor-command "$1" "$2"; }

# agent_up DOMAIN: qemu-ga opened its port (libvirt's channel state, which
# polls without filling libvirtd.log with errors) and answers guest-ping.
agent_up() {
	e2e_virsh dumpxml "$1" | grep -q "name='org.qemu.guest_agent.0' state='connected'" &&
		qga "$1" '{"execute":"guest-ping"}' 2
}

# wait_for_agent DOMAIN [TIMEOUT_S]: until guest-ping answers (default 120 s).
wait_for_agent() {
	e2e_wait "${2:-120}" agent_up "$1" ||
		{ e2e_log "no qemu-ga in $1 after ${2:-120}s; console: $(console_log "$1")"; return 1; }
}

# guest_exec_json DOMAIN PATH [ARGS...]: run PATH in the guest; prints the
# guest-exec reply and the final guest-exec-status reply, one per line.
guest_exec_json() {
	local dom=$1 req reply pid st a end=$((SECONDS + ${GUEST_EXEC_TIMEOUT:-60}))
	shift
	local i=0 named=()
	for a in "${@:2}"; do named+=(--arg "$((i++))" "$a"); done # jq 1.6 --args eats "-l"
	req=$(jq -nc --arg p "$1" --argjson n "$(($# - 1))" "${named[@]}" '{execute:"guest-exec",
		arguments:{path:$p, arg:[range($n) as $i | $ARGS.named[$i | tostring]], "capture-output":true}}')
	reply=$(qga "$dom" "$req") || return 1
	pid=$(jq -er '.return.pid' <<<"$reply") || return 1
	echo "$reply"
	while :; do
		st=$(qga "$dom" "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}") || return 1
		[[ $(jq -r '.return.exited' <<<"$st") == true ]] && break
		((SECONDS < end)) || { e2e_log "guest_exec $1: still running after ${GUEST_EXEC_TIMEOUT:-60}s"; return 1; }
		sleep 0.1
	done
	echo "$st"
}

# guest_exec DOMAIN PATH [ARGS...]: run PATH (absolute) in the guest through
# qemu-ga; prints its stdout, its stderr to stderr, returns its exit code
# (128+signal if killed; 125 if the agent call itself failed).
guest_exec() {
	local out st
	out=$(guest_exec_json "$@") || return 125
	st=$(tail -n1 <<<"$out")
	jq -r '.return["out-data"] // empty' <<<"$st" | base64 -d
	jq -r '.return["err-data"] // empty' <<<"$st" | base64 -d >&2
	return "$(jq -r '.return | if has("exitcode") then .exitcode elif has("signal") then 128 + .signal else 125 end' <<<"$st")"
}

# guest_run DOMAIN ARGV...: start ARGV in the guest through guest-exec and
# do not wait for it: a reboot or poweroff may never let the reply come.
guest_run() {
	local dom=$1 req
	shift
	req=$(jq -nc --arg p "$1" '{execute:"guest-exec", arguments:{path:$p, arg:$ARGS.positional}}' --args "${@:2}")
	qga "$dom" "$req" 5 >/dev/null 2>&1 || true
}

# console_boots DOMAIN: how many times the guest's /init reached "ready" (from
# the console log, which survives reboots and restores: works without guest-exec).
console_boots() {
	local f
	f=$(console_log "$1")
	if [[ -f $f ]]; then grep -c '^virtmq-guest: ready' "$f" || true; else echo 0; fi
}

# guest_boot_id DOMAIN: the guest kernel's boot id (changes on every boot).
guest_boot_id() { guest_exec "$1" /bin/cat /proc/sys/kernel/random/boot_id; }

# wait_for_reboot DOMAIN OLD_BOOT_ID [TIMEOUT_S]: until qemu-ga answers from a new boot.
wait_for_reboot() {
	local end=$((SECONDS + ${3:-120})) id
	while ((SECONDS < end)); do
		id=$(GUEST_EXEC_TIMEOUT=5 guest_boot_id "$1" 2>/dev/null) && [[ -n $id && $id != "$2" ]] && return 0
		sleep 0.3
	done
	e2e_log "$1 did not come back from reboot in ${3:-120}s; console: $(console_log "$1")"
	return 1
}

# ethtool_combined DOMAIN [IF]: prints "MAX CURRENT" combined channels seen in the guest.
ethtool_combined() {
	guest_exec "$1" /usr/sbin/ethtool -l "${2:-eth0}" |
		awk '/^Pre-set/ { s = "max" } /^Current/ { s = "cur" } /^Combined:/ { v[s] = $2 }
			END { if (v["max"] == "" || v["cur"] == "") exit 1; print v["max"], v["cur"] }'
}

# tap_queues TAP: prints "NUMQUEUES NUMDISABLED" of a host multiqueue tap.
tap_queues() {
	ip -d link show dev "$1" | grep -o 'numqueues [0-9]* numdisabled [0-9]*' | awk '{ print $2, $4 }' | grep .
}
