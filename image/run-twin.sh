#!/usr/bin/env bash
# Boot the QEMU twin built by build-twin.sh.
#
#   image/run-twin.sh DIR [extra qemu arguments]
#
# The guest sees only the host ports forwarded to it (restrict=on: no other network).
# Environment:
#   TWIN_PORTS   "host:guest ..." forwards on 127.0.0.1 [10025:25 10465:465 10587:587
#                10143:143 10993:993 10080:80 10443:443]
#   TWIN_DISK    the disk image [DIR/disk.img]
#   TWIN_SERIAL  file for the serial console [stdio]
#   TWIN_AGENT   unix socket for the QEMU guest agent [none]
#   TWIN_QMP     unix socket for QEMU's machine protocol (QMP), e.g. to plug in a USB stick
#                [none]; the machine always has a USB controller for one
#   TWIN_ACCEL   [tcg,thread=multi] (KVM is often unusable in nested sandboxes)
# The script is also the twin's firmware: it starts root slot A (partition 2) or B (3) as the
# boot partition says, like the Pi firmware with config.txt (overlay/usr/libexec/chatmail/boot-slot
# writes these files, "os_prefix=slot-b/"): chatmail-tryboot.txt names a slot to start once,
# and is removed as it is used; otherwise chatmail-slot.txt names the committed slot (absent: A).
# DIR/arch (written by build-twin.sh) picks the machine: amd64 a PC, arm64 QEMU's "virt" board
# with Cortex-A72 cores, the Pi 4's. A reboot inside the guest ends QEMU (-no-reboot), so a
# caller sees every restart.
set -euo pipefail

dir=${1:?usage: run-twin.sh DIR [qemu args]}
shift
ports=${TWIN_PORTS:-10025:25 10465:465 10587:587 10143:143 10993:993 10080:80 10443:443}
fwd=""
for pair in $ports; do
    fwd+=",hostfwd=tcp:127.0.0.1:${pair%%:*}-:${pair##*:}"
done
disk=${TWIN_DISK:-$dir/disk.img}
export MTOOLS_SKIP_CHECK=1
boot_start=$(sfdisk -d "$disk" | grep -m1 -o 'start= *[0-9]*' | tr -dc 0-9)
fat="$disk@@$((boot_start * 512))"
slot_in() { { mtype -i "$fat" "::$1" 2>/dev/null || true; } | sed -n 's|^os_prefix=slot-\([ab]\)/\r*$|\1|p'; }
slot=$(slot_in chatmail-tryboot.txt)
how=committed
if [ -n "$slot" ]; then
    mdel -i "$fat" ::chatmail-tryboot.txt
    how="tried once"
else
    slot=$(slot_in chatmail-slot.txt)
fi
case "$slot" in
    b) slot=B root=/dev/vda3 ;;
    *) slot=A root=/dev/vda2 ;;
esac
echo "twin firmware: root slot $slot ($how)" >&2
cmdline="$(sed "s|root=/dev/vda2|root=$root|" "$dir/cmdline.txt") rauc.slot=$slot"
case "$(cat "$dir/arch" 2>/dev/null || echo amd64)" in
    amd64) qemu=(qemu-system-x86_64) ;;
    arm64) qemu=(qemu-system-aarch64 -machine virt -cpu cortex-a72) ;;
    *) echo "run-twin.sh: unknown architecture in $dir/arch" >&2; exit 1 ;;
esac
args=(
    -accel "${TWIN_ACCEL:-tcg,thread=multi}" -smp 2 -m 1024
    -no-reboot -nodefaults -display none
    -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" -append "$cmdline"
    -drive "file=$disk,if=virtio,format=raw"
    -netdev "user,id=net0,restrict=on$fwd" -device virtio-net-pci,netdev=net0
    # The same systemd watchdog settings as on the Pi, against an emulated watchdog chip.
    -device i6300esb -action watchdog=reset
    -device qemu-xhci,id=usb
)
if [ -n "${TWIN_SERIAL:-}" ]; then
    args+=(-serial "file:$TWIN_SERIAL")
else
    args+=(-serial stdio)
fi
if [ -n "${TWIN_QMP:-}" ]; then
    args+=(-qmp "unix:$TWIN_QMP,server=on,wait=off")
fi
if [ -n "${TWIN_AGENT:-}" ]; then
    args+=(
        -chardev "socket,path=$TWIN_AGENT,server=on,wait=off,id=agent0"
        -device virtio-serial -device virtserialport,chardev=agent0,name=org.qemu.guest_agent.0
    )
fi
exec "${qemu[@]}" "${args[@]}" "$@"
