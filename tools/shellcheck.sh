#!/usr/bin/env bash
# Runs shellcheck over every shell script of the tree (make lint): the files git
# knows (and new ones it does not ignore) that end in .sh, start with a sh or
# bash #!, or carry a shell= directive for a sourced library. When the
# command is missing, Debian's package is installed with apt-get (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v shellcheck >/dev/null; then
	if [[ $(id -u) != 0 ]]; then
		echo "lint: shellcheck missing: apt-get install shellcheck (as root)" >&2
		exit 1
	fi
	echo "lint: installing Debian's shellcheck" >&2
	# shellcheck source=e2e/apt.sh
	source e2e/apt.sh
	apt_install shellcheck
fi
files=()
while IFS= read -r -d '' f; do
	[[ -f $f ]] || continue
	case $f in
	*.sh) files+=("$f") ;;
	*) if head -n1 "$f" | grep -qE '^#!(/usr)?/bin/(env )?(ba)?sh\b' || grep -q '^# shellcheck shell=' "$f"; then files+=("$f"); fi ;;
	esac
done < <(git ls-files -z --cached --others --exclude-standard)
shellcheck --external-sources --source-path=SCRIPTDIR "${files[@]}"
echo "lint: shellcheck clean on ${#files[@]} files"
