# shellcheck shell=bash
# Installing Debian packages from the shell suites (e2e/setup.sh,
# packaging/test.sh, packaging/monitoring/test.sh, tools/shellcheck.sh):
# one way to wait for another apt/dpkg run and to install what is missing.
#
#   apt_wait                  until no apt-get/dpkg runs (30 min at most)
#   apt_missing PKG...        prints the packages that are not installed
#   apt_install PKG...        installs them (apt-get update once, if needed)
#
# APT_NO_START=1: no service starts during the install (a policy-rc.d for
# the install's time, when the machine has none).

apt_busy() {
	local n
	for n in apt-get apt dpkg aptitude unattended-upgr; do pgrep -x "$n" >/dev/null && return 0; done
	fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock >/dev/null 2>&1
}

apt_wait() {
	local waited=0
	while apt_busy; do
		((waited % 30 == 0)) && echo "apt: waiting for another apt/dpkg run (${waited}s)" >&2
		((waited < 1800)) || { echo "apt: apt/dpkg still busy after 30 min" >&2; return 1; }
		sleep 2
		waited=$((waited + 2))
	done
}

apt_missing() {
	local p
	for p in "$@"; do
		[[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || echo "$p"
	done
}

apt_install() {
	local rcd='' rc=0
	(($#)) || return 0
	apt_wait || return 1
	if [[ ${APT_NO_START:-} == 1 && ! -e /usr/sbin/policy-rc.d ]]; then
		rcd=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\n# virtmq test harness: no service starts during its install\nexit 101\n' >"$rcd"
		chmod 0755 "$rcd"
	fi
	apt_get install "$@" || { apt_get update && apt_get install "$@"; } || rc=$?
	[[ -z $rcd ]] || rm -f "$rcd"
	return "$rc"
}

# apt_get install|update ARGS...: quiet, non-interactive, patient with the lock.
apt_get() {
	local verb=$1
	shift
	if [[ $verb == install ]]; then set -- -y install --no-install-recommends "$@"; else set -- "$verb" "$@"; fi
	DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=1800 "$@" </dev/null >/dev/null
}
