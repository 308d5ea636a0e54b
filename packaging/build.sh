#!/bin/bash
# packaging/build.sh — build the virtmq .deb and .rpm (`make packages`).
#
#   packaging/build.sh              build bin/*, then dist/virtmq_<v>_amd64.deb
#                                   and dist/virtmq-<v>.x86_64.rpm
#   packaging/build.sh --version    print the package version and exit
#
# Environment (all optional):
#   VERSION     a package version, or `git describe` output (what the Makefile
#               passes); it is mapped to a valid Debian/RPM version, see below
#   COMMIT      commit id for --version (default: git rev-parse --short=12 HEAD)
#   SOURCE_DATE_EPOCH  timestamp of every file in the packages (default: the
#               last commit's time, else the date of packaging/changelog)
#   MAINTAINER  the packages' Maintainer (default: the one in packaging/changelog)
#   GO          the go command (default: go)
#   NFPM        an nfpm binary to use instead of building the pinned one
#
# Version mapping (deterministic, sorts right in dpkg and rpm; BASE is the
# version of the top entry of packaging/changelog):
#   tag v1.2.0, clean                 1.2.0
#   tag v1.2.0-rc1                    1.2.0~rc1
#   3 commits after v1.2.0            1.2.0+git20261125.3.0123abcd
#   no tag (commit count 42)          BASE~git20261125.42.0123abcd
#   uncommitted changes               ... + ".dirty" (or "+dirty" on a tag)
#   no git at all                     BASE~dev
# The binaries are static (CGO_ENABLED=0), stripped (-s -w) and reproducible
# (-trimpath, no build id, no VCS stamp, fixed timestamps in the packages):
# the same commit gives the same bytes.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
GO=${GO:-go}
pkgdir=packaging
dist=dist
stage=$dist/.stage # packaging/nfpm.yaml names it too

die() { echo "packaging/build.sh: $*" >&2; exit 1; }

# changelog_top_version: the version of the first entry of packaging/changelog.
changelog_top_version() {
	sed -n '1s/^virtmq (\([^)]*\)).*/\1/p' "$pkgdir/changelog"
}

# git_ok: true when this is a git work tree with at least one commit.
git_ok() {
	git rev-parse --verify -q HEAD >/dev/null 2>&1
}

