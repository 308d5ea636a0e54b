#!/bin/sh
# The test-mode stand-in for systemd on a host without it as PID 1 (this
# test's machine): start|reload|stop the installed virtmq-agent with its
# packaged defaults, as the unit runs it (/run/virtmq made as the unit's
# RuntimeDirectory= does). The role runs it through virtmq_start_command and
# virtmq_reload_command.
set -eu
dir=${VIRTMQ_ANSIBLE_TEST_RUN:-/run/virtmq-ansible-test}
pidfile=$dir/agent.pid
alive() { [ -r "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
case ${1:-} in
start)
	alive && exit 0
	mkdir -p "$dir" /run/virtmq
	setsid /usr/sbin/virtmq-agent >>"$dir/agent.log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	i=0
	until /usr/sbin/virtmq status --json >/dev/null 2>&1; do
		i=$((i + 1))
		[ "$i" -lt 100 ] || { echo "virtmq-agent did not answer (log: $dir/agent.log)" >&2; exit 1; }
		alive || { echo "virtmq-agent exited (log: $dir/agent.log)" >&2; exit 1; }
		sleep 0.1
	done
	;;
reload) alive && kill -HUP "$(cat "$pidfile")" ;;
stop)
	if alive; then
		kill -TERM "$(cat "$pidfile")"
		i=0
		while alive && [ "$i" -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
	fi
	rm -f "$pidfile"
	;;
*)
	echo "usage: $0 start|reload|stop" >&2
	exit 2
	;;
esac
