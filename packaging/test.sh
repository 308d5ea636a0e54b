#!/bin/bash
# packaging/test.sh — install-test the packages `packaging/build.sh` built
# (`make package-test`). Run as root on a Debian machine; it needs apt only to
# install missing tools and dependencies.
#
#   .deb  lintian (no error or warning beyond packaging/lintian-overrides);
#         dpkg -i; the installed hook at "prepare begin" on a fixture domain;
#         `virtmq lint` of the installed policy; systemd-analyze verify of the
#         installed unit; a reinstall over a locally edited policy keeps the
#         edit; dpkg -r, then dpkg --purge, and nothing of virtmq is left.
#   .rpm  rpm -qp --list/--configfiles/--scripts/--requires/--dump. The rpm
#         is never unpacked: nfpm writes absolute paths into its cpio
#         payload, and cpio or rpmlint as root would write them into /.
#
# Every dpkg run happens in a private mount namespace whose /run is an empty
# tmpfs (and /etc/libvirt/qemu an empty folder): the maintainer scripts see
# no systemd and no libvirt daemon of the host, so the test never starts the
# agent nor reloads a libvirtd that other tests (or the host) run. In that
# namespace the test starts a libvirtd of its own before installing, and
# checks that the postinst's SIGHUP made it find the hook: a transient domain
# is refused by the hook under an enforce drop-in. Only that libvirtd is
# stopped at the end.
#
# The machine is left as it was found: a trap purges the package on any exit.
# If virtmq is already installed the test refuses to run. Dependencies that
# had to be installed (libvirt-daemon-system, lintian, rpm) stay installed.
# A running libvirtd/virtqemud only gets the SIGHUP the package's postinst
# sends (a reload, which leaves running domains alone).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
testdata=$root/packaging/testdata

[ "$(id -u)" = 0 ] || { echo "packaging/test.sh: run as root (it installs the .deb)" >&2; exit 1; }
[ -f dist/packages.env ] || { echo "packaging/test.sh: no dist/packages.env: run packaging/build.sh (make packages) first" >&2; exit 1; }
# shellcheck source=/dev/null
. dist/packages.env
DEB=$root/$DEB
RPM=$root/$RPM
if [ ! -f "$DEB" ] || [ ! -f "$RPM" ]; then
	echo "packaging/test.sh: $DEB or $RPM is missing" >&2
	exit 1
fi

work=$(mktemp -d /tmp/virtmq-package-test.XXXXXX)
# Every check is reported and counted; the summary line reads the counts.
CHECK_KEEP_GOING=1
CHECK_LOG=$work/check.log
# shellcheck source=e2e/check.sh
. "$root/e2e/check.sh"
installed_by_us=0
ns_pid=       # a process holding the test's mount namespace (see header)
our_libvirtd= # pid of the libvirtd this test started, if any

step() { echo; echo "== $*"; }

# shellcheck source=e2e/apt.sh
. "$root/e2e/apt.sh"
# shellcheck source=e2e/lib.sh
. "$root/e2e/lib.sh"
# dpkg_run ARGS...: dpkg, retried while another run holds the lock.
dpkg_run() {
	local _
	for _ in 1 2 3 4 5 6; do
		apt_wait || return 1
		if DEBIAN_FRONTEND=noninteractive inns dpkg "$@" </dev/null >"$work/dpkg.out" 2>&1; then
			cat "$work/dpkg.out"
			return 0
		fi
		if ! grep -q 'lock' "$work/dpkg.out"; then
			cat "$work/dpkg.out"
			return 1
		fi
	done
	cat "$work/dpkg.out"
	return 1
}
leftovers() { # leftovers: every path of ours that exists, one per line
	local p
	for p in /usr/sbin/virtmq /usr/sbin/virtmq-agent /usr/sbin/virtmq-hook \
		/etc/libvirt/hooks/qemu.d/50-virtmq /etc/virtmq \
		/usr/lib/systemd/system/virtmq-agent.service \
		/etc/systemd/system/virtmq-agent.service \
		/etc/systemd/system/multi-user.target.wants/virtmq-agent.service \
		/var/lib/systemd/deb-systemd-helper-enabled/virtmq-agent.service.dsh-also \
		/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/virtmq-agent.service \
		/var/lib/systemd/deb-systemd-helper-masked/virtmq-agent.service \
		/usr/share/doc/virtmq /usr/share/man/man8/virtmq.8.gz /usr/share/man/man5/virtmq-policy.5.gz \
		/usr/share/virtmq /usr/share/lintian/overrides/virtmq \
		/usr/share/bash-completion/completions/virtmq /usr/share/zsh/vendor-completions/_virtmq; do
		if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi
	done
	if [ -L /etc/libvirt/hooks/qemu ] && [ "$(readlink /etc/libvirt/hooks/qemu)" = /usr/sbin/virtmq-hook ]; then
		echo /etc/libvirt/hooks/qemu
	fi
}

