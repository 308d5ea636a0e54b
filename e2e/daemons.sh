#!/usr/bin/env bash
# Runs the libvirt daemons and the test bridge without systemd.
#   daemons.sh start     virtlogd + libvirtd (reused if already running) + bridge
#   daemons.sh stop      remove virtmq-e2e-* domains, stop what the harness started
#   daemons.sh restart   restart the harness's libvirtd (domains keep running)
#   daemons.sh status    exit 0 if libvirt answers, 3 if not
# VIRTMQ_E2E_HOOKS_DIR=DIR: libvirtd sees DIR as /etc/libvirt/hooks (private
# mount namespace; the machine's hooks are untouched).
set -euo pipefail
# shellcheck source=e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $(id -u) == 0 ]] || e2e_die "run as root"
mkdir -p "$VIRTMQ_E2E_STATE"

case ${1:-} in
start) e2e_time "daemons start" daemons_start && daemons_status ;;
stop) e2e_time "daemons stop" daemons_stop ;;
restart) e2e_time "libvirtd restart" libvirtd_restart && daemons_status ;;
status) daemons_status ;;
*)
	echo "usage: $0 start|stop|restart|status" >&2
	exit 2
	;;
esac
