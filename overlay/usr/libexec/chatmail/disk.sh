# Shared helpers for the early-boot scripts (sourced, POSIX sh).
#
# The card layout is fixed: partition 1 = boot (FAT), 2 and 3 = the root slots A and B
# (read-only; an update writes the one not running, image/genimage-*.cfg.in), 4 = data (f2fs).
# Devices are found from the disk that holds the root file system, never by a name such as
# /dev/mmcblk0, so the same scripts work on every Pi, on USB boot and in the QEMU twin.

BOOT_PART=1
ROOT_A_PART=2
ROOT_B_PART=3
DATA_PART=4
DATA_LABEL=chatmail-data
BOOT_MNT=/run/chatmail/boot
RESET_FLAG=chatmail-factory-reset
SETTINGS_FILE=chatmail-settings.txt
DATA_SWITCH=chatmail-data-device    # hwctl writes UUID=... here after moving /data to USB
DATA_LINK=/run/chatmail/data-device # what fstab mounts at /data

log() {
    # /dev/kmsg reaches the console and the journal even before journald runs.
    echo "chatmail: $*" >/dev/kmsg 2>/dev/null || echo "chatmail: $*" >&2
}

# Print the disk holding / (e.g. "vda" or "mmcblk0").
root_disk() {
    majmin=$(mountpoint -d /) || return 1
    sys=$(readlink -f "/sys/dev/block/$majmin") || return 1
    if [ -e "$sys/partition" ]; then
        basename "$(dirname "$sys")"
    else
        return 1
    fi
}

# Print /dev/<name> of partition number $2 on disk $1, or nothing.
part_dev() {
    for p in /sys/block/"$1"/*/partition; do
        [ -e "$p" ] || continue
        if [ "$(cat "$p")" = "$2" ]; then
            echo "/dev/$(basename "$(dirname "$p")")"
            return 0
        fi
    done
    return 1
}

# Mount the boot partition read-write at $BOOT_MNT (idempotent).
mount_boot() {
    mountpoint -q "$BOOT_MNT" && return 0
    disk=$(root_disk) || return 1
    dev=$(part_dev "$disk" "$BOOT_PART") || return 1
    mkdir -p "$BOOT_MNT"
    mount -t vfat -o rw,noatime,flush "$dev" "$BOOT_MNT"
}

umount_boot() {
    mountpoint -q "$BOOT_MNT" || return 0
    sync
    umount "$BOOT_MNT"
}
