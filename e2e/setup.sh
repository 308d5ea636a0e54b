#!/usr/bin/env bash
# Installs the missing Debian packages of the e2e harness and builds the tiny
# guest once into $VIRTMQ_E2E_CACHE/guest-<hash> ($VIRTMQ_E2E_CACHE/guest links
# to the current one). The hash covers e2e/guest/* and the versions of the host
# binaries copied into the guest, so changing either rebuilds. Idempotent.
#   setup.sh [--rebuild]
set -euo pipefail
umask 022
# shellcheck source=e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-guest-agent ethtool
	busybox-static libxml2-utils iperf3 jq lz4 iproute2 util-linux procps prometheus curl)
[[ $(id -u) == 0 ]] || e2e_die "run as root"

# Another apt/dpkg run (e.g. the lead's background install, logging to
# /tmp/apt.log) holds the dpkg lock: wait for it instead of fighting it.
apt_busy() {
	local n
	for n in apt-get apt dpkg aptitude unattended-upgr; do pgrep -x "$n" >/dev/null && return 0; done
	return 1
}
wait_for_apt() {
	local waited=0
	while apt_busy; do
		((waited % 30 == 0)) &&
			e2e_log "waiting for a running apt/dpkg (${waited}s): $(tail -n1 /tmp/apt.log 2>/dev/null || true)"
		((waited < 1800)) || e2e_die "apt/dpkg still busy after 30 min"
		sleep 2
		waited=$((waited + 2))
	done
}

APT_UPDATED=
apt_update_once() {
	[[ -n $APT_UPDATED ]] && return 0
	wait_for_apt
	apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null
	APT_UPDATED=1
}

install_packages() {
	local p missing=()
	for p in "${PACKAGES[@]}"; do
		[[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	e2e_log "installing ${missing[*]}"
	apt_update_once
	wait_for_apt
	DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 \
		install --no-install-recommends "${missing[@]}" >/dev/null
}

guest_hash() {
	{
		cat "$E2E_DIR"/guest/*
		dpkg-query -W qemu-guest-agent ethtool iperf3 busybox-static
	} | sha256sum | cut -c1-16
}

build_guest() {
	local hash dir
	hash=$(guest_hash)
	dir=$VIRTMQ_E2E_CACHE/guest-$hash
	mkdir -p "$VIRTMQ_E2E_CACHE"
	chmod 0755 "$VIRTMQ_E2E_CACHE"
	exec 9>"$VIRTMQ_E2E_CACHE/.lock"
	flock 9 # one build at a time
	if [[ ${1:-} == --rebuild ]]; then rm -rf "$dir"; fi
	if [[ ! -f $dir/info ]]; then
		e2e_log "building the guest ($hash)"
		apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1 || apt_update_once
		rm -rf "$dir.tmp"
		"$E2E_DIR/guest/build.sh" "$dir.tmp" "$VIRTMQ_E2E_CACHE/debs" ||
			{ rm -rf "$dir.tmp"; e2e_die "guest build failed"; }
		mv "$dir.tmp" "$dir"
	fi
	ln -sfn "guest-$hash" "$VIRTMQ_E2E_CACHE/guest"
	find "$VIRTMQ_E2E_CACHE" -maxdepth 1 -name 'guest-*' ! -name "guest-$hash" -exec rm -rf {} +
	# qemu runs as libvirt-qemu: every folder on the way must be searchable
	chmod -R a+rX "$dir"
	e2e_log "guest: $dir ($(grep -E '^kernel_(release|kind)=' "$dir/info" | cut -d= -f2 | paste -sd' '))"
	exec 9>&-
}

e2e_time "packages" install_packages
e2e_time "guest" build_guest "$@"
