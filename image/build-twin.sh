#!/usr/bin/env bash
# Build the QEMU twin of the appliance: the Pi image's overlay, units and partition layout on a
# Debian root file system (mmdebstrap), with the relay installed from this checkout and its
# dependencies at the versions the pinned Buildroot release ships (image/buildroot_versions.py).
#
#   image/build-twin.sh OUTDIR
#
# Output in OUTDIR: disk.img (boot FAT, root slots A (the squashfs) and B (empty), f2fs data;
# MBR, 4 MiB aligned), vmlinuz, initrd.img and cmdline.txt for qemu -kernel, arch,
# root.squashfs (what update bundles are made from: image/make-bundle.sh), dev-keys/ (the
# development update CA whose certificate is the image's keyring; RAUC_KEYRING=FILE uses
# another), build.log. Boot it with image/run-twin.sh. Needs root, network access to Debian and PyPI, and: mmdebstrap genimage
# squashfs-tools f2fs-tools dosfstools mtools, for arm64 also qemu-user-static
# (tests/system-packages.txt). Environment:
#   ARCH     amd64, or arm64 (the Pi's: built under qemu-user emulation) [amd64]
#   PYTHON   a Python 3.11 with pip (the Debian release's Python) to build wheels [python3]
#   SUITE    Debian release [bookworm]        MIRROR  Debian mirror [the host's apt sources]
#   VERSION  the image version (IMAGE_VERSION in os-release) [the relay's version]
#   TWIN_DEBUG=1  keep the root tree in OUTDIR/rootfs
set -euo pipefail

out=${1:?usage: build-twin.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
suite=${SUITE:-bookworm}
python=${PYTHON:-python3}
arch=${ARCH:-amd64}
case "$arch" in
    amd64) machine=x86_64 console=ttyS0 ;;
    arm64) machine=aarch64 console=ttyAMA0 ;;
    *) echo "build-twin.sh: ARCH is amd64 or arm64, not '$arch'" >&2; exit 1 ;;