# map_version RAW: a `git describe --tags --always --dirty` string (or a plain
# version) to a Debian/RPM version.
map_version() {
	local raw=$1 base dirty="" tag="" n="" sha="" date count v
	base=$(changelog_top_version)
	[ -n "$base" ] || die "cannot read the version of the top entry of $pkgdir/changelog"
	case "$raw" in *-dirty) dirty=1 raw=${raw%-dirty} ;; esac
	if [[ $raw =~ ^(.+)-([0-9]+)-g([0-9a-f]{4,40})$ ]]; then
		tag=${BASH_REMATCH[1]} n=${BASH_REMATCH[2]} sha=${BASH_REMATCH[3]}
	elif [[ $raw =~ ^[0-9a-f]{7,40}$ ]]; then
		sha=$raw
	elif [ -n "$raw" ] && [ "$raw" != dev ]; then
		tag=$raw
	fi
	if [ -n "$tag" ]; then
		tag=${tag#v}
		tag=${tag//-/\~}
	fi
	if [ -n "$sha" ] && git_ok; then
		date=$(TZ=UTC git log -1 --date=format-local:%Y%m%d --format=%cd "$sha" 2>/dev/null || true)
		[ -n "$date" ] || date=$(TZ=UTC git log -1 --date=format-local:%Y%m%d --format=%cd)
	fi
	if [ -n "$tag" ] && [ -z "$n" ]; then
		v=$tag
		[ -z "$dirty" ] || v=$v+dirty
	elif [ -n "$tag" ]; then
		v=$tag+git$date.$n.$sha
		[ -z "$dirty" ] || v=$v.dirty
	elif [ -n "$sha" ]; then
		count=$(git rev-list --count HEAD 2>/dev/null || echo 0)
		v=$base~git$date.$count.$sha
		[ -z "$dirty" ] || v=$v.dirty
	else
		v=$base~dev
	fi
	[[ $v =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || die "cannot make a package version out of '$1' (got '$v')"
	echo "$v"
}

raw=${VERSION:-}
if [ -z "$raw" ] || [ "$raw" = dev ]; then
	raw=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
fi
VERSION=$(map_version "$raw")
if [ "${1:-}" = --version ]; then
	echo "$VERSION"
	exit 0
fi

if [ -z "${COMMIT:-}" ] || [ "$COMMIT" = unknown ]; then
	COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
fi
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	if git_ok; then
		SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
	else
		SOURCE_DATE_EPOCH=$(date -u -d "$(sed -n 's/^ -- .*>  //p' "$pkgdir/changelog" | head -n 1)" +%s)
	fi
fi
export SOURCE_DATE_EPOCH
if [ -z "${MAINTAINER:-}" ]; then
	MAINTAINER=$(sed -n 's/^ -- \(.*>\)  .*/\1/p' "$pkgdir/changelog" | head -n 1)
fi
export VERSION MAINTAINER

echo "virtmq packages: version $VERSION, commit $COMMIT, SOURCE_DATE_EPOCH $SOURCE_DATE_EPOCH"

# 1. The binaries: static, stripped, reproducible. nfpm packages the copies
# in $stage/bin, which no `make build` running meanwhile can rewrite under
# it; bin/ gets the same files.
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/man" "$stage/doc" bin
ldflags="-s -w -buildid= -X github.com/virtmq/virtmq/internal/build.Version=$VERSION -X github.com/virtmq/virtmq/internal/build.Commit=$COMMIT"
for b in virtmq virtmq-hook virtmq-agent; do
	echo "  go build bin/$b"
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 "$GO" build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$stage/bin/$b" "./cmd/$b"
	if readelf -lW "$stage/bin/$b" 2>/dev/null | grep -q 'Requesting program interpreter'; then
		die "$b is dynamically linked"
	fi
	cp -p "$stage/bin/$b" "bin/$b.tmp" && mv -f "bin/$b.tmp" "bin/$b"
done

# 2. Generated files: gzipped man pages, the changelog, the policy reference.
for m in "$pkgdir"/man/*.[0-9]; do
	gz=$stage/man/${m##*/}.gz
	gzip -9n <"$m" >"$gz"
done

# The shipped changelog's top entry is always the package version. A
# snapshot before the release in the top entry takes that entry over (its
# notes describe what the snapshot contains); a snapshot after it gets an
# entry of its own.
rfc2822=$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")
top=$(changelog_top_version)
{
	if [ "$VERSION" = "$top" ]; then
		cat "$pkgdir/changelog"
	elif dpkg --compare-versions "$VERSION" lt "$top" 2>/dev/null; then
		sed -e "1s/^virtmq ([^)]*) [^;]*;/virtmq ($VERSION) UNRELEASED;/" \
			-e "0,/^ -- /s/^\( -- .*>  \).*/\1$rfc2822/" "$pkgdir/changelog"
	else
		printf 'virtmq (%s) UNRELEASED; urgency=medium\n\n' "$VERSION"
		printf '  * Snapshot of commit %s.\n\n' "$COMMIT"
		printf ' -- %s  %s\n\n' "$MAINTAINER" "$rfc2822"
		cat "$pkgdir/changelog"
	fi
} | gzip -9n >"$stage/changelog.gz"

for doc in policy.md json.md; do
	if [ -f "docs/$doc" ]; then
		cp "docs/$doc" "$stage/doc/$doc"
	else
		die "docs/$doc is missing (shipped as /usr/share/doc/virtmq/$doc)"
	fi
done
[ -f policy/default.yaml ] || die "policy/default.yaml is missing (shipped as /etc/virtmq/policy.yaml)"

# 3. nfpm, pinned in tools/go.mod.
if [ -z "${NFPM:-}" ]; then
	echo "  go build bin/nfpm (tools/go.mod)"
	(cd tools && "$GO" build -o "$root/bin/nfpm" github.com/goreleaser/nfpm/v2/cmd/nfpm)
	NFPM=$root/bin/nfpm
fi

# 4. The packages.
deb=$dist/virtmq_${VERSION}_amd64.deb
rpm=$dist/virtmq-${VERSION}.x86_64.rpm
rm -f "$deb" "$rpm"
# nfpm writes `license` into the deb's control file too, where it is no
# Debian field (lintian: unknown-field); the deb has it in its copyright file.
grep -v '^license:' "$pkgdir/nfpm.yaml" >"$stage/nfpm-deb.yaml"
"$NFPM" package --config "$stage/nfpm-deb.yaml" --packager deb --target "$deb"
"$NFPM" package --config "$pkgdir/nfpm.yaml" --packager rpm --target "$rpm"

# packaging/test.sh reads this to know what was built.
cat >"$dist/packages.env" <<EOF
VERSION=$VERSION
COMMIT=$COMMIT
DEB=$deb
RPM=$rpm
EOF
sha256sum "$deb" "$rpm"
