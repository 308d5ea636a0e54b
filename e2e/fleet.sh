# shellcheck shell=bash
# The fleet scenarios of the e2e suite, sourced by run.sh: a domain that
# OpenStack Nova defines is left to Nova (no redefine, no cold boot at its
# reboot, no guest agent or QMP command, an enforce hook lets it start)
# until the policy opts Nova in; the metrics endpoint served with TLS,
# client certificates and basic auth (--web.config.file); and one
# Prometheus view of two hosts (the dashboard's fleet panels, the policy
# digests, an agent down).

# What nova's libvirt driver writes into <metadata> (nova/1.1, shortened).
NOVA_METADATA="<nova:instance xmlns:nova='http://openstack.org/xmlns/libvirt/nova/1.1'>\
<nova:package version='27.1.0'/><nova:name>web-frontend-1</nova:name>\
<nova:flavor name='m1.large'><nova:memory>512</nova:memory><nova:vcpus>4</nova:vcpus></nova:flavor>\
<nova:owner><nova:project uuid='a1b2c3d4e5f60718293a4b5c6d7e8f90'>demo</nova:project></nova:owner></nova:instance>"

# policy_digest: the digest of the agent's policy in force.
policy_digest() { status_json | jq -r .policy.digest; }
policy_mode() { status_json | jq -r .policy.mode; }

# metrics_of FILTER: the agent's /metrics lines that hold FILTER.
metrics_of() { curl -fsS "http://$METRICS_LISTEN/metrics" | grep -F "$1" || true; }

