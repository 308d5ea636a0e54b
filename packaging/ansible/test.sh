#!/usr/bin/env bash
# packaging/ansible/test.sh — the Ansible role's test (make ansible-test):
# ansible-playbook against this machine (connection: local) and the e2e
# harness's libvirtd, with the .deb that `make packages` built:
#   1. rollout.yml -e virtmq_mode=observe: installs the package, places the
#      policy, starts the agent; a domain is reported would-redefine and
#      its definition is untouched;
#   2. rollout.yml -e virtmq_mode=apply: the handler reloads the agent,
#      which redefines the domain;
#   2b. with virtmq_policy_d_exclusive, a drop-in put there by hand is removed;
#   3. the same again: changed=0;
#   4. a broken drop-in is refused with lint's file:line:col message and
#      never lands; the agent keeps its policy;
#   5. cold_boot.yml with nothing pending: ok, changed=0; of a domain that
#      does not exist: virtmq's exit code 1 is the task's failure;
#   6. with the agent stopped, the status check fails the play first;
#   7. ansible-lint of packaging/ansible: clean.
# The agent runs without systemd (tests/agent-ctl.sh, the role's
# virtmq_service_manager: command). Run as root; it refuses when virtmq is
# already installed, and purges the package, stops the agent and the
# daemons it started on any exit. Installs ansible-core, ansible-lint and
# python3-apt when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
dir=$root/packaging/ansible
[[ $(id -u) == 0 ]] || { echo "packaging/ansible/test.sh: run as root (it installs the .deb)" >&2; exit 1; }
[[ -f dist/packages.env ]] || { echo "packaging/ansible/test.sh: no dist/packages.env: run make packages first" >&2; exit 1; }
# shellcheck source=/dev/null
. dist/packages.env
DEB=$root/$DEB
[[ -f $DEB ]] || { echo "packaging/ansible/test.sh: $DEB is missing" >&2; exit 1; }

# shellcheck source=e2e/lib.sh
source "$root/e2e/lib.sh"
# shellcheck source=e2e/fixtures.sh
source "$root/e2e/fixtures.sh" # its libvirt probes (defined_queues)
work=$(mktemp -d /tmp/virtmq-ansible-test.XXXXXX)
export VIRTMQ_ANSIBLE_TEST_RUN=$work/run
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_LOCAL_TEMP=$work/tmp ANSIBLE_REMOTE_TEMP=$work/tmp
D=${VIRTMQ_E2E_PREFIX}ansible
installed=
# Every check is reported and counted; the summary line reads the counts.
CHECK_KEEP_GOING=1
# shellcheck source=e2e/check.sh
source "$root/e2e/check.sh"
# shellcheck source=e2e/apt.sh
source "$root/e2e/apt.sh"
step() { echo; echo "== $*"; }

cleanup() {
	local rc=$?
	"$dir/tests/agent-ctl.sh" stop || true
	e2e_virsh undefine "$D" >/dev/null 2>&1 || true
	if [[ -n $installed ]] && dpkg-query -W virtmq >/dev/null 2>&1; then
		echo "== cleanup: purging virtmq"
		dpkg --purge virtmq >/dev/null 2>&1 || echo "packaging/ansible/test.sh: WARNING: dpkg --purge virtmq failed; purge it by hand" >&2
	fi
	rm -rf /var/cache/virtmq-ansible
	# What the role placed beside the package's files: purge leaves them.
	rm -f /etc/virtmq/policy.d/50-scratch.yaml /etc/virtmq/policy.d/99-rollout-mode.yaml /etc/virtmq/policy.d/40-stray.yaml
	rmdir /etc/virtmq/policy.d /etc/virtmq 2>/dev/null || true
	daemons_stop started
	rm -rf "$work"
	echo
	echo "ansible-test: $CHECK_PASSED passed, $CHECK_FAILED failed"
	((rc == 0 && CHECK_FAILED == 0)) || exit 1
}