# start_ns: the private mount namespace every dpkg run happens in.
start_ns() {
	mkdir -p "$work/empty"
	# shellcheck disable=SC2016 # expanded by the inner sh
	unshare --mount --propagation private -- sh -c '
		mount -t tmpfs -o mode=0755 tmpfs /run || exit 1
		if [ -d /etc/libvirt/qemu ]; then mount --bind "$1" /etc/libvirt/qemu || exit 1; fi
		: >/run/virtmq-package-test
		exec sleep 86400' sh "$work/empty" </dev/null >/dev/null 2>&1 &
	ns_pid=$!
	local _
	for _ in $(seq 50); do
		nsenter -t "$ns_pid" -m -- test -e /run/virtmq-package-test 2>/dev/null && return 0
		kill -0 "$ns_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill "$ns_pid" 2>/dev/null || true
	ns_pid=
	return 1
}
# inns CMD...: run CMD in the test's namespace (or here, when there is none).
inns() {
	if [ -n "$ns_pid" ]; then nsenter -t "$ns_pid" -m -- "$@"; else "$@"; fi
}
# start_libvirtd: a libvirtd of our own in the namespace, with the harness's
# wait and stop (e2e/lib.sh); ready once it answers and handles SIGHUP (what
# the postinst sends).
libvirtd_ready() {
	pid_alive "$our_libvirtd" || return 2
	inns virsh -c qemu:///system uri >/dev/null 2>&1 &&
		sed -n 's/^SigCgt:[[:space:]]*//p' "/proc/$our_libvirtd/status" | grep -q '[13579bdfBDF]$'
}
start_libvirtd() {
	nsenter -t "$ns_pid" -m -- libvirtd >"$work/libvirtd.log" 2>&1 </dev/null &
	our_libvirtd=$!
	if e2e_wait 60 libvirtd_ready; then
		echo "   libvirtd pid $our_libvirtd answers (private /run)"
		return 0
	fi
	echo "   libvirtd pid $our_libvirtd did not answer in 60 s, or exited:"
	tail -n 5 "$work/libvirtd.log" | sed 's/^/     /'
	return 1
}
stop_libvirtd() {
	[ -n "$our_libvirtd" ] || return 0
	stop_pid "$our_libvirtd"
	wait "$our_libvirtd" 2>/dev/null || true
	our_libvirtd=
}