esac
[ "$(id -u)" = 0 ] || { echo "build-twin.sh: must run as root (mmdebstrap, chroot)" >&2; exit 1; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/chatmail-twin.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
step() { echo "[$(($(date +%s) - start))s] $*"; }

# --- 1. the relay and its dependencies as wheels, built from this checkout -------------------
step "building wheels"
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$pyver" != 3.11 ] && [ "$suite" = bookworm ]; then
    echo "build-twin.sh: $python is $pyver; bookworm's python3 is 3.11 (set PYTHON)" >&2
    exit 1
fi
src="$work/src"
mkdir -p "$src"
# Only what the package needs: no .venv, no .git, no test data.
tar -C "$repo" --exclude=__pycache__ -cf - pyproject.toml README.md relay hwctl | tar -C "$src" -xf -
"$python" "$here/buildroot_versions.py" >"$work/constraints.txt"
"$python" -m pip wheel --quiet --no-cache-dir --constraint "$work/constraints.txt" \
    --wheel-dir "$work/wheels" "$src"
if [ "$machine" != "$(uname -m)" ]; then
    # The C extensions again, as published for the guest's architecture (same versions).
    platforms=(--platform "manylinux2014_$machine")
    for glibc in $(seq 17 36); do platforms+=(--platform "manylinux_2_${glibc}_$machine"); done
    for wheel in "$work"/wheels/*.whl; do
        case "$wheel" in *-none-any.whl) continue ;; esac
        IFS=- read -r name version _ <<<"$(basename "$wheel")"
        "$python" -m pip download --quiet --no-cache-dir --no-deps --only-binary=:all: \
            "${platforms[@]}" --python-version "$pyver" --implementation cp \
            --dest "$work/wheels" "$name==$version"
        rm "$wheel"
    done
fi

# --- 2. the root file system --------------------------------------------------------------
if [ "$machine" != "$(uname -m)" ] && [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$machine" ]; then
    # Run the guest's programs (dpkg's scripts, pip) through qemu-user; F: also in the chroot.
    [ -e /proc/sys/fs/binfmt_misc/register ] ||
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    cat "/usr/lib/binfmt.d/qemu-$machine.conf" >/proc/sys/fs/binfmt_misc/register
fi
step "mmdebstrap $suite $arch"
# The initramfs needs only what mounts the root: the virtio disk and squashfs. MODULES=list
# keeps it to those (and what they depend on), small, and quick to build under qemu-user.
mkdir -p "$work/rootfs" "$work/initramfs/modules.d" "$work/initramfs/conf.d"
printf "%s\n" squashfs virtio_pci virtio_mmio virtio_blk >"$work/initramfs/modules.d/chatmail"
echo MODULES=list >"$work/initramfs/conf.d/chatmail"
packages=(
    systemd-sysv udev passwd systemd-resolved systemd-timesyncd kmod iproute2
    "linux-image-$arch" initramfs-tools
    python3 python3-pip
    f2fs-tools fdisk util-linux dosfstools
    rauc rauc-service squashfs-tools
    # test access only in the twin: commands through a virtio port, never on a Pi image
    qemu-guest-agent
)
mirror=()
[ -n "${MIRROR:-}" ] && mirror=("$MIRROR")
mmdebstrap --variant=apt --architectures="$arch" \
    --include="$(IFS=,; echo "${packages[*]}")" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --essential-hook="mkdir -p \"\$1/usr/share/initramfs-tools\" \"\$1/etc/initramfs-tools\" && cp -r $work/initramfs/modules.d \"\$1/usr/share/initramfs-tools/\" && cp -r $work/initramfs/conf.d \"\$1/etc/initramfs-tools/\"" \
    --customize-hook="mkdir -p \"\$1/tmp/wheels\" && cp $work/wheels/*.whl \"\$1/tmp/wheels/\"" \
    --customize-hook='chroot "$1" python3 -m pip install --quiet --no-cache-dir --break-system-packages --no-index --find-links /tmp/wheels chatmail-relay-appliance' \
    --customize-hook='rm -rf "$1/tmp/wheels"' \
    "$suite" "$work/rootfs/" "${mirror[@]}" >"$out/build.log" 2>&1 || {
    tail -40 "$out/build.log" >&2
    exit 1
}
root="$work/rootfs"

# --- 3. the appliance overlay and system set-up --------------------------------------------
step "overlay and units"
cp -a "$repo/overlay/." "$root/"
find "$root" -name .empty -delete
chroot "$root" useradd --system --user-group --home-dir /data/relay --no-create-home \
    --shell /usr/sbin/nologin relay
version=${VERSION:-$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/pyproject.toml")}
printf '%s\n' IMAGE_ID=chatmail-relay-appliance "IMAGE_VERSION=$version" >>"$root/usr/lib/os-release"
# Update bundles must be signed by this CA (docs/updates.md); only its certificate goes in.
if [ -n "${RAUC_KEYRING:-}" ]; then
    cp "$RAUC_KEYRING" "$root/etc/rauc/keyring.pem"
else
    cp "$("$here/make-bundle.sh" --dev-keyring "$out/dev-keys")" "$root/etc/rauc/keyring.pem"
fi
# RAUC's example D-Bus policy lets every user install; the image has only its own
# (overlay/usr/share/dbus-1/system.d/chatmail-rauc.conf: root and the relay).
rm -f "$root/usr/share/dbus-1/system.d/de.pengutronix.rauc.conf"
echo chatmail >"$root/etc/hostname"
: >"$root/etc/machine-id"
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
# The preset file is the list of units the appliance enables; Buildroot applies it with
# `systemctl preset-all`, here only for units that exist in Debian.
grep '^enable ' "$root/usr/lib/systemd/system-preset/80-chatmail.preset" |
    while read -r _ unit instances; do
        [ -e "$root/usr/lib/systemd/system/$unit" ] || continue
        if [ -n "$instances" ]; then # "enable foo@.service a b": the instances foo@a, foo@b
            for i in $instances; do chroot "$root" systemctl enable --quiet "${unit/@./@$i.}"; done
        else
            chroot "$root" systemctl enable --quiet "$unit"
        fi
    done
# No display, LEDs or button in a VM: hwctl runs its simulators, writing frames to RAM, and
# tests press the simulated button with `python3 -m hwctl press --sim /run/hwctl-sim`. USB
# sticks are real (QEMU plugs them in): hwctl handles them as on the Pi.
mkdir -p "$root/usr/lib/systemd/system/chatmail-hwctl.service.d"
cat >"$root/usr/lib/systemd/system/chatmail-hwctl.service.d/twin-simulators.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=python3 -m hwctl run --sim /run/hwctl-sim --usb --config /data/relay/relay.toml
EOF
# Debian enables services the appliance does not want running on every boot.
chroot "$root" systemctl disable --quiet apt-daily.timer apt-daily-upgrade.timer \
    dpkg-db-backup.timer e2scrub_all.timer fstrim.timer 2>/dev/null || true
chroot "$root" systemctl mask --quiet systemd-random-seed.service 2>/dev/null || true

# /var in RAM, filled from a factory copy at every boot, as Buildroot does for a read-only root.
rm -rf "$root/var/cache/"* "$root/var/lib/apt/lists/"* "$root/var/log/"*
mkdir -p "$root/usr/share/factory"
mv "$root/var" "$root/usr/share/factory/var"
mkdir -p "$root/var"
{
    for entry in "$root"/usr/share/factory/var/* "$root"/usr/share/factory/var/lib/*; do
        rel=${entry#"$root"/usr/share/factory}
        if [ -L "$entry" ]; then
            printf 'L+! %s - - - - %s\n' "$rel" "$(readlink "$entry")"
        elif [ -d "$entry" ]; then
            printf 'C! %s - - - -\n' "$rel"
        fi
    done
} >"$root/usr/lib/tmpfiles.d/00-chatmail-var.conf"
cat >"$root/usr/lib/systemd/system/var.mount" <<'EOF'
[Unit]
Description=/var in RAM (read-only root)
DefaultDependencies=no
Conflicts=umount.target
Before=local-fs.target umount.target

[Mount]
What=tmpfs
Where=/var
Type=tmpfs
Options=nosuid,nodev,mode=0755,size=25%
EOF
mkdir -p "$root/usr/lib/systemd/system/local-fs.target.wants"
ln -sf ../var.mount "$root/usr/lib/systemd/system/local-fs.target.wants/var.mount"

# --- 4. kernel to the boot partition, root to squashfs ---------------------------------------
step "squashfs"
staging="$work/input"
mkdir -p "$staging"
cp "$root"/boot/vmlinuz-* "$staging/vmlinuz"
cp "$root"/boot/initrd.img-* "$staging/initrd.img"
rm -rf "$root"/boot/*
# Drivers a virtual machine and the Pi's use case never need; the image gets smaller and faster.
moddir=$(echo "$root"/usr/lib/modules/*/kernel)
rm -rf "$moddir"/drivers/{gpu,media,infiniband,staging,isdn,iio,net/wireless,net/ethernet,bluetooth,sound} \
    "$moddir"/sound "$moddir"/net/{bluetooth,mac80211,wireless}