need=()
command -v ansible-playbook >/dev/null || need+=(ansible-core)
command -v ansible-lint >/dev/null || need+=(ansible-lint)
/usr/bin/python3 -c 'import apt' 2>/dev/null || need+=(python3-apt) # ansible's apt module
if ((${#need[@]})); then
	step "installing ${need[*]}"
	apt_install "${need[@]}"
fi
if dpkg-query -W -f='${db:Status-Status}' virtmq 2>/dev/null | grep -qv '^not-installed$'; then
	echo "packaging/ansible/test.sh: virtmq is already installed (or its config is left): refusing to touch it; dpkg --purge virtmq first" >&2
	exit 1
fi
trap cleanup EXIT
mkdir -p "$work/tmp"

step "the e2e harness's libvirtd (its hooks: the machine's, where the package installs its hook)"
VIRTMQ_E2E_HOOKS_DIR='' daemons_start
e2e_virsh undefine "$D" >/dev/null 2>&1 || true
# 4 vCPUs, a virtio NIC without queues: the policy wants 4. Defined, never started.
e2e_virsh define /dev/stdin >/dev/null <<-XML
	<domain type='qemu'><name>$D</name><memory unit='MiB'>256</memory><vcpu>4</vcpu>
	<os><type arch='x86_64' machine='pc'>hvm</type></os>
	<devices><interface type='bridge'><source bridge='$VIRTMQ_E2E_BRIDGE'/><mac address='52:54:00:7a:52:01'/><model type='virtio'/></interface></devices></domain>
XML
state_is() { [[ $(state_of) == "$1" ]]; }
state_of() { /usr/sbin/virtmq status --json | jq -r --arg d "$D" '.domains[] | select(.name == $d) | .state'; }

# play NAME PLAYBOOK ARGS...: ansible-playbook, its output in $work/NAME.out.
play() {
	local name=$1 pb=$2 rc=0
	shift 2
	ansible-playbook -i "$dir/tests/hosts" "$dir/$pb" -e "@$dir/tests/vars.yml" -e "virtmq_package_file=$DEB" "$@" >"$work/$name.out" 2>&1 || rc=$?
	grep -E '^localhost +:' "$work/$name.out" | sed "s/^/   $name: /" || true
	return "$rc"
}
recap() { grep -E '^localhost +:' "$work/$1.out" | grep -oE "$2=[0-9]+"; }

step "1. observe: install, policy, agent"
installed=1
if play observe rollout.yml -e virtmq_mode=observe; then ok "rollout.yml -e virtmq_mode=observe"; else cat "$work/observe.out"; fail "rollout.yml -e virtmq_mode=observe"; exit 1; fi
check "the package is installed" "$(dpkg-query -W -f='${Version}' virtmq)" "$(dpkg-deb -f "$DEB" Version)"
check "the agent's mode" "$(/usr/sbin/virtmq status --json | jq -r .policy.mode)" observe
e2e_wait 10 state_is would-redefine || true
check "$D state (observe)" "$(state_of)" would-redefine
check "$D definition untouched (observe)" "$(defined_queues "$D")" ""
check "the drop-in placed" "$(head -n1 /etc/virtmq/policy.d/50-scratch.yaml)" "rules:"
check "what the play shows" "$(grep -A2 'TASK \[Show what the agent does or would do\]' "$work/observe.out" | grep -o '"msg": ".*"')" \
	'"msg": "mode observe; would-redefine: 1"'

step "2. apply: the handler reloads the agent"
if play apply rollout.yml -e virtmq_mode=apply -e virtmq_batch=1; then ok "rollout.yml -e virtmq_mode=apply"; else cat "$work/apply.out"; fail "rollout.yml -e virtmq_mode=apply"; exit 1; fi
if grep -q 'RUNNING HANDLER \[virtmq : Reload virtmq-agent (command)\]' "$work/apply.out"; then ok "the reload handler ran"; else fail "the reload handler did not run"; fi
check "the agent's mode" "$(/usr/sbin/virtmq status --json | jq -r .policy.mode)" apply
e2e_wait 10 defined_queues_are "$D" 4 || true
check "$D definition (apply)" "$(defined_queues "$D")" 4
check "$D state (apply)" "$(state_of)" rewritten

step "2b. virtmq_policy_d_exclusive: a drop-in nobody named is removed"
printf '# placed by hand\nrules:\n  - name: stray\n    match: {domain: [stray-*]}\n    exclude: true\n' >/etc/virtmq/policy.d/40-stray.yaml
if play exclusive rollout.yml -e virtmq_mode=apply -e virtmq_policy_d_exclusive=true; then ok "rollout.yml with virtmq_policy_d_exclusive"; else cat "$work/exclusive.out"; fail "rollout.yml with virtmq_policy_d_exclusive"; fi
check "the stray drop-in" "$(ls /etc/virtmq/policy.d/40-stray.yaml 2>/dev/null || echo removed)" removed
check "the drop-ins left" "$(cd /etc/virtmq/policy.d && echo *)" "50-scratch.yaml 99-rollout-mode.yaml"
check "exclusive run: changed (the removal, the reload)" "$(recap exclusive changed)" changed=2

step "3. apply again: nothing changes"
if play again rollout.yml -e virtmq_mode=apply -e virtmq_batch=1; then ok "rollout.yml -e virtmq_mode=apply, again"; else cat "$work/again.out"; fail "the second apply run"; fi
check "second run: changed" "$(recap again changed)" changed=0
check "second run: failed" "$(recap again failed)" failed=0
if grep -q 'RUNNING HANDLER' "$work/again.out"; then fail "a handler ran on the second run"; else ok "no handler ran on the second run"; fi

step "4. a broken drop-in is refused"
if play broken rollout.yml -e virtmq_mode=apply -e "@$dir/tests/broken.yml"; then
	fail "a play with a broken drop-in succeeded"
else
	ok "the play with a broken drop-in failed"
fi
msg=$(grep -oE '[^ "]*:[0-9]+:[0-9]+: rules\[0\]\.sett: unknown key[^"\\]*' "$work/broken.out" | head -n1)
if [[ -n $msg ]]; then ok "virtmq lint's message: $msg"; else cat "$work/broken.out"; fail "no file:line:col message from virtmq lint"; fi
check "the broken drop-in did not land" "$(ls /etc/virtmq/policy.d/60-typo.yaml 2>/dev/null || echo absent)" absent
check "the broken run: failed" "$(recap broken failed)" failed=1
check "the agent's policy after the refusal: mode, reload error" \
	"$(/usr/sbin/virtmq status --json | jq -r '"\(.policy.mode) \(.policy.last_reload_error // "none")"')" "apply none"

step "5. cold_boot.yml with nothing pending"
if play coldboot cold_boot.yml; then ok "cold_boot.yml"; else cat "$work/coldboot.out"; fail "cold_boot.yml"; fi
check "cold boot with nothing pending: changed" "$(recap coldboot changed)" changed=0

if play coldboot-fail cold_boot.yml -e '{"virtmq_cold_boot_targets": ["'"$D"'-nosuch"]}'; then
	fail "cold_boot.yml of a domain that does not exist succeeded"
else
	ok "cold_boot.yml of a domain that does not exist failed"
fi
msg=$(grep -oE 'virtmq apply --cold-boot on localhost exited [0-9]+: [^.]*' "$work/coldboot-fail.out" | head -n1)
check "its task result" "$msg" "virtmq apply --cold-boot on localhost exited 1: a domain failed (shutdown timeout, verification FAIL, refused, libvirt error)"

step "6. a host with problems fails the play: the agent stopped"
"$dir/tests/agent-ctl.sh" stop
if play down cold_boot.yml -e virtmq_status_retries=2; then fail "a play on a host whose agent is down succeeded"; else ok "a play on a host whose agent is down failed"; fi
msg=$(grep -oE 'virtmq on localhost: [^"]*' "$work/down.out" | head -n1)
check_match "the problem it names" "$msg" "^virtmq on localhost: the agent does not answer on /run/virtmq/status\.sock"
check "cold boot not run with the agent down" "$(grep -c 'TASK \[virtmq : Cold boot the pending domains\]' "$work/down.out")" 0

step "7. ansible-lint"
# the files named: given ".", ansible-lint 6.13 lints 1 file of a git worktree
if (cd "$dir" && ansible-lint --offline --nocolor rollout.yml cold_boot.yml roles/virtmq tests >"$work/lint.out" 2>&1); then
	ok "ansible-lint packaging/ansible: $(grep -o 'Passed with.*' "$work/lint.out")"
else
	cat "$work/lint.out"
	fail "ansible-lint packaging/ansible"
fi
