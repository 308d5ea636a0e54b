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
	busybox-static libxml2-utils iperf3 jq lz4 iproute2 util-linux procps prometheus curl
	openssh-server openssh-client)
[[ $(id -u) == 0 ]] || e2e_die "run as root"

# shellcheck source=e2e/apt.sh
source "$E2E_DIR/apt.sh"

install_packages() {
	local missing
	mapfile -t missing < <(apt_missing "${PACKAGES[@]}")
	((${#missing[@]})) || return 0
	e2e_log "installing ${missing[*]}"
	# The harness starts the daemons it needs itself (libvirtd, and sshd
	# on a loopback port for remote_ssh): installing must not start
	# system services (an sshd on :22 that would linger).
	APT_NO_START=1 apt_install "${missing[@]}"
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
		apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1 || { apt_wait && apt_get update; }
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
