#!/usr/bin/env bash
# Builds the tiny e2e guest into OUTDIR: a Debian cloud kernel (uncompressed
# vmlinux booted through PVH when that works, else the bzImage) and a
# busybox-static initramfs with qemu-ga, ethtool, iperf3 and the virtio modules.
# Proves both boot with a short plain-QEMU self-test before declaring success.
#
# Usage: build.sh OUTDIR DEBDIR    (run by setup.sh; DEBDIR caches the kernel .deb)
set -euo pipefail
umask 022

out=$1
debs=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# button + evdev: the ACPI power button as an input device, for busybox
# acpid (virsh shutdown --mode acpi, virtmq apply --cold-boot).
MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
	failover net_failover virtio_net virtio_console button evdev)

log() { printf 'build: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out" "$debs"

# --- kernel package -----------------------------------------------------------
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
[[ -n $pkg ]] || die "apt-cache knows no linux-image-cloud-amd64 (run apt-get update)"
deb=$(find "$debs" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -n1)
if [[ -z $deb ]]; then
	log "downloading $pkg"
	(cd "$debs" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) || true
	deb=$(find "$debs" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -n1)
	[[ -n $deb ]] || die "apt-get download $pkg failed"
fi
log "kernel package $(basename "$deb")"
dpkg-deb -x "$deb" "$work/k"
kver=${pkg#linux-image-}
bzimage=$work/k/boot/vmlinuz-$kver
moddir=$work/k/lib/modules/$kver
[[ -f $bzimage && -d $moddir ]] || die "unexpected layout in $deb"

# --- root file system -----------------------------------------------------------
r=$work/root
mkdir -p "$r"/usr/{bin,sbin,lib,lib64} "$r"/{dev,proc,sys,run,tmp,root,etc/virtmq}
for d in bin sbin lib lib64; do ln -s "usr/$d" "$r/$d"; done # merged /usr, as Debian 12
mkdir -p "$r/var/lib" && ln -s ../run "$r/var/run"
mknod -m 600 "$r/dev/console" c 5 1
mknod -m 666 "$r/dev/null" c 1 3

# copy_bin SRC: a binary at the same path, plus the libraries and loader ldd lists
copy_bin() {
	local src=$1 lib
	install -D -m 0755 "$src" "$r$src"
	while read -r lib; do
		[[ -e $r$lib ]] || install -D -m 0755 "$(readlink -f "$lib")" "$r$lib"
	done < <(ldd "$src" 2>/dev/null | grep -o '/[^ ]*' || true)
}
busybox=$(command -v busybox) || die "busybox-static is not installed"
install -D -m 0755 "$busybox" "$r/usr/bin/busybox"
copy_bin "$(command -v qemu-ga)"
copy_bin "$(command -v ethtool)"
copy_bin "$(command -v iperf3)"
while read -r applet; do # busybox applet links, never over a real binary
	[[ -e $r/$applet || -L $r/$applet ]] || ln -s /usr/bin/busybox "$r/$applet"
done < <("$busybox" --list-full)

install -m 0755 "$here/init" "$r/init"
install -m 0644 "$here/inittab" "$r/etc/inittab"
install -m 0755 "$here/qga-run" "$r/etc/virtmq/qga-run"
install -m 0755 "$here/shutdown" "$r/usr/sbin/shutdown"
install -D -m 0755 "$here/power-button" "$r/etc/acpi/PWRF/00000080" # busybox acpid's power button action
cp -L /etc/os-release "$r/etc/os-release" # the userland is Debian 12's binaries
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
printf 'root:x:0:\n' >"$r/etc/group"

# --- modules (insmod order) ---------------------------------------------------
mkdir -p "$r/lib/modules/virtmq"
: >"$r/etc/virtmq/modules"
for m in "${MODULES[@]}"; do
	f=$(find "$moddir" -name "$m.ko" -o -name "$m.ko.*" | head -n1)
	if [[ -z $f ]]; then
		grep -q "/$m.ko\$" "$moddir/modules.builtin" || die "module $m not found in $kver"
		continue # built into this kernel
	fi
	case $f in
	*.ko) cp "$f" "$r/lib/modules/virtmq/$m.ko" ;;
	*.ko.xz) xz -dc "$f" >"$r/lib/modules/virtmq/$m.ko" ;;
	*.ko.zst) zstd -qdc "$f" >"$r/lib/modules/virtmq/$m.ko" ;;
	*.ko.gz) gzip -dc "$f" >"$r/lib/modules/virtmq/$m.ko" ;;
	*) die "unknown module format $f" ;;
	esac
	echo "$m" >>"$r/etc/virtmq/modules"
