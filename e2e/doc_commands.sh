# shellcheck shell=bash
# The documentation's commands that need libvirt, run on the real stack:
# the "$ " lines of every ```console libvirt block of README.md and docs/*.md
# (go test ./docs runs the other transcripts) and every line of
# the EXAMPLES of virtmq(8) and virtmq-hook(8). Sourced by run.sh (scenario doc_commands).
#
# Each runs as written, from the repository root, with bin/ first on PATH,
# the suite's libvirt ($LIBVIRT_DEFAULT_URI) and policy ($VIRTMQ_POLICY),
# and these stand-ins: the domain web1 (and the glob web-*) is the suite's
# ${P}web1, booted first; /etc/virtmq/ is a scratch copy holding the
# drop-in docs/policy.md shows; virtmq status reads the suite agent's
# socket. A command must exit 0 (a line that tests $? itself: not 2), and
# no command may meet a usage error.

# doc_libvirt_commands prints the commands, one per line.
doc_libvirt_commands() {
	awk '/^ *```console libvirt/ { on = 1; next } /^ *```/ { on = 0 } on && /^ *\$ / { sub(/^ *\$ /, ""); print }' \
		"$REPO/README.md" "$REPO"/docs/*.md
	local page
	for page in virtmq.8 virtmq-hook.8; do
		sed -n '/^\.SH EXAMPLES/,/^\.SH SEE ALSO/p' "$REPO/packaging/man/$page" | sed -n '/^\.nf/,/^\.fi/p' |
			grep -v '^\.' | sed -e 's/\\-/-/g' -e "s/\\\\(aq/'/g"
	done
}

doc_commands() {
	local d=${P}web1 etc=$RUN/doc-etc/virtmq cmd run out rc n=0
	mkdir -p "$etc/policy.d"
	cp "$POLICY" "$etc/policy.yaml"
	# docs/policy.md's drop-in example (go test ./docs keeps the file equal to the page).
	cp "$REPO/docs/examples/lab/policy.d/50-lab.yaml" "$etc/policy.d/"
	boot_domain "$d"
	define_domain "${P}web-a" # what the 'web-*' glob of the cold-boot example finds (shut off: nothing to restart)
	eventually 90 "$d guest step" "done" status_of "$d" '.nics[0].guest_step'
	while IFS= read -r cmd; do
		[[ -n $cmd ]] || continue
		if [[ $cmd == journalctl* ]]; then
			e2e_log "skip (the suite's daemons do not log to the journal): $cmd"
			continue
		fi
		if [[ $cmd == *qemu+ssh://* ]]; then
			e2e_log "skip (needs an ssh host; remote_ssh runs apply over qemu+ssh): $cmd"
			continue
		fi
		run=${cmd#sudo }
		run=${run//web1/$d}
		run=${run//\'web-\*\'/\'${P}web-*\'}
		run=${run//\/etc\/virtmq\//$etc/}
		run=${run//\/usr\/sbin\//$BIN/}
		run=${run//virtmq status/virtmq status --status-socket $STATUS_SOCK}
		run=${run//virsh /virsh -c $VIRTMQ_E2E_URI }
		set +e
		out=$(cd "$REPO" && PATH=$BIN:$PATH VIRTMQ_POLICY=$POLICY bash -c "$run" 2>&1 </dev/null)
		rc=$?
		set -e
		if [[ $out == *"flag provided but not defined"* || $out == *"unknown flag"* ]] ||
			{ [[ $cmd == *'$?'* ]] && ((rc == 2)); } || { [[ $cmd != *'$?'* ]] && ((rc != 0)); }; then
			printf '%s\n' "$out" >&2
			fail "documented command failed (exit $rc): $cmd (run as: $run)"
		fi
		e2e_log "ok: documented command: $cmd"
		n=$((n + 1))
	done < <(doc_libvirt_commands)
	((n >= 8)) || fail "only $n documented libvirt commands ran"
	e2e_virsh destroy "$d" >/dev/null 2>&1 || true
	e2e_virsh undefine "$d" >/dev/null
	e2e_virsh undefine "${P}web-a" >/dev/null
}
