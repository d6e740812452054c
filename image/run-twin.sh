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
#   TWIN_ACCEL   [tcg,thread=multi] (KVM is often unusable in nested sandboxes)
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
case "$(cat "$dir/arch" 2>/dev/null || echo amd64)" in
    amd64) qemu=(qemu-system-x86_64) ;;
    arm64) qemu=(qemu-system-aarch64 -machine virt -cpu cortex-a72) ;;
    *) echo "run-twin.sh: unknown architecture in $dir/arch" >&2; exit 1 ;;
esac
args=(
    -accel "${TWIN_ACCEL:-tcg,thread=multi}" -smp 2 -m 1024
    -no-reboot -nodefaults -display none
    -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" -append "$(cat "$dir/cmdline.txt")"
    -drive "file=${TWIN_DISK:-$dir/disk.img},if=virtio,format=raw"
    -netdev "user,id=net0,restrict=on$fwd" -device virtio-net-pci,netdev=net0
    # The same systemd watchdog settings as on the Pi, against an emulated watchdog chip.
    -device i6300esb -action watchdog=reset
)
if [ -n "${TWIN_SERIAL:-}" ]; then
    args+=(-serial "file:$TWIN_SERIAL")
else
    args+=(-serial stdio)
fi
if [ -n "${TWIN_AGENT:-}" ]; then
    args+=(
        -chardev "socket,path=$TWIN_AGENT,server=on,wait=off,id=agent0"
        -device virtio-serial -device virtserialport,chardev=agent0,name=org.qemu.guest_agent.0
    )
fi
exec "${qemu[@]}" "${args[@]}" "$@"