done

(cd "$r" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc -R 0:0 2>/dev/null) |
	gzip -6 >"$work/initrd.img"

# --- kernel: vmlinux through PVH if it boots, else the bzImage -----------------
# The bzImage payload is compressed (lz4 for Debian's cloud kernel): find the
# first offset where a decompressor yields an ELF.
extract_vmlinux() {
	local magic tool off
	for spec in '\x02\x21\x4c\x18:lz4 -dc' '\x28\xb5\x2f\xfd:zstd -qdc' \
		'\xfd\x37\x7a\x58\x5a\x00:xz -dc' '\x1f\x8b\x08:gzip -dc'; do
		magic=${spec%%:*} tool=${spec#*:}
		command -v "${tool%% *}" >/dev/null || continue
		while read -r off; do
			# shellcheck disable=SC2086 # $tool is "prog flags"
			tail -c "+$((off + 1))" "$bzimage" | $tool >"$work/vmlinux" 2>/dev/null || true
			if [[ $(head -c4 "$work/vmlinux" | od -An -c | tr -d ' ') == '177ELF' ]]; then
				return 0
			fi
		done < <(LC_ALL=C grep -obUaP "$magic" "$bzimage" | cut -d: -f1 | head -n5)
	done
	return 1
}

# selftest KERNEL: boot it with plain QEMU (no libvirt, no network backend) and
# check the guest's report; prints the seconds it took.
selftest() {
	local kernel=$1 log=$work/selftest.log t0
	t0=$(date +%s.%N)
	timeout 180 qemu-system-x86_64 -machine pc,accel=tcg -m 512 -smp 2 \
		-nodefaults -no-user-config -display none -no-reboot \
		-serial "file:$log" -kernel "$kernel" -initrd "$work/initrd.img" \
		-append "console=ttyS0 quiet virtmq.selftest=1 virtmq.ip=none" \
		-netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0 \
		-device virtio-serial-pci -chardev null,id=qga \
		-device virtserialport,chardev=qga,name=org.qemu.guest_agent.0 \
		>"$work/selftest.qemu.log" 2>&1 || true
	if ! grep -q '^SELFTEST-DONE' "$log" ||
		! grep -q '^SELFTEST ports=.*org.qemu.guest_agent.0' "$log" ||
		! grep -q '^SELFTEST qemu-ga=QEMU Guest Agent' "$log" ||
		! grep -q '^SELFTEST ethtool=ethtool version' "$log" ||
		! grep -q '^SELFTEST iperf3=iperf 3' "$log" ||
		! grep -q '^SELFTEST ethtool-l=Channel parameters' "$log" ||
		! grep -q '^SELFTEST input=.*Power Button' "$log"; then
		log "self-test of $(basename "$kernel") failed; console:"
		tail -n 30 "$log" >&2 || true
		cat "$work/selftest.qemu.log" >&2
		return 1
	fi
	grep '^SELFTEST' "$log" | sed 's/^/build:   /' >&2
	echo "$(date +%s.%N) $t0" | awk '{ printf "%.1f", $1 - $2 }'
}

kind=
if extract_vmlinux && secs=$(selftest "$work/vmlinux"); then
	kind=vmlinux
	log "vmlinux (PVH) self-test passed in ${secs}s"
	install -m 0644 "$work/vmlinux" "$out/kernel"
else
	log "vmlinux unusable, falling back to the bzImage"
	secs=$(selftest "$bzimage") || die "the guest does not boot; see above"
	kind=bzImage
	log "bzImage self-test passed in ${secs}s"
	install -m 0644 "$bzimage" "$out/kernel"
fi
install -m 0644 "$work/initrd.img" "$out/initrd.img"
cat >"$out/info" <<EOF
kernel_package=$(basename "$deb")
kernel_release=$kver
kernel_kind=$kind
modules=${MODULES[*]}
selftest_seconds=$secs
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
chmod 0755 "$out"
log "guest ready in $out ($kind, initrd $(du -h "$out/initrd.img" | cut -f1))"
