#!/usr/bin/env bash
# Buildroot post-image script (BR2_ROOTFS_POST_IMAGE_SCRIPT).
#   $1  BINARIES_DIR (rootfs.squashfs, Image, *.dtb, rpi-firmware/)
#   (also writes BINARIES_DIR/boot-tree, the boot partition's slot folders)
#   $2  board kind from BR2_ROOTFS_POST_SCRIPT_ARGS: rpi | qemu
# Writes BINARIES_DIR/sdcard.img (see genimage-rpi.cfg.in) plus a compressed copy and its
# SHA-256 for flash.sh. Also usable outside Buildroot: set GENIMAGE to the genimage binary.
set -euo pipefail

bin=$(cd "${1:?BINARIES_DIR}" && pwd)
board=${2:-rpi}
here=$(cd "$(dirname "$0")" && pwd)
genimage=${GENIMAGE:-${HOST_DIR:+$HOST_DIR/bin/}genimage}

case "$board" in
    rpi)
        # The firmware at the top of the boot partition; each root slot's kernel, device trees,
        # overlays and cmdline.txt in its folder (slot-a/, slot-b/), which config.txt picks
        # with os_prefix from chatmail-slot.txt, or chatmail-tryboot.txt for one tried boot
        # (overlay/usr/libexec/chatmail/boot-slot). Slot B gets its kernel with its first update.
        tree="$bin/boot-tree"
        rm -rf "$tree"
        mkdir -p "$tree/slot-a" "$tree/slot-b"
        files=()
        for f in "$bin"/rpi-firmware/*; do
            case "$(basename "$f")" in
                cmdline.txt) ;;
                overlays) cp -r "$f" "$tree/slot-a/" ;;
                *) files+=("rpi-firmware/$(basename "$f")") ;;
            esac
        done
        for f in "$bin"/*.dtb; do
            [ -e "$f" ] && cp "$f" "$tree/slot-a/"
        done
        cp "$bin/Image" "$tree/slot-a/"
        cp "$bin/rpi-firmware/cmdline.txt" "$tree/slot-a/cmdline.txt"
        sed -e 's/43484154-02/43484154-03/' -e 's/rauc\.slot=A/rauc.slot=B/' \
            "$bin/rpi-firmware/cmdline.txt" >"$tree/slot-b/cmdline.txt"
        echo "os_prefix=slot-a/" >"$tree/chatmail-slot.txt"
        files+=(boot-tree/slot-a boot-tree/slot-b boot-tree/chatmail-slot.txt)
        ;;
    qemu)
        # QEMU loads the kernel itself; the boot partition keeps the settings and reset flag.
        printf '%s\n' "Chatmail appliance boot partition (QEMU build)." >"$bin/README.txt"
        files=(README.txt)
        ;;
    *)
        echo "post-image.sh: unknown board '$board' (rpi or qemu)" >&2
        exit 1
        ;;
esac

list=$(printf '"%s", ' "${files[@]}")
list=${list%, }
sq_mib=$(($(stat -c %s "$bin/rootfs.squashfs") / 1048576))
root_size=$(((sq_mib * 5 / 4 + 64 + 3) / 4 * 4))M # room for updates, on a 4 MiB boundary
cfg="$bin/genimage.cfg"
sed -e "s|@BOOT_FILES@|$list|" -e "s|@ROOT_SIZE@|$root_size|" "$here/genimage-rpi.cfg.in" >"$cfg"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root" "$work/tmp"
"$genimage" --rootpath "$work/root" --tmppath "$work/tmp" --inputpath "$bin" \
    --outputpath "$bin" --config "$cfg"

# Named after the defconfig (chatmail_rpi4_64_defconfig -> chatmail_rpi4_64.img.xz).
defconfig=$(sed -n 's/^BR2_DEFCONFIG="\(.*\)"$/\1/p' "${BR2_CONFIG:-/dev/null}" 2>/dev/null || true)
defconfig=$(basename "${defconfig:-chatmail_$board}" _defconfig)
name="$defconfig.img"
xz -T0 -6 -c "$bin/sdcard.img" >"$bin/$name.xz"
(cd "$bin" && sha256sum "$name.xz" >"$name.xz.sha256")
echo "post-image.sh: $bin/$name.xz"
