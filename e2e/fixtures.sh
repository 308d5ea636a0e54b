# shellcheck shell=bash
# The virtmq side of the real-stack harness, shared by the e2e suite
# (e2e/run.sh) and the real-stack bench (bench/realstack.sh): the test
# policy, the hook as a package installs it, virtmq-agent, and probes that
# read state (virtmq status --json, libvirt's XML through XPath), never log
# wording. Source it after e2e/lib.sh, with these set:
#   BIN            the folder of virtmq, virtmq-hook and virtmq-agent
#   POLICY         the test policy file
#   STATUS_SOCK    the agent's status socket
#   AGENT_LOG      where the agent logs
#   AGENT_PIDFILE  the agent's pid (a file: scenarios run in subshells)
# and optionally:
#   METRICS_LISTEN the agent's --metrics-listen address (empty: no endpoint)

# write_policy MODE [APPLY_AT]: the test policy. combined 2 makes the guest
# step do real work: the kernel alone would enable min(vCPUs, N) = 4 pairs.
# APPLY_AT defaults to cold-boot.
write_policy() {
	cat >"$POLICY" <<-YAML
		version: 1
		mode: $1
		on_error: allow
		defaults:
		  queues: vcpus
		  max: 8
		  combined: 2
		  apply_at: ${2:-cold-boot}
		rules:
		  # hotplug_nic plugs a NIC with queues='2' and expects the guest step:
		  # virtmq owns that count (hand_set: keep, the default, would keep it).
		  - name: hotplug-owned
		    match: {domain: ${VIRTMQ_E2E_PREFIX}hotnic}
		    set: {hand_set: override}
	YAML
}

# install_hook HOOKS_DIR: HOOKS_DIR/qemu.d/50-virtmq runs the hook with the
# test policy (libvirtd sees HOOKS_DIR as /etc/libvirt/hooks, lib.sh).
install_hook() {
	mkdir -p "$1/qemu.d"
	cat >"$1/qemu.d/50-virtmq" <<-SH
		#!/bin/sh
		VIRTMQ_INCOMING_DIR=${RUN:?}/incoming exec $BIN/virtmq-hook --policy $POLICY "\$@"
	SH
	chmod 0755 "$1/qemu.d/50-virtmq"
	# A test switch: with the file kill-agent-at-release.DOMAIN beside the agent's pidfile, the
	# release of DOMAIN (its QEMU stopped) kills virtmq-agent with SIGKILL,
	# right after the stop and before anything could start it again.
	cat >"$1/qemu.d/40-kill-agent" <<-SH
		#!/bin/sh
		if [ "\$2" = release ] && [ -e "${AGENT_PIDFILE%/*}/kill-agent-at-release.\$1" ]; then
			rm -f "${AGENT_PIDFILE%/*}/kill-agent-at-release.\$1"
			kill -KILL "\$(cat "$AGENT_PIDFILE")" 2>/dev/null
		fi
		exit 0
	SH
	chmod 0755 "$1/qemu.d/40-kill-agent"
}

agent_pid() { cat "$AGENT_PIDFILE" 2>/dev/null; }
pid_gone() { ! pid_alive "$1"; } # zombies count as gone: PID 1 reaps slowly here

# agent_start: virtmq-agent on the harness's libvirtd, until its status answers.
# AGENT_BIN (default $BIN/virtmq-agent) is the binary: e2e/chaos.sh runs a
# failpoints build.
agent_start() {
	"${AGENT_BIN:-$BIN/virtmq-agent}" --policy "$POLICY" --socket "$LIBVIRT_SOCK" --status-socket "$STATUS_SOCK" \
		--state-dir "${AGENT_PIDFILE%/*}/state" ${METRICS_LISTEN:+--metrics-listen "$METRICS_LISTEN"} --log-level debug >>"$AGENT_LOG" 2>&1 &
	echo $! >"$AGENT_PIDFILE"
	e2e_wait 10 "$BIN/virtmq" status --status-socket "$STATUS_SOCK" ||
		e2e_die "virtmq-agent did not answer on $STATUS_SOCK (log: $AGENT_LOG)"
}

agent_stop() {
	local pid
	pid=$(agent_pid) || return 0
	kill -CONT "$pid" 2>/dev/null || true
	kill -TERM "$pid" 2>/dev/null || true
	e2e_wait 10 pid_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
	rm -f "$AGENT_PIDFILE"
}

