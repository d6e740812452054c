#!/bin/sh
# Buildroot post-build script (BR2_ROOTFS_POST_BUILD_SCRIPT): $1 is the target directory.
# Runs after the overlay is copied and before the root file system image is made.
set -eu
target=$1

# No hardware process in images without it (e.g. the QEMU board).
if ! grep -q '^BR2_PACKAGE_CHATMAIL_HWCTL=y' "${BR2_CONFIG:?}"; then
    rm -f "$target/usr/lib/systemd/system/chatmail-hwctl.service"
    sed -i '/chatmail-hwctl/d' "$target/usr/lib/systemd/system-preset/80-chatmail.preset"
fi

# Without a battery clock the first boot starts at the newest of systemd's build time and this
# file's mtime; stamping it makes TLS validity checks sane before the first NTP answer.
touch "$target/usr/lib/clock-epoch"

# Mount points on the read-only root (the overlay's .empty files are not copied).
mkdir -p "$target/data" "$target/boot"

# The update keyring (docs/updates.md): the release CA's certificate from
# CHATMAIL_RAUC_KEYRING; without it a development CA made next to the build (never in the
# image), and the image accepts only bundles signed with that development key.
keyring=${CHATMAIL_RAUC_KEYRING:-}
if [ -z "$keyring" ]; then
    here=$(cd "$(dirname "$0")" && pwd)
    keyring=$("$here/make-bundle.sh" --dev-keyring "${BASE_DIR:-$target/..}/dev-keys")
    echo "post-build.sh: no CHATMAIL_RAUC_KEYRING: this image trusts the development key $keyring" >&2
fi
install -D -m 0644 "$keyring" "$target/etc/rauc/keyring.pem"

# RAUC's example D-Bus policy lets every user install updates; the image has only its own
# (overlay/usr/share/dbus-1/system.d/chatmail-rauc.conf: root and the relay).
rm -f "$target/usr/share/dbus-1/system.d/de.pengutronix.rauc.conf"

# systemd-resolved's stub resolver for the relay's DNS lookups (federation, DKIM).
ln -sf ../run/systemd/resolve/stub-resolv.conf "$target/etc/resolv.conf"

# The Pi firmware loads kernel, device trees and overlays from the boot partition; a copy in the
# root goes with every update bundle, and the update puts it in its slot's folder there
# (overlay/usr/libexec/chatmail/rauc-post-install).
if [ -e "${BINARIES_DIR:?}/Image" ] && [ -d "$BINARIES_DIR/rpi-firmware" ]; then
    boot="$target/usr/lib/chatmail/boot"
    rm -rf "$boot"
    mkdir -p "$boot"
    cp "$BINARIES_DIR/Image" "$BINARIES_DIR"/*.dtb "$boot/"
    cp -r "$BINARIES_DIR/rpi-firmware/overlays" "$boot/"
fi