# (a) a Nova instance, 4 vCPUs and no queues (any other domain here would
# be redefined, cold booted at its reboot and get the guest step), in an
# enforce policy with apply_at: next-reboot: it starts, and the agent, the
# hook, `virtmq plan` and the metrics leave it to Nova, naming Nova's knob;
# a reboot is Nova's (the same QEMU), nothing is redefined and no guest
# agent or QMP command reaches it. Then orchestrators: {nova: apply} opts
# Nova in and the agent manages it like any other domain.
orchestrator_nova() {
	local d=${P}nova id boots out uuid digest rc=0
	trap 'write_policy apply; kill -HUP "$(agent_pid)"' EXIT
	write_policy enforce next-reboot
	kill -HUP "$(agent_pid)"
	eventually 10 "policy mode" enforce policy_mode
	rm -f "/var/log/libvirt/qemu/$d.log"
	define_domain "$d" --metadata-xml "$NOVA_METADATA"
	e2e_virsh start "$d" >/dev/null || fail "the enforce hook refused the start of Nova's domain"
	e2e_log "ok: an enforce host starts Nova's domain without queues"
	eventually 30 "$d state" unmanaged status_of "$d" .state
	check "$d orchestrator, mode" "$(status_of "$d" '"\(.orchestrator) \(.orchestrator_mode)"')" "nova leave"
	check_match "$d problem names Nova's knob" "$(status_of "$d" .problem)" \
		"^left to OpenStack Nova, .*the flavor's hw:vif_multiqueue_enabled extra spec or the image's hw_vif_multiqueue_enabled property"
	check "$d NIC managed" "$(status_of "$d" '.nics[0].managed')" false

	out=$(e2e_virsh dumpxml --inactive "$d" | "$BIN/virtmq" plan --policy "$POLICY" - 2>&1) || fail "virtmq plan: $out"
	check_match "virtmq plan: left to Nova" "$out" "left to OpenStack Nova"
	[[ $out != *" *"* ]] || fail "virtmq plan changes Nova's domain: $out"
	out=$(e2e_virsh dumpxml "$d" | "$BIN/virtmq-hook" --policy "$POLICY" "$d" prepare begin - 2>&1) || rc=$?
	check "the hook (enforce) at prepare: exit" "$rc" 0
	check_match "the hook's log line" "$out" 'msg="domain left to its orchestrator".* orchestrator=nova .*hw:vif_multiqueue_enabled'

	uuid=$(status_of "$d" .uuid)
	check "metrics: virtmq_domain_orchestrated" "$(metrics_of "virtmq_domain_orchestrated{domain=\"$d\"")" \
		"virtmq_domain_orchestrated{domain=\"$d\",mode=\"leave\",orchestrator=\"nova\",uuid=\"$uuid\"} 1"
	digest=$(policy_digest)
	check "metrics: virtmq_policy_info names the digest of the status" "$(metrics_of virtmq_policy_info'{')" \
		"virtmq_policy_info{digest=\"$digest\",mode=\"enforce\"} 1"

	# Its reboot: ACPI (libvirt's fake reboot: the same QEMU), so that no
	# command of the harness's reaches qemu-ga either.
	e2e_wait 120 qga_connected "$d" || fail "no qemu-ga port in $d; console: $(console_log "$d")"
	sleep 3 # the agent had the guest agent's connect event: a guest step would run now
	id=$(e2e_virsh domid "$d")
	boots=$(console_boots "$d")
	e2e_virsh reboot --mode acpi "$d" >/dev/null
	eventually 120 "$d boots after its reboot" $((boots + 1)) console_boots "$d"
	e2e_wait 60 qga_connected "$d" || fail "no qemu-ga port in $d after its reboot"
	sleep 3
	check "$d domain id after the reboot (no cold boot)" "$(e2e_virsh domid "$d")" "$id"
	check "$d running queues" "$(live_queues "$d")" ""
	check "$d definition untouched" "$(defined_queues "$d")" ""
	check "$d agent's last action" "$(status_of "$d" '.last_action // ""')" ""
	check "$d taints in libvirt's log (guest agent, QMP)" "$(taints "$d")" ""
	check "$d restart intents" "$(ls -A "$RUN/state/restart" 2>/dev/null)" ""
	grep -F "domain=$d " "$AGENT_LOG" | grep -qE 'msg="[^"]*(redefined|guest step|pausing)' &&
		fail "the agent acted on $d: $(grep -F "domain=$d " "$AGENT_LOG" | tail -3)"
	e2e_log "ok: $d rebooted as Nova's: no redefine, no cold boot, no guest agent or QMP command"

	# Opted in: the agent manages it (redefines it; it is pending its cold
	# boot), the policy's digest changes, the plan warns.
	write_policy apply next-reboot
	echo "orchestrators: {nova: apply}" >>"$POLICY"
	kill -HUP "$(agent_pid)"
	eventually 10 "policy mode" apply policy_mode
	[[ $(policy_digest) != "$digest" ]] || fail "the digest did not change with the policy"
	eventually 30 "opted in: the agent rewrote $d" 4 defined_queues "$d"
	eventually 30 "opted in: $d state" pending-cold-boot status_of "$d" .state
	check "opted in: $d orchestrator mode" "$(status_of "$d" .orchestrator_mode)" apply
	check_match "opted in: $d warning" "$(status_of "$d" '.warnings | join(";")')" "managed by virtmq \(orchestrators: nova: apply\)"
	e2e_virsh destroy "$d" >/dev/null
	e2e_virsh undefine "$d" >/dev/null
}

# A bcrypt hash (cost 10) of the scrape password, as htpasswd -nBC 10 writes it.
SCRAPE_PASSWORD=virtmq-e2e-scrape
# shellcheck disable=SC2016 # a bcrypt hash, not an expansion
SCRAPE_HASH='$2a$10$HKlv1OKmi9WkCs8k2hpCxeR7OkiewMMJJw/xBuxX7Wi7CbsBrF5xW'

# tls_pki DIR: a CA, a server certificate for 127.0.0.1 and a client
# certificate signed by it (openssl), in DIR.
tls_pki() {
	local dir=$1 who
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=virtmq-e2e-ca \
		-keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
	for who in server client; do
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=virtmq-e2e-$who" \
			-keyout "$dir/$who.key" -out "$dir/$who.csr" 2>/dev/null
		openssl x509 -req -in "$dir/$who.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 1 \
			-extfile <(printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=%s\n' "$([[ $who == server ]] && echo serverAuth || echo clientAuth)") \
			-out "$dir/$who.crt" 2>/dev/null
	done
}

# (b) the metrics endpoint with --web.config.file, as node_exporter serves
# it: a second agent in mode observe (it changes nothing beside the
# suite's) with TLS and basic auth. A scrape without credentials, with a
# wrong password or in plain HTTP is refused, one with them works; the
# file is read again per connection: asking for client certificates then
# refuses a scrape without one and takes one with the CA's. A web config
# that does not load stops the agent's start.
metrics_tls() {
	local dir=$RUN/tls addr pid url out rc=0
	rm -rf "$dir" && mkdir -p "$dir"
	tls_pki "$dir"
	addr=127.0.0.1:$(free_port) || fail "no free port"
	url=https://$addr/metrics
	cat >"$dir/web.yml" <<-YAML
		tls_server_config:
		  cert_file: $dir/server.crt
		  key_file: $dir/server.key
		basic_auth_users:
		  prometheus: '$SCRAPE_HASH'
	YAML
	chmod 0600 "$dir/web.yml"
	sed 's/^mode: .*/mode: observe/' "$POLICY" >"$dir/policy.yaml"
	"$BIN/virtmq-agent" --policy "$dir/policy.yaml" --socket "$LIBVIRT_SOCK" --status-socket "$dir/status.sock" \
		--state-dir "$dir/state" --metrics-listen "$addr" --web.config.file "$dir/web.yml" >>"$VIRTMQ_E2E_LOGDIR/agent-tls.log" 2>&1 &
	pid=$!
	# shellcheck disable=SC2064 # $pid now: the agent of this scenario
	trap "stop_pid $pid 10 || true" EXIT
	e2e_wait 10 "$BIN/virtmq" status --status-socket "$dir/status.sock" || fail "the TLS agent did not start (log: $VIRTMQ_E2E_LOGDIR/agent-tls.log)"
	code() { curl -s -o /dev/null -w '%{http_code}' --cacert "$dir/ca.crt" "$@"; }
	check "https without credentials: HTTP status" "$(code "$url")" 401
	check "https with a wrong password: HTTP status" "$(code -u prometheus:wrong "$url")" 401
	check "plain http: HTTP status" "$(code -u "prometheus:$SCRAPE_PASSWORD" "http://$addr/metrics")" 400
	out=$(curl -fsS --cacert "$dir/ca.crt" -u "prometheus:$SCRAPE_PASSWORD" "$url") || fail "https with the credentials failed"
	check_match "https with the credentials: the metrics" "$out" 'virtmq_policy_info\{digest="[0-9a-f]{16}",mode="observe"\} 1'

	cat >"$dir/web.yml" <<-YAML
		tls_server_config:
		  cert_file: $dir/server.crt
		  key_file: $dir/server.key
		  client_auth_type: RequireAndVerifyClientCert
		  client_ca_file: $dir/ca.crt
		basic_auth_users:
		  prometheus: '$SCRAPE_HASH'
	YAML
	curl -fsS -o /dev/null --cacert "$dir/ca.crt" -u "prometheus:$SCRAPE_PASSWORD" "$url" 2>/dev/null && fail "a scrape without a client certificate got the metrics"
	e2e_log "ok: a scrape without a client certificate is refused (the web config is read again per connection)"
	check "https with the client certificate and the credentials: HTTP status" \
		"$(code --cert "$dir/client.crt" --key "$dir/client.key" -u "prometheus:$SCRAPE_PASSWORD" "$url")" 200
	check "https with the client certificate, no credentials: HTTP status" \
		"$(code --cert "$dir/client.crt" --key "$dir/client.key" "$url")" 401
	stop_pid "$pid" 10

	printf 'tls_server_config:\n  cert_file: %s/none.crt\n  key_file: %s/none.key\n' "$dir" "$dir" >"$dir/bad.yml"
	out=$(timeout 20 "$BIN/virtmq-agent" --policy "$dir/policy.yaml" --socket "$LIBVIRT_SOCK" --status-socket "$dir/status2.sock" \
		--state-dir "$dir/state" --metrics-listen "$addr" --web.config.file "$dir/bad.yml" 2>&1) || rc=$?
	check "an agent with a web config that does not load: exit" "$rc" 1
	check_match "its error" "$out" "metrics web config $dir/bad.yml"
}

# dash_query TITLE: the PromQL of the first query of the dashboard's panel
# TITLE, for every host ($instance = .*).
dash_query() {
	jq -r --arg t "$1" '[.. | objects | select(.title? == $t) | .targets[0].expr][0] | gsub("\\$instance"; ".*")' \
		"$REPO/packaging/monitoring/virtmq-dashboard.json"
}
prom_value() { prom_query "$1" '.data.result[0].value[1]'; }

# (c) one view of two hosts: a real Prometheus scrapes the agents of both
# libvirt hosts (migration.sh's second host) with the shipped rules, and
# the dashboard's fleet panels and the recording rules follow the hosts:
# one policy on both (the same digest) is one policy in force; host 2's
# policy changed makes two, with the hosts of each digest; host 2's agent
# stopped is one agent down, and none once it is back.
fleet_view() {
	local m1 m2 d1 d2
	trap 'prometheus_stop; pid_alive "$(on2 agent_pid)" || on2 agent_start' EXIT
	host2_start
	m1=$METRICS_LISTEN m2=$(cat "$H2_RUN/metrics.listen")
	prometheus_start "$m1,$m2" "$REPO/packaging/monitoring/virtmq-rules.yml"
	eventually 30 "Prometheus: agents up (job:virtmq_agents_up:sum)" 2 prom_value 'job:virtmq_agents_up:sum'
	d1=$(policy_digest) d2=$(on2 policy_digest)
	check "the same policy on both hosts: the same digest" "$d2" "$d1"
	eventually 30 "dashboard 'Policies in force'" 1 prom_value "$(dash_query 'Policies in force')"
	eventually 30 "Prometheus: the digest of each host" "$(words_sorted "$m1=$d1" "$m2=$d1")" \
		prom_query virtmq_policy_info '[.data.result[] | "\(.metric.instance)=\(.metric.digest)"] | sort | join(" ")'

	cat >>"$POLICY2" <<-YAML
		  - name: only-here
		    match: {domain: ${P}nothing-*}
		    set: {queues: 2}
	YAML
	on2 agent_reload
	d2=$(on2 policy_digest)
	[[ $d2 != "$d1" ]] || fail "host 2's digest did not change with its policy"
	eventually 30 "Prometheus: policies in force (job:virtmq_policy_digests:count)" 2 prom_value 'job:virtmq_policy_digests:count'
	check "dashboard 'Policies in force'" "$(prom_value "$(dash_query 'Policies in force')")" 2
	check "Prometheus: hosts per digest (job_digest:virtmq_policy_hosts:count)" \
		"$(prom_query job_digest:virtmq_policy_hosts:count '[.data.result[] | "\(.metric.digest)=\(.value[1])"] | sort | join(" ")')" \
		"$(words_sorted "$d1=1" "$d2=1")"

	on2 agent_stop
	eventually 30 "Prometheus: agents down (job:virtmq_agents_down:sum)" 1 prom_value 'job:virtmq_agents_down:sum'
	check "dashboard 'Agents down'" "$(prom_value "$(dash_query 'Agents down')")" 1
	cp "$POLICY" "$POLICY2"
	on2 agent_start
	eventually 30 "Prometheus: agents down once host 2's agent is back" 0 prom_value 'job:virtmq_agents_down:sum'
	eventually 30 "dashboard 'Policies in force' with host 2 back on the fleet's policy" 1 prom_value "$(dash_query 'Policies in force')"
}