# reloaded_since LOADED_AT: the agent put a policy in force after LOADED_AT.
reloaded_since() { [[ $(status_json | jq -r .policy.loaded_at) != "$1" ]]; }
# agent_reload: SIGHUP, until the agent reports a reload after the signal.
agent_reload() {
	local before
	before=$(status_json | jq -r .policy.loaded_at)
	kill -HUP "$(agent_pid)"
	e2e_wait 10 reloaded_since "$before" ||
		e2e_die "the agent (pid $(agent_pid)) did not reload its policy"
	[[ -z $(status_json | jq -r '.policy.last_reload_error // ""') ]] ||
		e2e_die "the agent refused its policy: $(status_json | jq -r .policy.last_reload_error)"
}

# --- Prometheus -------------------------------------------------------------------
# A real Prometheus server (Debian's prometheus package; its systemd service
# is not used) on a free loopback port with a temporary storage folder,
# scraping the agent every second with the shipped rules loaded.
PROM_DIR=$VIRTMQ_E2E_STATE/prometheus
PROM_PIDFILE=$PROM_DIR/pid
PROM_URLFILE=$PROM_DIR/url # a file: scenarios run in subshells

# free_port: a TCP port nothing listens on at the moment.
free_port() {
	local p _
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 40000))
		[[ -z $(ss -Hltn "sport = :$p") ]] && { echo "$p"; return 0; }
	done
	return 1
}

prom_url() { cat "$PROM_URLFILE" 2>/dev/null; }
prom_ready() { curl -fsS "$(prom_url)/-/ready" >/dev/null; }

# prometheus_start TARGETS RULES: Prometheus scraping TARGETS (host:port,
# comma-separated: one agent per host) as job virtmq-agent every second, with
# the rule file RULES, until it is ready.
prometheus_start() {
	local target=$1 rules=$2 port pid
	prometheus_stop
	rm -rf "$PROM_DIR"
	mkdir -p "$PROM_DIR/data"
	port=$(free_port) || e2e_die "no free port for Prometheus"
	cat >"$PROM_DIR/prometheus.yml" <<-YAML
		global:
		  scrape_interval: 1s
		  evaluation_interval: 1s
		rule_files: ['$rules']
		scrape_configs:
		  - job_name: virtmq-agent
		    static_configs:
		      - targets: ['${target//,/\',\'}']
	YAML
	/usr/bin/prometheus --config.file="$PROM_DIR/prometheus.yml" --storage.tsdb.path="$PROM_DIR/data" \
		--web.listen-address="127.0.0.1:$port" >>"$VIRTMQ_E2E_LOGDIR/prometheus.log" 2>&1 &
	pid=$!
	echo "$pid" >"$PROM_PIDFILE"
	echo "http://127.0.0.1:$port" >"$PROM_URLFILE"
	e2e_wait 60 prom_ready || e2e_die "Prometheus did not get ready on 127.0.0.1:$port (log: $VIRTMQ_E2E_LOGDIR/prometheus.log)"
	e2e_log "Prometheus pid $pid on 127.0.0.1:$port scrapes $target"
}

prometheus_stop() {
	local pid
	pid=$(cat "$PROM_PIDFILE" 2>/dev/null) || return 0
	[[ $(cat "/proc/$pid/comm" 2>/dev/null) == prometheus ]] && stop_pid "$pid" 30
	rm -f "$PROM_PIDFILE" "$PROM_URLFILE"
}

# prom_query PROMQL [JQ]: an instant query through the HTTP API; prints
# JQ (default: each series' labels and value, one a line) of the result.
prom_query() {
	local each='.data.result[] | "\(.metric | del(.__name__) | tostring) \(.value[1])"'
	curl -fsS --get --data-urlencode "query=$1" "$(prom_url)/api/v1/query" | jq -r "${2:-$each}"
}

# status_json: the agent's state (virtmq status --json).
status_json() { "$BIN/virtmq" status --json --status-socket "$STATUS_SOCK"; }
# status_of DOMAIN JQ: a field of the agent's state for DOMAIN.
status_of() { status_json | jq -r --arg d "$1" ".domains[] | select(.name == \$d) | $2"; }

# verify_checks JSON CHECK: "STATUS GOT/WANT" of every check named CHECK in
# a `virtmq verify --json` document (GOT/WANT left out where the check has
# none), comma-separated in the order verify ran them.
verify_checks() {
	jq -r --arg c "$2" '[.checks[] | select(.check == $c) | .status + (if .got != null then " \(.got)/\(.want)" else "" end)] | join(",")' <<<"$1"
}

# xml_queues [FILE]: the first NIC's <driver queues>, from XML on stdin or in FILE.
xml_queues() { xmllint --xpath 'string(/domain/devices/interface[1]/driver/@queues)' "${1:--}"; }
defined_queues() { e2e_virsh dumpxml --inactive "$1" | xml_queues -; }
defined_queues_are() { [[ $(defined_queues "$1") == "$2" ]]; }
live_queues() { e2e_virsh dumpxml "$1" | xml_queues -; }