cleanup() {
	local rc=$?
	rm -f /etc/virtmq/policy.d/99-package-test.yaml /etc/virtmq/policy.d/00-mode.yaml
	if [ -n "${agent_pid:-}" ]; then kill -TERM "$agent_pid" 2>/dev/null || true; fi
	stop_libvirtd
	if [ "$installed_by_us" = 1 ] && dpkg-query -W virtmq >/dev/null 2>&1; then
		echo "== cleanup: purging virtmq"
		dpkg_run --purge virtmq >/dev/null 2>&1 || echo "packaging/test.sh: WARNING: dpkg --purge virtmq failed; purge it by hand" >&2
	fi
	if [ "$rc" != 0 ] && [ -s "$work/check.log" ]; then
		echo "--- check log (last 40 lines) ---"
		tail -n 40 "$work/check.log"
	fi
	if [ -n "$ns_pid" ]; then
		kill "$ns_pid" 2>/dev/null || true
		wait "$ns_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "virtmq package test: $VERSION"
echo "  $DEB"
echo "  $RPM"

if dpkg-query -W -f='${db:Status-Status}' virtmq 2>/dev/null | grep -qv '^not-installed$'; then
	echo "packaging/test.sh: virtmq is already installed (or its config is left): refusing to touch it; dpkg --purge virtmq first" >&2
	exit 1
fi

step "tools and dependencies"
need=()
command -v lintian >/dev/null || need+=(lintian)
command -v rpm >/dev/null || need+=(rpm)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v fuser >/dev/null || need+=(psmisc)
mapfile -t deps < <(dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed 's/[ (].*//; s/^ *//; /^$/d')
mapfile -t -O "${#need[@]}" need < <(apt_missing "${deps[@]}")
if [ "${#need[@]}" -gt 0 ]; then
	echo "   installing ${need[*]}"
	apt_install "${need[@]}"
else
	echo "   all present"
fi

# ---------------------------------------------------------------- lintian
step "lintian $(basename "$DEB")"
# lintian refuses nothing as root but says so; its checks do not unpack into /.
lintian --pedantic -I -E --show-overrides --color never "$DEB" >"$work/lintian.txt" 2>&1 || true
cat "$work/lintian.txt"
if grep -Eq '^[EW]: ' "$work/lintian.txt"; then
	fail "lintian: errors or warnings that no override justifies (above)"
else
	ok "lintian: no error or warning (overridden: $(grep -c '^O: ' "$work/lintian.txt" || true))"
fi

# ---------------------------------------------------------------- RPM
step "rpm -qp $(basename "$RPM")"
rpmq() { rpm --dbpath "$work/rpmdb" -qp "$@" "$RPM" 2>/dev/null; }
mkdir -p "$work/rpmdb"
rpmq --list >"$work/rpm.list"
rpmq --configfiles >"$work/rpm.config"
rpmq --scripts >"$work/rpm.scripts"
rpmq --requires >"$work/rpm.requires"
rpmq --dump >"$work/rpm.dump"
rpmq --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' >"$work/rpm.flags"
rpmq --qf '%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE}\n' >"$work/rpm.info"
sed 's/^/   /' "$work/rpm.info"
for f in /usr/sbin/virtmq /usr/sbin/virtmq-agent /usr/sbin/virtmq-hook \
	/etc/libvirt/hooks/qemu.d/50-virtmq /etc/libvirt/hooks/qemu.d /etc/virtmq/policy.yaml /etc/virtmq/policy.d \
	/usr/lib/systemd/system/virtmq-agent.service /usr/lib/systemd/system-preset/50-virtmq.preset \
	/usr/share/man/man8/virtmq.8.gz /usr/share/man/man8/virtmq-agent.8.gz /usr/share/man/man8/virtmq-hook.8.gz \
	/usr/share/man/man5/virtmq-policy.5.gz /usr/share/virtmq/virtmq-install-legacy-hook \
	/usr/share/virtmq/monitoring/virtmq-rules.yml /usr/share/virtmq/monitoring/virtmq-dashboard.json \
	/usr/share/licenses/virtmq/LICENSE \
	/usr/share/bash-completion/completions/virtmq /usr/share/zsh/site-functions/_virtmq; do
	check_ok "rpm lists $f" grep -qx "$f" "$work/rpm.list"
done
check_ok "rpm has no lintian overrides" bash -c "! grep -q lintian '$work/rpm.list'"
check_ok "rpm: only /etc/virtmq/policy.yaml is a config file" test "$(cat "$work/rpm.config")" = /etc/virtmq/policy.yaml
check_ok "rpm: policy.yaml is %config(noreplace)" grep -Eqx 'c?[a-z]*n[a-z]* /etc/virtmq/policy.yaml' "$work/rpm.flags"
check_ok "rpm: policy.yaml is %config" grep -Eqx 'c[a-z]* /etc/virtmq/policy.yaml' "$work/rpm.flags"
check_ok "rpm: the hook symlink is relative" grep -Eq '^/etc/libvirt/hooks/qemu\.d/50-virtmq .* \.\./\.\./\.\./\.\./usr/sbin/virtmq-hook$' "$work/rpm.dump"
check_ok "rpm: binaries are mode 0755" bash -c "grep -E '^/usr/sbin/virtmq(-agent|-hook)? ' '$work/rpm.dump' | awk '{print \$5}' | sort -u | grep -qx 0100755"
check_ok "rpm requires libvirt-daemon-driver-qemu" grep -q '^libvirt-daemon-driver-qemu' "$work/rpm.requires"
check_ok "rpm does not require the Debian name" bash -c "! grep -q libvirt-daemon-system '$work/rpm.requires'"
check_ok "rpm %post presets the agent" grep -q 'systemctl --no-reload preset' "$work/rpm.scripts"
check_ok "rpm %preun disables on erase" grep -q 'systemctl --no-reload disable' "$work/rpm.scripts"
check_ok "rpm %postun try-restarts on upgrade" grep -q 'systemctl try-restart' "$work/rpm.scripts"
check_ok "rpm %post reloads libvirt" grep -q 'try-reload-or-restart libvirtd.service' "$work/rpm.scripts"
check_ok "rpm %post prints the mode in force" grep -q '^virtmq mode' "$work/rpm.scripts"
check_ok "rpm scripts guard systemctl start/stop with /run/systemd/system" grep -q '\[ -d /run/systemd/system \]' "$work/rpm.scripts"
for s in post preun postun; do
	check_ok "rpm %$s script works without systemd as PID 1 (sh -n)" sh -n "packaging/scripts/rpm/$s"
done

# ---------------------------------------------------------------- namespace
step "a private /run for dpkg, and a libvirtd of our own in it"
if start_ns; then
	echo "   namespace held by pid $ns_pid"
	if ! command -v libvirtd >/dev/null || ! command -v virsh >/dev/null || ! command -v qemu-system-x86_64 >/dev/null; then
		echo "   no libvirtd/virsh/qemu-system-x86_64: the hook-discovery check is skipped"
	elif ! start_libvirtd; then
		stop_libvirtd
		fail "a libvirtd of our own in the private namespace"
	fi
else
	echo "   unshare failed: dpkg runs in the host's namespace, the hook-discovery check is skipped"
fi

# ---------------------------------------------------------------- install
step "dpkg -i"
# Which of the implicit directories exist now, to check purge leaves them.
: >"$work/dirs-before"
: >"$work/dirs-absent"
for d in /etc/libvirt/hooks/qemu.d /etc/libvirt/hooks; do
	if [ -e "$d" ]; then echo "$d" >>"$work/dirs-before"; else echo "$d" >>"$work/dirs-absent"; fi
done
installed_by_us=1
if dpkg_run -i "$DEB" >"$work/install.log" 2>&1; then
	ok "dpkg -i"
else
	cat "$work/install.log"
	fail "dpkg -i"
	exit 1
fi
sed 's/^/   /' "$work/install.log"
check_ok "the postinst printed the mode in force, in one line" \
	test "$(grep -c '^virtmq: mode apply (from /etc/virtmq/policy.yaml): virtmq-agent redefines persistent domains' "$work/install.log")" = 1

for f in /usr/sbin/virtmq /usr/sbin/virtmq-agent /usr/sbin/virtmq-hook; do
	check_ok "$f is executable" test -x "$f"
done
check_ok "hook symlink /etc/libvirt/hooks/qemu.d/50-virtmq -> /usr/sbin/virtmq-hook" \
	test "$(readlink /etc/libvirt/hooks/qemu.d/50-virtmq)" = /usr/sbin/virtmq-hook
check_ok "/etc/virtmq/policy.yaml is the shipped default" cmp /etc/virtmq/policy.yaml policy/default.yaml
check_ok "/etc/virtmq/policy.yaml is a conffile" bash -c "dpkg-query -W -f='\${Conffiles}' virtmq | grep -q ' /etc/virtmq/policy.yaml '"
for f in virtmq-rules.yml virtmq-dashboard.json; do
	check_ok "the monitoring mixin: /usr/share/virtmq/monitoring/$f is the shipped one" cmp "/usr/share/virtmq/monitoring/$f" "packaging/monitoring/$f"
done
check_ok "bash completion is installed and current" bash -c "/usr/sbin/virtmq completion bash | cmp - /usr/share/bash-completion/completions/virtmq"
check_ok "zsh completion is installed and current" bash -c "/usr/sbin/virtmq completion zsh | cmp - /usr/share/zsh/vendor-completions/_virtmq"
check_ok "bash completion parses" bash -n /usr/share/bash-completion/completions/virtmq
# shellcheck disable=SC2016 # expanded by the inner bash
check_ok "/etc/virtmq/policy.d is an empty directory" bash -c '[ -d /etc/virtmq/policy.d ] && [ -z "$(ls -A /etc/virtmq/policy.d)" ]'
check_ok "the agent unit is installed" test -f /usr/lib/systemd/system/virtmq-agent.service
check_ok "the agent is enabled (deb-systemd-helper)" test -L /etc/systemd/system/multi-user.target.wants/virtmq-agent.service
for m in man8/virtmq.8 man8/virtmq-agent.8 man8/virtmq-hook.8 man5/virtmq-policy.5; do
	check_ok "man page $m renders without warnings" bash -c "out=\$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l /usr/share/man/$m.gz 2>&1 >/dev/null); [ -z \"\$out\" ] || { echo \"\$out\"; false; }"
done
check_ok "virtmq --version is $VERSION" bash -c "/usr/sbin/virtmq --version | grep -qF 'virtmq $VERSION '"
check_ok "virtmq-hook --version is $VERSION" bash -c "/usr/sbin/virtmq-hook --version | grep -qF 'virtmq-hook $VERSION '"
check_ok "virtmq-agent --version is $VERSION" bash -c "/usr/sbin/virtmq-agent --version 2>&1 | grep -qF '$VERSION'"

step "virtmq-install-legacy-hook (libvirt < 6.5), in a scratch hooks dir"
legacy=/usr/share/virtmq/virtmq-install-legacy-hook
lh=$work/hooks
mkdir -p "$lh"
check_ok "legacy hook: nothing to do on libvirt >= 6.5 without --force" \
	bash -c "HOOKS_DIR='$lh' $legacy && [ ! -e '$lh/qemu' ] && [ ! -L '$lh/qemu' ]"
check_ok "legacy hook: --force installs qemu -> /usr/sbin/virtmq-hook" \
	bash -c "HOOKS_DIR='$lh' $legacy --force && [ \"\$(readlink '$lh/qemu')\" = /usr/sbin/virtmq-hook ]"
check_ok "legacy hook: refuses when qemu exists (even its own)" bash -c "! HOOKS_DIR='$lh' $legacy --force"
check_ok "legacy hook: --remove removes its own symlink" bash -c "HOOKS_DIR='$lh' $legacy --remove && [ ! -L '$lh/qemu' ]"
printf '#!/bin/sh\nexit 0\n' >"$lh/qemu"
cp "$lh/qemu" "$work/other-hook"
check_ok "legacy hook: never replaces another hook" bash -c "! HOOKS_DIR='$lh' $legacy --force && cmp '$lh/qemu' '$work/other-hook'"
check_ok "legacy hook: --remove leaves another hook alone" bash -c "! HOOKS_DIR='$lh' $legacy --remove && cmp '$lh/qemu' '$work/other-hook'"
ln -sf /nonexistent "$lh/qemu"
check_ok "legacy hook: refuses over a dangling symlink" bash -c "! HOOKS_DIR='$lh' $legacy --force && [ \"\$(readlink '$lh/qemu')\" = /nonexistent ]"

# ---------------------------------------------------------------- the hook
step "the installed hook, as libvirt runs it"
# libvirt gives a hook only LC_ALL, PATH and HOME, the XML on stdin.
run_hook() { # run_hook XML DOMAIN OP SUBOP EXTRA
	local xml=$1
	shift
	env -i LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
		/etc/libvirt/hooks/qemu.d/50-virtmq "$@" <"$xml" >"$work/hook.out" 2>"$work/hook.err"
}
since=$(date '+%Y-%m-%d %H:%M:%S')
if run_hook "$testdata/pkgtest-web.xml" virtmq-pkgtest-web prepare begin -; then
	ok "hook at prepare begin on a non-compliant domain exits 0 (apply)"
else
	fail "hook at prepare begin exited $?: $(cat "$work/hook.err")"
fi
check_ok "hook prints nothing on stdout at prepare" test ! -s "$work/hook.out"
# The hook logs natively to journald when it listens, else to stderr.
if [ -S /run/systemd/journal/socket ] && command -v journalctl >/dev/null; then
	sleep 1
	journalctl -q -o cat -t virtmq-hook --since "$since" >"$work/hook.log" 2>/dev/null || true
	where="the journal"
else
	cp "$work/hook.err" "$work/hook.log"
	where="stderr"
fi
sed 's/^/   /' "$work/hook.log"
check_ok "hook logged the non-compliant NIC to $where" \
	grep -E 'virtmq-pkgtest-web' "$work/hook.log"
check_ok "the log line names the MAC and the wanted count" \
	grep -E '52:54:00:7a:51:01.*wanted=4|wanted=4.*52:54:00:7a:51:01' "$work/hook.log"
if run_hook "$testdata/pkgtest-compliant.xml" virtmq-pkgtest-ok prepare begin -; then
	ok "hook at prepare begin on a compliant domain exits 0"
else
	fail "hook on a compliant domain exited $?"
fi
check_ok "hook is silent about a compliant domain" test ! -s "$work/hook.err"
for op in "migrate begin -" "restore begin -" "release end -" "reconnect begin -"; do
	# shellcheck disable=SC2086
	if run_hook "$testdata/pkgtest-web.xml" virtmq-pkgtest-web $op && [ ! -s "$work/hook.out" ]; then
		ok "hook at '$op' exits 0 and prints nothing"
	else
		fail "hook at '$op'"
	fi
done

if [ -n "$our_libvirtd" ]; then
	step "libvirtd found the hook after the postinst's reload"
	# Under an enforce drop-in the hook refuses the non-compliant transient
	# domain: libvirt must have run it. Nothing starts, nothing is defined.
	printf '# packaging/test.sh\nmode: enforce\n' >/etc/virtmq/policy.d/99-package-test.yaml
	if inns virsh -c qemu:///system create "$testdata/pkgtest-web.xml" >"$work/create.out" 2>&1; then
		fail "libvirt started a domain the hook should have refused"
		inns virsh -c qemu:///system destroy virtmq-pkgtest-web >/dev/null 2>&1 || true
	else
		sed 's/^/   /' "$work/create.out"
		check_ok "libvirt ran the hook, which refused the start with its message" \
			grep -q 'virtmq: domain "virtmq-pkgtest-web" NIC 52:54:00:7a:51:01 has queues=1, policy wants 4' "$work/create.out"
	fi
	rm -f /etc/virtmq/policy.d/99-package-test.yaml
	check_ok "libvirtd survived the postinst's SIGHUP" kill -0 "$our_libvirtd"

	step "the installed agent, sandboxed like its unit: observe first, then apply"
	# How the shipped policy says to start in observe: a drop-in.
	printf 'mode: observe\n' >/etc/virtmq/policy.d/00-mode.yaml
	check_ok "virtmq mode says observe with the drop-in" bash -c "/usr/sbin/virtmq mode | grep -q '^virtmq: mode observe (from /etc/virtmq/policy.yaml, /etc/virtmq/policy.d/00-mode.yaml)'"
	# What the unit's sandbox does that can be done without systemd: no
	# capabilities, no new privileges, a read-only file system but for
	# /run/virtmq (RuntimeDirectory=). It must still reach libvirt's socket.
	# shellcheck disable=SC2016 # expanded by the inner sh
	nsenter -t "$ns_pid" -m -- unshare --mount --propagation private -- sh -c '
		mkdir -p /run/virtmq && mount --bind /run/virtmq /run/virtmq &&
		mount -o remount,bind,ro / && mount -o remount,bind,ro /run &&
		exec setpriv --bounding-set=-all --inh-caps=-all --no-new-privs -- /usr/sbin/virtmq-agent' \
		>"$work/agent.log" 2>&1 </dev/null &
	agent_pid=$!
	for _ in $(seq 100); do
		inns /usr/sbin/virtmq status --json >"$work/status.json" 2>/dev/null && grep -q '"connected": true' "$work/status.json" && break
		kill -0 "$agent_pid" 2>/dev/null || break
		sleep 0.2
	done
	if grep -q '"connected": true' "$work/status.json" 2>/dev/null; then
		ok "virtmq status: the agent is connected to libvirt, without capabilities, on a read-only /"
	else
		fail "the sandboxed agent did not report a libvirt connection"
		sed 's/^/   /' "$work/agent.log"
	fi
	if inns virsh -c qemu:///system define "$testdata/pkgtest-web.xml" >/dev/null 2>>"$work/check.log"; then
		for _ in $(seq 100); do
			inns /usr/sbin/virtmq status --json 2>/dev/null | grep -q '"state": "would-redefine"' && break
			sleep 0.2
		done
		check_ok "mode observe: virtmq status shows the plan (would-redefine)" \
			bash -c "nsenter -t $ns_pid -m -- /usr/sbin/virtmq status --json | grep -q 'redefine: 52:54:00:7a:51:01 1→4 queues'"
		check_ok "mode observe: the definition is unchanged" \
			bash -c "! nsenter -t $ns_pid -m -- virsh -c qemu:///system dumpxml --inactive virtmq-pkgtest-web | grep -q \"queues=\""
		rm -f /etc/virtmq/policy.d/00-mode.yaml
		kill -HUP "$agent_pid" 2>/dev/null || true
		for _ in $(seq 100); do
			inns virsh -c qemu:///system dumpxml --inactive virtmq-pkgtest-web 2>/dev/null | grep -q "queues='4'" && break
			sleep 0.2
		done
		check_ok "after SIGHUP into mode apply, the agent redefined virtmq-pkgtest-web with <driver queues='4'/>" \
			bash -c "nsenter -t $ns_pid -m -- virsh -c qemu:///system dumpxml --inactive virtmq-pkgtest-web | grep -q \"queues='4'\""
		inns /usr/sbin/virtmq status >"$work/status.txt" 2>&1 || true
		sed 's/^/   /' "$work/status.txt"
		inns virsh -c qemu:///system undefine virtmq-pkgtest-web >/dev/null 2>&1 || true
	else
		fail "virsh define of the fixture domain"
	fi
	kill -HUP "$agent_pid" 2>/dev/null || true
	sleep 0.5
	check_ok "the agent survives SIGHUP (systemctl reload)" kill -0 "$agent_pid"
	kill -TERM "$agent_pid" 2>/dev/null || true
	agent_rc=0
	wait "$agent_pid" || agent_rc=$?
	agent_pid=
	check_ok "the agent exits 0 on SIGTERM" test "$agent_rc" = 0
	sed 's/^/   agent: /' "$work/agent.log" | tail -n 8
	stop_libvirtd
fi

# ---------------------------------------------------------------- the policy
step "virtmq lint"
if /usr/sbin/virtmq lint >"$work/lint.out" 2>&1; then
	ok "virtmq lint of the installed policy"
else
	fail "virtmq lint of the installed policy"
fi
sed 's/^/   /' "$work/lint.out"
check_ok "virtmq lint read /etc/virtmq/policy.yaml" grep -q '/etc/virtmq/policy.yaml' "$work/lint.out"

# ---------------------------------------------------------------- the unit
step "systemd-analyze verify"
# verify loads the unit, checks every directive, that ExecStart is
# executable and that the Documentation= man pages exist. On this machine
# kind (no systemd as PID 1) it has nothing to say about a correct unit, so
# any output fails the check.
rc=0
SYSTEMD_LOG_COLOR=0 systemd-analyze verify /usr/lib/systemd/system/virtmq-agent.service >"$work/verify.out" 2>&1 || rc=$?
sed 's/^/   /' "$work/verify.out"
if [ "$rc" = 0 ] && [ ! -s "$work/verify.out" ]; then
	ok "systemd-analyze verify virtmq-agent.service"
else
	fail "systemd-analyze verify virtmq-agent.service (exit $rc)"
fi
check_ok "unit: Type=notify" grep -qx 'Type=notify' /usr/lib/systemd/system/virtmq-agent.service
check_ok "unit: no Requires=/BindsTo=" bash -c "! grep -Eq '^(Requires|BindsTo|Requisite)=' /usr/lib/systemd/system/virtmq-agent.service"

# ---------------------------------------------------------------- reinstall
step "reinstall over an edited policy"
printf '\n# edited by packaging/test.sh\n' >>/etc/virtmq/policy.yaml
cp /etc/virtmq/policy.yaml "$work/policy.edited"
if dpkg_run -i --force-confold "$DEB" >"$work/reinstall.log" 2>&1; then
	ok "dpkg -i of the same version again"
else
	cat "$work/reinstall.log"
	fail "dpkg -i of the same version again"
fi
check_ok "the edited policy is kept" cmp /etc/virtmq/policy.yaml "$work/policy.edited"
check_ok "no .dpkg-dist/.dpkg-new copy appeared" bash -c '! ls /etc/virtmq/policy.yaml.dpkg-* 2>/dev/null | grep -q .'
check_ok "the edited policy still lints" /usr/sbin/virtmq lint
check_ok "the agent is still enabled" test -L /etc/systemd/system/multi-user.target.wants/virtmq-agent.service

# ---------------------------------------------------------------- remove, purge
step "dpkg -r, then dpkg --purge"
if dpkg_run -r virtmq >"$work/remove.log" 2>&1; then ok "dpkg -r"; else cat "$work/remove.log"; fail "dpkg -r"; fi
check_ok "binaries are gone after remove" bash -c '! ls /usr/sbin/virtmq /usr/sbin/virtmq-agent /usr/sbin/virtmq-hook 2>/dev/null | grep -q .'
check_ok "the hook symlink is gone after remove" test ! -L /etc/libvirt/hooks/qemu.d/50-virtmq
check_ok "the edited policy survives remove" cmp /etc/virtmq/policy.yaml "$work/policy.edited"
check_ok "the agent unit is masked after remove" test "$(readlink /etc/systemd/system/virtmq-agent.service)" = /dev/null
if dpkg_run --purge virtmq >"$work/purge.log" 2>&1; then ok "dpkg --purge"; else cat "$work/purge.log"; fail "dpkg --purge"; fi
installed_by_us=0
left=$(leftovers)
if [ -z "$left" ]; then
	ok "nothing of virtmq is left after purge"
else
	fail "left after purge: $(echo "$left" | tr '\n' ' ')"
fi
check_ok "dpkg forgot virtmq" bash -c "! dpkg-query -W virtmq >/dev/null 2>&1 || dpkg-query -W -f='\${db:Status-Status}' virtmq | grep -qx not-installed"
while read -r d; do
	check_ok "$d (there before) is still there" test -d "$d"
done <"$work/dirs-before"
while read -r d; do
	check_ok "$d (not there before) is gone" test ! -e "$d"
done <"$work/dirs-absent"

echo
echo "package-test: $CHECK_PASSED passed, $CHECK_FAILED failed"
[ "$CHECK_FAILED" = 0 ]