chroot "$root" sh -c 'depmod -a "$(ls /usr/lib/modules)"'
echo "root=/dev/vda2 rootfstype=squashfs ro console=$console panic=-1 systemd.show_status=1" \
    >"$staging/cmdline.txt"
mksquashfs "$root" "$staging/root.squashfs" -comp zstd -Xcompression-level 6 -b 256K \
    -noappend -quiet -processors "$(nproc)" >>"$out/build.log"

# --- 5. the disk -----------------------------------------------------------------------------
step "genimage"
sq_mib=$(($(stat -c %s "$staging/root.squashfs") / 1048576))
root_size=$(((sq_mib * 5 / 4 + 64 + 3) / 4 * 4))M  # room to grow, on a 4 MiB boundary
sed "s/@ROOT_SIZE@/$root_size/" "$here/genimage-twin.cfg.in" >"$work/genimage.cfg"
mkdir -p "$work/empty" "$work/gtmp"
genimage --rootpath "$work/empty" --tmppath "$work/gtmp" --inputpath "$staging" \
    --outputpath "$work/gout" --config "$work/genimage.cfg" >>"$out/build.log" 2>&1
mv "$work/gout/disk.img" "$out/disk.img"
cp "$staging/vmlinuz" "$staging/initrd.img" "$staging/cmdline.txt" "$staging/root.squashfs" "$out/"
echo "$arch" >"$out/arch"
if [ "${TWIN_DEBUG:-}" = 1 ]; then
    rm -rf "$out/rootfs"
    mv "$root" "$out/rootfs"
fi
step "done: $out/disk.img ($(du -m --apparent-size "$out/disk.img" | cut -f1) MiB," \
    "squashfs $sq_mib MiB)"
